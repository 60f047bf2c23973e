// alcf-trainer's Intel XPU shim: a few C functions over libtorch's own XPU backend, which tch 0.26
// cannot name (its Device enum has Cpu, Cuda, Mps and Vulkan only). Compiled by build.rs with the
// `cc` crate under the cargo feature `xpu` only, against the libtorch that torch-sys links.
//
// Only small ATen/c10 headers (not <ATen/ATen.h>, not <torch/torch.h>): the file compiles in a few
// seconds. Every function catches all C++ exceptions: an error comes back as a malloc'd message
// (*err, freed by the caller with free()) and a failure value, never as an exception crossing into
// Rust or an abort.
//
// The XPU backend lives in libtorch_xpu.so. It registers itself (REGISTER_XPU_HOOKS) when it is
// loaded; without it at::detail::getXPUHooks() answers with the default interface, whose hasXPU()
// is false and whose other methods throw. So on a CPU-only libtorch every function here refuses
// cleanly.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/detail/XPUHooksInterface.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {

void set_err(char** err, const char* msg) {
  if (err != nullptr) {
    *err = strdup(msg != nullptr ? msg : "unknown C++ exception");
  }
}

// The first line of a c10::Error's message (the rest is a C++ backtrace).
void set_err_from(char** err, const std::exception& e) {
  const char* what = e.what();
  const char* nl = what != nullptr ? std::strchr(what, '\n') : nullptr;
  if (err != nullptr && nl != nullptr) {
    *err = strndup(what, static_cast<size_t>(nl - what));
  } else {
    set_err(err, what);
  }
}

}  // namespace

extern "C" {

// 1 when this libtorch has an XPU backend (libtorch_xpu.so loaded and registered), else 0.
int alcf_xpu_has_backend(char** err) {
  try {
    return at::hasXPU() ? 1 : 0;
  } catch (const std::exception& e) {
    set_err_from(err, e);
  } catch (...) {
    set_err(err, nullptr);
  }
  return -1;
}

// Number of XPU devices visible to this process (with ZE_AFFINITY_MASK one tile: 1), 0 without an
// XPU backend; -1 and *err on an error.
int alcf_xpu_device_count(char** err) {
  try {
    if (!at::hasXPU()) {
      return 0;
    }
    return static_cast<int>(at::detail::getXPUHooks().getNumGPUs());
  } catch (const std::exception& e) {
    set_err_from(err, e);
  } catch (...) {
    set_err(err, nullptr);
  }
  return -1;
}

// A new tensor with t's data on xpu:index, or on the CPU for index < 0 (a copy unless t is there
// already). nullptr and *err on an error. The result is heap-allocated like tch's own tensors, so
// tch::Tensor::from_ptr takes it over (and frees it with tch's at_free).
at::Tensor* alcf_xpu_to(const at::Tensor* t, int index, char** err) {
  try {
    if (t == nullptr) {
      set_err(err, "alcf_xpu_to: null tensor");
      return nullptr;
    }
    const at::Device dev = index < 0 ? at::Device(at::kCPU)
                                     : at::Device(at::kXPU, static_cast<c10::DeviceIndex>(index));
    return new at::Tensor(t->to(dev, /*non_blocking=*/false, /*copy=*/false));
  } catch (const std::exception& e) {
    set_err_from(err, e);
  } catch (...) {
    set_err(err, nullptr);
  }
  return nullptr;
}

// 1 when t lives on an XPU, else 0.
int alcf_xpu_is_xpu(const at::Tensor* t) {
  return t != nullptr && t->defined() && t->device().type() == at::kXPU ? 1 : 0;
}

// Wait for all work queued on xpu:index. 0, or -1 and *err.
int alcf_xpu_synchronize(int index, char** err) {
  try {
    at::detail::getXPUHooks().deviceSynchronize(static_cast<c10::DeviceIndex>(index));
    return 0;
  } catch (const std::exception& e) {
    set_err_from(err, e);
  } catch (...) {
    set_err(err, nullptr);
  }
  return -1;
}

}  // extern "C"
