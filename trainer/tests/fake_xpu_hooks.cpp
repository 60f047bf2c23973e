// A stand-in for libtorch_xpu.so, for tests/xpu.rs only: it registers XPU hooks that claim one XPU
// device, the way the real library registers its hooks when it is loaded, but no XPU kernels or
// allocator. With it the trainer's XPU path gets past the availability check and the first tensor
// move must fail with libtorch's own error, reported as a message (never a crash).
#include <ATen/detail/XPUHooksInterface.h>

namespace alcf_fake {
// The registry key is the class name: at::detail::getXPUHooks() asks for "XPUHooks".
struct XPUHooks : at::XPUHooksInterface {
  bool hasXPU() const override { return true; }
  c10::DeviceIndex getNumGPUs() const override { return 1; }
};
}  // namespace alcf_fake

namespace at {
using alcf_fake::XPUHooks;
REGISTER_XPU_HOOKS(XPUHooks);
}  // namespace at
