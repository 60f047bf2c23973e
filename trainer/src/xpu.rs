//! Intel XPU (Aurora's GPUs) for alcf-trainer. tch 0.26 has no XPU device (its `Device` enum has
//! Cpu, Cuda, Mps and Vulkan), so a small C++ shim over libtorch's own XPU backend
//! (trainer/xpu/shim.cpp, compiled under the cargo feature `xpu`) moves tensors to `xpu:N` and
//! back, counts the devices and synchronizes. Tensors are created where tch can create them (the
//! CPU) and then moved; see `train::Place`.
//!
//! Without the feature every function here returns an error that says how to build with it. With
//! the feature on a libtorch without an XPU backend (the PyPI CPU wheel) [`check`] refuses with the
//! reason. Only those two refusals are tested on the machines this project is developed on; real
//! XPU execution is not (no Intel GPU there).

use anyhow::{Result, bail};
use tch::Tensor;

/// How to get a binary with XPU support, for error messages.
pub const BUILD_HINT: &str = "on an Aurora login node: `module load frameworks`, then \
     `LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 cargo build -p alcf-trainer --release --features xpu` \
     (docs/trainer.md, \"Intel XPU\"); or run the Python trial program trainer/python/alcf_train.py --device xpu";

/// Whether this binary was built with the `xpu` feature (the shim is in it).
pub const fn built_in() -> bool {
    cfg!(feature = "xpu")
}

#[cfg(feature = "xpu")]
mod ffi {
    use std::ffi::{CStr, c_char, c_int};
    use torch_sys::C_tensor;

    unsafe extern "C" {
        pub fn alcf_xpu_has_backend(err: *mut *mut c_char) -> c_int;
        pub fn alcf_xpu_device_count(err: *mut *mut c_char) -> c_int;
        pub fn alcf_xpu_to(t: *const C_tensor, index: c_int, err: *mut *mut c_char) -> *mut C_tensor;
        pub fn alcf_xpu_is_xpu(t: *const C_tensor) -> c_int;
        pub fn alcf_xpu_synchronize(index: c_int, err: *mut *mut c_char) -> c_int;
    }

    /// Take over an error string from the shim (malloc'd there).
    pub fn take_err(err: *mut c_char) -> String {
        if err.is_null() {
            return "unknown error in the XPU shim".into();
        }
        // SAFETY: the shim sets *err to a NUL-terminated string from strdup/strndup, or leaves it null.
        let s = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
        // SAFETY: allocated with malloc by strdup/strndup; freed once, here.
        unsafe { libc::free(err.cast()) };
        s
    }
}

#[cfg(not(feature = "xpu"))]
fn not_built<T>() -> Result<T> {
    bail!(
        "this alcf-trainer was built without XPU support (the cargo feature `xpu`). To train on Intel XPUs, build it {BUILD_HINT}"
    )
}

