//! Bakes the libtorch library directory into the binary's run path, so `alcf-trainer` runs without
//! LD_LIBRARY_PATH. torch-sys (`links = "tch"`) exports that directory as DEP_TCH_LIBTORCH_LIB.
//! With the `xpu` feature it also compiles the XPU shim (trainer/xpu/shim.cpp) against that libtorch.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let lib = env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(lib) = &lib {
        if target_os == "linux" || target_os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        println!("cargo:rustc-env=ALCF_LIBTORCH_LIB={lib}");
    } else {
        println!("cargo:rustc-env=ALCF_LIBTORCH_LIB=");
    }
    // rustc links with --as-needed, which drops libtorch_cuda.so (nothing references its symbols
    // directly) and with it CUDA support. The `cuda` feature keeps it; it needs the full torch install.
    if env::var_os("CARGO_FEATURE_CUDA").is_some() && target_os == "linux" {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
    #[cfg(feature = "xpu")]
    xpu::build(lib.as_deref(), &target_os);
}

#[cfg(feature = "xpu")]
mod xpu {
    use std::env;
    use std::path::Path;

    pub fn build(lib: Option<&str>, target_os: &str) {
        const SHIM: &str = "xpu/shim.cpp";
        println!("cargo:rerun-if-changed={SHIM}");
        println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
        println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
        let Some(lib) = lib else {
            panic!("the `xpu` feature needs torch-sys's libtorch directory (DEP_TCH_LIBTORCH_LIB), and it is not set")
        };
        let lib = Path::new(lib);
        // torch-sys exports only the lib directory; the headers are its sibling include/ in both
        // layouts it supports (a libtorch zip, or a Python torch package with LIBTORCH_USE_PYTORCH).
        let root = lib.parent().expect("libtorch lib dir has a parent");
        let include = root.join("include");
        assert!(
            include.join("ATen/Context.h").is_file(),
            "the `xpu` feature needs libtorch's C++ headers; none under {}",
            include.display()
        );
        // The shim calls libtorch functions that take std::string, so it must use the C++ ABI of
        // the libtorch it links, as torch-sys's own C++ does.
        let abi = cxx11_abi();
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .warnings(false)
            .include(&include)
            .flag("-std=c++17")
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            .file(SHIM)
            .compile("alcf_xpu_shim");
        // The same --as-needed trap as CUDA: the shim only calls libtorch_cpu (at::hasXPU,
        // getXPUHooks, Tensor::to), never libtorch_xpu.so itself, so the linker would drop
        // libtorch_xpu.so from the binary; its static initializers, which register the XPU hooks
        // and kernels, would then never run, and libtorch would report no XPU. So link it with
        // --no-as-needed, but only when this libtorch has one. Without it (the PyPI CPU wheel) the
        // shim is still compiled against what is there, and `--device xpu` refuses at run time
        // with the reason, which is what the tests here check.
        let has_xpu_lib = lib.join("libtorch_xpu.so").exists();
        println!("cargo:rustc-env=ALCF_XPU_LINKED={}", if has_xpu_lib { "1" } else { "0" });
        if has_xpu_lib && target_os == "linux" {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_xpu,-ltorch,--as-needed");
        } else if !has_xpu_lib {
            println!(
                "cargo:warning=alcf-trainer `xpu` feature: {} has no libtorch_xpu.so; the XPU shim is compiled, \
                 and --device xpu will refuse at run time (build against the frameworks module's libtorch on Aurora)",
                lib.display()
            );
        }
    }

    /// `LIBTORCH_CXX11_ABI` when set; with `LIBTORCH_USE_PYTORCH`, what the Python torch says (as
    /// torch-sys does); else 1 (torch-sys's default, and every PyTorch wheel since 2.7).
    fn cxx11_abi() -> String {
        if let Ok(v) = env::var("LIBTORCH_CXX11_ABI") {
            return v;
        }
        if env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
            let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
            let out = std::process::Command::new(python)
                .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
                .output();
            if let Ok(o) = out
                && o.status.success()
            {
                let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if s == "0" || s == "1" {
                    return s;
                }
            }
        }
        "1".into()
    }
}
