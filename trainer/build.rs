//! Bakes the libtorch library directory into the binary's run path, so `alcf-trainer` runs without
//! LD_LIBRARY_PATH. torch-sys (`links = "tch"`) exports that directory as DEP_TCH_LIBTORCH_LIB.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
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
}