/// Try to load libtorch_xpu.so from the libtorch this binary was built against, in case the link
/// did not keep it (the build's libtorch had none then). `ALCF_TRAINER_XPU_LIB=/path/libtorch_xpu.so`
/// names another file instead (it must belong to the same libtorch build; the tests use it for a
/// stand-in). No search of LD_LIBRARY_PATH: that could load another libtorch's XPU library into
/// this one. Returns the loader's error, if it failed. Must run before libtorch first asks for its
/// XPU hooks (it caches the answer).
#[cfg(feature = "xpu")]
fn preload() -> Option<String> {
    let dir = env!("ALCF_LIBTORCH_LIB");
    let path = match std::env::var("ALCF_TRAINER_XPU_LIB") {
        Ok(p) if !p.is_empty() => p,
        _ if !dir.is_empty() => format!("{dir}/libtorch_xpu.so"),
        _ => return Some("the libtorch directory is unknown".into()),
    };
    let Ok(cs) = std::ffi::CString::new(path.clone()) else { return Some(format!("bad path {path:?}")) };
    // SAFETY: dlopen with a valid NUL-terminated path; the handle is leaked on purpose so the
    // library stays loaded.
    let h = unsafe { libc::dlopen(cs.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if !h.is_null() {
        return None;
    }
    // SAFETY: dlerror returns a thread-local C string or NULL.
    let e = unsafe { libc::dlerror() };
    Some(if e.is_null() {
        format!("cannot load {path}")
    } else {
        unsafe { std::ffi::CStr::from_ptr(e) }.to_string_lossy().into_owned()
    })
}

/// The number of XPU devices this process sees; 0 without an XPU backend.
#[cfg(feature = "xpu")]
pub fn device_count() -> Result<usize> {
    let mut err = std::ptr::null_mut();
    // SAFETY: the shim catches every C++ exception; err is set only on failure.
    let n = unsafe { ffi::alcf_xpu_device_count(&mut err) };
    if n < 0 {
        bail!("cannot count XPU devices: {}", ffi::take_err(err));
    }
    Ok(n as usize)
}

#[cfg(not(feature = "xpu"))]
pub fn device_count() -> Result<usize> {
    not_built()
}

/// Check that `xpu:index` can be used; the error says why not.
#[cfg(feature = "xpu")]
pub fn check(index: usize) -> Result<()> {
    let load_err = preload();
    let mut err = std::ptr::null_mut();
    // SAFETY: as above.
    let has = unsafe { ffi::alcf_xpu_has_backend(&mut err) };
    if has < 0 {
        bail!("cannot query libtorch's XPU backend: {}", ffi::take_err(err));
    }
    if has == 0 {
        let why = match (env!("ALCF_XPU_LINKED"), load_err) {
            ("1", _) => "libtorch_xpu.so is linked but registered no XPU backend".to_string(),
            (_, Some(e)) => format!("libtorch_xpu.so not loaded: {e}"),
            (_, None) => "libtorch_xpu.so loaded, but libtorch reports no XPU backend".to_string(),
        };
        bail!(
            "this libtorch has no XPU backend ({why}); libtorch dir: {}. Build alcf-trainer against a libtorch \
             with XPU support, {BUILD_HINT}",
            if env!("ALCF_LIBTORCH_LIB").is_empty() { "unknown" } else { env!("ALCF_LIBTORCH_LIB") }
        );
    }
    let count = device_count()?;
    if count == 0 {
        bail!(
            "libtorch has an XPU backend but sees no XPU device (a login node? ZE_AFFINITY_MASK={})",
            std::env::var("ZE_AFFINITY_MASK").unwrap_or_else(|_| "unset".into())
        );
    }
    if index >= count {
        bail!("only {count} XPU device(s) visible (xpu:0..xpu:{}); with ZE_AFFINITY_MASK set it is xpu:0", count - 1);
    }
    Ok(())
}

#[cfg(not(feature = "xpu"))]
pub fn check(_index: usize) -> Result<()> {
    not_built()
}

/// A copy of `t` on `xpu:index`.
#[cfg(feature = "xpu")]
pub fn to_xpu(t: &Tensor, index: usize) -> Result<Tensor> {
    move_to(t, index as i32)
}

#[cfg(not(feature = "xpu"))]
pub fn to_xpu(_t: &Tensor, _index: usize) -> Result<Tensor> {
    not_built()
}

/// A copy of `t` on the CPU (`t` itself, shallowly, when it is there already).
#[cfg(feature = "xpu")]
pub fn to_cpu(t: &Tensor) -> Result<Tensor> {
    move_to(t, -1)
}

#[cfg(not(feature = "xpu"))]
pub fn to_cpu(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_device(tch::Device::Cpu))
}

#[cfg(feature = "xpu")]
fn move_to(t: &Tensor, index: i32) -> Result<Tensor> {
    let mut err = std::ptr::null_mut();
    // SAFETY: t.as_ptr() is a live at::Tensor*; the shim returns a new heap at::Tensor (or null and
    // err), which Tensor::from_ptr owns from here on and frees with tch's at_free.
    let p = unsafe { ffi::alcf_xpu_to(t.as_ptr(), index, &mut err) };
    if p.is_null() {
        let dev = if index < 0 { "cpu".to_string() } else { format!("xpu:{index}") };
        bail!("cannot move a tensor to {dev}: {}", ffi::take_err(err));
    }
    // SAFETY: p is a fresh at::Tensor* from the shim, owned by nobody else.
    Ok(unsafe { Tensor::from_ptr(p) })
}

/// Whether `t` lives on an XPU (tch itself would report such a tensor as `Device::Mps`).
#[cfg(feature = "xpu")]
pub fn is_xpu(t: &Tensor) -> bool {
    // SAFETY: t.as_ptr() is a live at::Tensor*; the function does not throw.
    unsafe { ffi::alcf_xpu_is_xpu(t.as_ptr()) == 1 }
}

#[cfg(not(feature = "xpu"))]
pub fn is_xpu(_t: &Tensor) -> bool {
    false
}

/// Wait for the work queued on `xpu:index`.
#[cfg(feature = "xpu")]
pub fn synchronize(index: usize) -> Result<()> {
    let mut err = std::ptr::null_mut();
    // SAFETY: the shim catches every C++ exception.
    if unsafe { ffi::alcf_xpu_synchronize(index as i32, &mut err) } != 0 {
        bail!("cannot synchronize xpu:{index}: {}", ffi::take_err(err));
    }
    Ok(())
}

#[cfg(not(feature = "xpu"))]
pub fn synchronize(_index: usize) -> Result<()> {
    not_built()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_round_trip_and_refusal_without_an_xpu_backend() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let c = to_cpu(&t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&c).unwrap(), vec![1.0, 2.0, 3.0]);
        assert!(!is_xpu(&c));
        if check(0).is_ok() {
            // A libtorch with an XPU and a device (Aurora): a real round trip.
            let x = to_xpu(&t, 0).unwrap();
            assert!(is_xpu(&x));
            synchronize(0).unwrap();
            let back = to_cpu(&(&x * 2.0)).unwrap();
            assert_eq!(Vec::<f32>::try_from(&back).unwrap(), vec![2.0, 4.0, 6.0]);
            return;
        }
        // The machines this is developed on have no XPU libtorch: every XPU call refuses, none
        // panics.
        let e = check(0).unwrap_err().to_string();
        if built_in() {
            assert!(e.contains("no XPU backend"), "{e}");
            assert_eq!(device_count().unwrap(), 0);
        } else {
            assert!(e.contains("feature `xpu`"), "{e}");
        }
        assert!(to_xpu(&t, 0).is_err());
        assert!(synchronize(0).is_err());
    }
}
