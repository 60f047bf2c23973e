//! `--device xpu` where this project is built and tested: no Intel GPU and the PyPI CPU wheel's
//! libtorch, which has no XPU backend. Without the cargo feature `xpu` the trainer refuses with a
//! message that names the feature and how to build it on Aurora; with it (`cargo test -p
//! alcf-trainer --release --features xpu --test xpu`) the shim is compiled and linked and the
//! trainer refuses because that libtorch has no XPU backend. Either way: exit status 1, a clear
//! message, before any data is read — never a panic or a signal. Real XPU execution is not tested
//! here (it needs Aurora).

use alcf_trainer::data;
use std::path::Path;
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_alcf-trainer");

/// Whether the build found and linked libtorch_xpu.so (only on a libtorch with XPU support).
fn xpu_linked() -> bool {
    option_env!("ALCF_XPU_LINKED") == Some("1")
}

fn train(out: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("train")
        .arg("--data")
        .arg(out.join("no-such-data"))
        .arg("--out")
        .arg(out)
        .args(args)
        .env_remove("ALCF_PARAMS")
        .env_remove("ALCF_TRIAL_DIR")
        .output()
        .unwrap()
}

fn assert_refused(o: &Output, what: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    // code() is None when a signal ended the process (an abort in C++ would be SIGABRT).
    assert_eq!(o.status.code(), Some(1), "{what}: status {:?}\n{e}", o.status);
    assert!(!e.contains("panicked"), "{what}: {e}");
    assert!(e.starts_with("alcf-trainer: error: --device xpu"), "{what}: {e}");
    assert!(!e.contains("no CIFAR-100 data"), "{what}: refused only after looking for data: {e}");
    if cfg!(feature = "xpu") {
        assert!(e.contains("this libtorch has no XPU backend (libtorch_xpu.so not loaded: "), "{what}: {e}");
    } else {
        assert!(e.contains("built without XPU support (the cargo feature `xpu`)"), "{what}: {e}");
    }
    // Both say how to get a working build on Aurora.
    assert!(e.contains("module load frameworks") && e.contains("--features xpu"), "{what}: {e}");
    assert!(e.contains("alcf_train.py"), "{what}: names the Python trial program: {e}");
}

