// Automatic mixed precision (like torch.autocast): inside a petal::autocast scope, ops on
// tensors of the guarded device type pick their compute dtype from one table
// (core/src/autocast.cpp), applied at the op's entry in core/: GEMM-like ops (matmul,
// Linear, patch embedding, attention) cast f32 inputs to bf16/f16 (kernels accumulate in
// f32); softmax, cross-entropy and the sum/mean/var reductions cast 16-bit inputs to f32;
// LayerNorm computes in f32 with f32 parameters but reads its input as it comes and writes the
// autocast dtype (autocast_active). Everything else runs in the dtype it is given. Kernels
// never decide.
//
// Parameters stay f32 (the master copy). The cast of a leaf that requires grad (a
// parameter) is made once and reused by every later op of the scope (the cast cache); the
// cache entry is dropped when the parameter is written in place (an optimizer step,
// copy_, ...) and the whole cache is cleared when the outermost guard exits. The cast's
// backward converts the gradient back, so parameter gradients arrive in f32. Backward
// passes run with autocast off: their rules use the dtypes the forward recorded.
// State and cache are per thread, as in PyTorch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <petal/device.h>
#include <petal/dtype.h>
#include <petal/tensor.h>

namespace petal {

/// What autocast does with an op's floating inputs.
enum class CastPolicy : uint8_t {
  LowerPrecision,  ///< f32 (and the other 16-bit type) inputs cast to the autocast dtype
  Float32,         ///< bf16/f16 inputs cast to f32
  None,            ///< the op is not in the table: inputs untouched
};

/// RAII guard enabling mixed precision for ops on tensors of device's type (cpu, sim or
/// cuda; the index is ignored) with dtype bf16 or f16. Nested guards restore the state
/// they found; `enabled = false` turns autocast off inside an enabled scope.
class autocast {
 public:
  explicit autocast(Device device, DType dtype = DType::bf16, bool enabled = true, bool cache_enabled = true);
  ~autocast();
  autocast(const autocast&) = delete;
  autocast& operator=(const autocast&) = delete;

 private:
  DeviceType type_;
  bool prev_enabled_;
  DType prev_dtype_;
  bool prev_cache_enabled_;
};

/// True when autocast is on for this device type on this thread.
bool is_autocast_enabled(DeviceType type);
/// The lower-precision dtype autocast uses for this device type (bf16 unless set).
DType get_autocast_dtype(DeviceType type);
/// The table's policy for an op name ("matmul", "layer_norm", ...).
CastPolicy autocast_policy(const char* op);
/// Drops every cached parameter cast of this thread.
void clear_autocast_cache();
/// Number of cached parameter casts on this thread (for tests and diagnostics).
size_t autocast_cache_size();

/// The op's inputs cast as the table says when autocast is on for their device (the
/// device of the first defined input); the inputs themselves otherwise. Undefined,
/// integer, f64 and other-device inputs are never cast. Called at the entry of ops.
std::vector<Tensor> autocast_inputs(const char* op, std::initializer_list<Tensor> inputs);

/// True when ops on tensors of this device type run under autocast on this thread now (a
/// guard enabled for the type, not inside AutocastDisabledGuard); *dtype (if given) is then the
/// scope's lower-precision dtype. layer_norm uses it: under autocast it reads f32 or 16-bit
/// activations as they come, computes in f32 with f32 parameters (16-bit parameters cast, cached)
/// and writes its output in the autocast dtype, the dtype its consumer (a Linear) computes in.
bool autocast_active(DeviceType type, DType* dtype = nullptr);

/// Turns autocast off on this thread for its scope (the backward engine uses it).
class AutocastDisabledGuard {
 public:
  AutocastDisabledGuard();
  ~AutocastDisabledGuard();
  AutocastDisabledGuard(const AutocastDisabledGuard&) = delete;
  AutocastDisabledGuard& operator=(const AutocastDisabledGuard&) = delete;
};

namespace detail {
/// Forgets cached casts of the storage (called before every in-place write).
void autocast_forget_storage(const Storage* storage);
}  // namespace detail

}  // namespace petal