#[test]
fn device_xpu_is_refused_clearly_on_a_cpu_only_libtorch() {
    if xpu_linked() {
        eprintln!("libtorch_xpu.so is linked into this build: the refusal does not apply");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    assert_refused(&train(t.path(), &["--device", "xpu"]), "--device xpu");
    assert_refused(&train(t.path(), &["--device", "XPU:3"]), "--device XPU:3");
    // From params.json, the way the host passes it.
    let params = t.path().join("params.json");
    std::fs::write(&params, r#"{"device": "xpu", "lr": 0.05}"#).unwrap();
    let o = train(t.path(), &["--params", params.to_str().unwrap()]);
    assert_refused(&o, "params.json device=xpu");
}

#[test]
fn info_reports_xpu_and_auto_stays_on_the_cpu() {
    let o = Command::new(BIN).arg("info").output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
    if cfg!(feature = "xpu") {
        if !xpu_linked() {
            assert!(s.contains("xpu: unavailable: this libtorch has no XPU backend"), "{s}");
            assert!(s.contains("default device: cpu"), "{s}");
        }
    } else {
        assert!(s.contains("xpu: not in this build (cargo feature `xpu`)"), "{s}");
    }
}

/// On a libtorch with XPU support (Aurora, `--features xpu`): one real epoch on `xpu:0`, through
/// resume. Skipped where libtorch_xpu.so was not linked, i.e. everywhere this project is tested so
/// far.
#[test]
fn one_epoch_on_xpu_when_linked() {
    if !xpu_linked() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let g = Command::new(BIN).args(["gen-data", "--out"]).arg(&data).output().unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let out = t.path().join("trial");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("train")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--model", "cnn", "--width", "16", "--depth", "3", "--epochs", "2", "--batch-size", "64"])
            .args(["--device", "xpu", "--resume"])
            .args(extra)
            .env_remove("ALCF_PARAMS")
            .env_remove("ALCF_TRIAL_DIR")
            .output()
            .unwrap()
    };
    let o = run(&["--stop-after", "1"]);
    assert_eq!(o.status.code(), Some(75), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(" on xpu:0, ") && e.contains("resuming after epoch 1"), "{e}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert!(r["val_acc"].as_f64().unwrap() > 0.02, "above chance (0.01): {r}");
}

/// With the shim linked in, ordinary CPU training is unchanged: one epoch on a tiny synthetic set
/// with `--device auto`, which falls back to the CPU here.
#[test]
fn auto_device_trains_on_the_cpu() {
    if xpu_linked() {
        return; // auto would pick the XPU: not this test's business
    }
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let g = Command::new(BIN)
        .args(["gen-data", "--out"])
        .arg(&data)
        .args(["--train-per-class", "4", "--test-per-class", "1"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let out = t.path().join("trial");
    let o = Command::new(BIN)
        .arg("train")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--model", "cnn", "--width", "4", "--depth", "1", "--epochs", "1", "--batch-size", "64"])
        .args(["--val-split", "0.25", "--threads", "1", "--device", "auto"])
        .env_remove("ALCF_PARAMS")
        .env_remove("ALCF_TRIAL_DIR")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(" on cpu, 1 threads"), "{e}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1);
    assert!(out.join("result.json").is_file());
}

/// `data::augment` makes its index tensors "like" slices of the batch so that they land on the
/// batch's device, an XPU included (tch's `Device` cannot name one). It must draw exactly what the
/// `Tensor::randint` version drew, so CPU and CUDA runs (and the benchmark numbers) are unchanged.
/// (Here because no other test of this binary uses libtorch's global generator in-process: tests
/// run in parallel threads and would interleave their draws.)
#[test]
fn augment_draws_what_randint_draws() {
    let x = Tensor::arange(5 * 3 * 32 * 32, (Kind::Int64, Device::Cpu))
        .remainder(253)
        .to_kind(Kind::Uint8)
        .view([5, 3, 32, 32]);
    tch::manual_seed(42);
    let got = data::augment(&x);
    tch::manual_seed(42);
    let opts = (Kind::Int64, Device::Cpu);
    let (b, padded) = (5, x.constant_pad_nd([4i64, 4, 4, 4]));
    let ox = Tensor::randint(9, [b, 1], opts);
    let oy = Tensor::randint(9, [b, 1], opts);
    let flip = Tensor::randint(2, [b, 1], opts);
    let ar = Tensor::arange(32, opts).unsqueeze(0);
    let rows = &oy + &ar;
    let cols = &ox + &ar + &flip * (ar.neg() * 2 + 31);
    let t = padded.gather(2, &rows.view([b, 1, 32, 1]).expand([b, 3, 32, 40], false), false);
    let want = t.gather(3, &cols.view([b, 1, 1, 32]).expand([b, 3, 32, 32], false), false);
    assert!(got.equal(&want));
}

/// A stand-in libtorch_xpu.so (tests/fake_xpu_hooks.cpp: XPU hooks that claim one device, and no
/// XPU kernels), loaded by the trainer's run-time `dlopen` fallback (ALCF_TRAINER_XPU_LIB). Its
/// hooks register when it loads, as the real library's do, so the availability check passes, `info`
/// counts the device and `auto` picks it; the first tensor move then fails inside libtorch, and
/// that error comes back as a message with exit status 1, not as a crash. (This checks the shim's
/// plumbing, not XPU execution.)
#[cfg(feature = "xpu")]
#[test]
fn registered_xpu_hooks_pass_the_check_and_backend_errors_are_messages() {
    if xpu_linked() {
        return;
    }
    let lib = Path::new(env!("ALCF_LIBTORCH_LIB"));
    let include = lib.parent().unwrap().join("include");
    let t = tempfile::tempdir().unwrap();
    let so = t.path().join("libtorch_xpu.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_xpu_hooks.cpp");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let c = Command::new(&cxx)
        .args(["-std=c++17", "-shared", "-fPIC", "-O0", "-w", &format!("-D_GLIBCXX_USE_CXX11_ABI={abi}")])
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&so)
        .arg("-L")
        .arg(lib)
        .args(["-lc10", "-ltorch_cpu", "-Wl,-soname,libtorch_xpu.so"])
        .output()
        .unwrap();
    assert!(c.status.success(), "{cxx}: {}", String::from_utf8_lossy(&c.stderr));

    let info = Command::new(BIN).arg("info").env("ALCF_TRAINER_XPU_LIB", &so).output().unwrap();
    let s = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "{s}");
    assert!(s.contains("xpu devices: 1") && s.contains("default device: xpu:0"), "{s}");

    let data = t.path().join("data");
    let g = Command::new(BIN)
        .args(["gen-data", "--out"])
        .arg(&data)
        .args(["--train-per-class", "2", "--test-per-class", "1"])
        .output()
        .unwrap();
    assert!(g.status.success());
    let o = Command::new(BIN)
        .arg("train")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(t.path().join("trial"))
        .args(["--model", "cnn", "--width", "4", "--depth", "1", "--epochs", "1", "--device", "xpu"])
        .env("ALCF_TRAINER_XPU_LIB", &so)
        .env_remove("ALCF_PARAMS")
        .env_remove("ALCF_TRIAL_DIR")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("alcf-trainer: error: cannot move a tensor to xpu:0: Could not run 'aten::"), "{e}");
    assert!(e.contains("'XPU' backend") && !e.contains("panicked"), "{e}");
}
