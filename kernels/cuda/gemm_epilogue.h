// Which cuBLASLt epilogue a fused Linear asks for, and what its kernels do around the GEMM
// (kernels/cuda/linear.cu). Pure host logic with no CUDA type, so the choice and the fallback
// are unit-tested without a GPU (tests/test_linear.cpp); runtime.cpp maps GemmEpilogue onto
// cublasLtEpilogue_t.
//
// cuBLASLt's GELU epilogues compute the tanh approximation, so an erf GELU (timm's and
// PyTorch's default) takes the BIAS epilogue into aux and petal's GELU kernel after it. The
// epilogue operands (bias vector, aux matrix) must be 16-byte aligned and the aux leading
// dimension a multiple of 8 elements, else no epilogue is asked for. Whenever cuBLASLt has
// no algorithm for the epilogue problem (rt_gemm_epilogue returns false), the linear runs
// the plain GEMM and petal's kernels instead: the "fallback" plan below, which is also what
// the simulator always runs.
#pragma once
#include <cstdint>

#include "kernels/backend.h"

namespace petal::kernels {

enum class GemmEpilogue : uint8_t {
  None,         // plain GEMM
  Bias,         // D = A B + bias (bias per output feature)
  GeluAuxBias,  // aux = A B + bias, D = gelu_tanh(aux)
  GeluAux,      // aux = A B, D = gelu_tanh(aux)
  BGradB,       // D = A B and bias = the sums of B over k (the bias gradient of the dW GEMM)
  DGelu,        // D = (A B) * gelu_tanh'(aux) (aux: the forward's GELU input, read)
  DGeluBGrad,   // DGelu and bias = the sums of D over its rows (the bias gradient of the layer before)
};

/// The epilogue reads or writes a bias vector (CUBLASLT_MATMUL_DESC_BIAS_POINTER).
inline bool epilogue_uses_bias(GemmEpilogue e) {
  return e == GemmEpilogue::Bias || e == GemmEpilogue::GeluAuxBias || e == GemmEpilogue::BGradB ||
         e == GemmEpilogue::DGeluBGrad;
}
/// The epilogue writes (GELU_AUX*) or reads (DGELU*) an aux matrix with a leading dimension.
inline bool epilogue_uses_aux(GemmEpilogue e) {
  return e == GemmEpilogue::GeluAuxBias || e == GemmEpilogue::GeluAux || e == GemmEpilogue::DGelu ||
         e == GemmEpilogue::DGeluBGrad;
}

inline const char* gemm_epilogue_name(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::None: return "none";
    case GemmEpilogue::Bias: return "bias";
    case GemmEpilogue::GeluAuxBias: return "gelu_aux_bias";
    case GemmEpilogue::GeluAux: return "gelu_aux";
    case GemmEpilogue::BGradB: return "bgradb";
    case GemmEpilogue::DGelu: return "dgelu";
    case GemmEpilogue::DGeluBGrad: return "dgelu_bgrad";
  }
  return "?";
}

/// The forward of a fused Linear: the epilogue to ask for, where the GEMM writes, and what
/// petal's bias/activation kernel (linear_bias_act_kernel) still does after it.
struct LinearForwardPlan {
  GemmEpilogue epilogue = GemmEpilogue::None;
  bool gemm_into_aux = false;  // the GEMM (with its epilogue) writes aux, the kernel writes y
  bool kernel_adds_bias = false;
  bool kernel_applies_act = false;
  bool kernel() const { return kernel_adds_bias || kernel_applies_act; }
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/// The plan with no epilogue: plain GEMM, then one kernel adds the bias and applies the
/// activation (writing aux and y). Used on the simulator and whenever cuBLASLt has no
/// algorithm for the epilogue.
inline LinearForwardPlan linear_forward_fallback(const LinearArgs& a) {
  LinearForwardPlan p;
  p.gemm_into_aux = a.act != LinearActivation::None;
  p.kernel_adds_bias = a.bias != nullptr;
  p.kernel_applies_act = a.act != LinearActivation::None;
  return p;
}

/// The plan that asks cuBLASLt for an epilogue (lt: the device has cuBLASLt, i.e. cuda and
/// a dtype cuBLASLt handles: f32, bf16, f16).
inline LinearForwardPlan linear_forward_plan(const LinearArgs& a, bool lt) {
  const bool lt_dtype = a.dtype == DType::f32 || a.dtype == DType::bf16 || a.dtype == DType::f16;
  if (!lt || !lt_dtype) return linear_forward_fallback(a);
  const bool bias_ok = a.bias != nullptr && aligned16(a.bias);
  const bool aux_ok = a.aux != nullptr && aligned16(a.aux) && a.n % 8 == 0;
  LinearForwardPlan p;
  switch (a.act) {
    case LinearActivation::None:
      if (a.bias == nullptr) return p;  // plain GEMM, nothing after it
      if (!bias_ok) return linear_forward_fallback(a);
      p.epilogue = GemmEpilogue::Bias;
      return p;
    case LinearActivation::GeluTanh:
      if (!aux_ok || (a.bias != nullptr && !bias_ok)) return linear_forward_fallback(a);
      p.epilogue = a.bias != nullptr ? GemmEpilogue::GeluAuxBias : GemmEpilogue::GeluAux;
      return p;
    case LinearActivation::GeluErf:
      // cuBLASLt's GELU is the tanh form: the bias in the epilogue, the erf GELU in petal's kernel.
      p.gemm_into_aux = true;
      p.kernel_applies_act = true;
      if (a.bias == nullptr) return p;
      if (!bias_ok) return linear_forward_fallback(a);
      p.epilogue = GemmEpilogue::Bias;
      return p;
  }
  return linear_forward_fallback(a);
}

/// The backward of a fused Linear: whether the dW GEMM computes the bias gradient in its
/// BGRADB epilogue (else a column reduction over dpre does). DGELU_BGRAD would need the GEMM
/// that produces dy (the next layer's dX GEMM), which lies outside this op: not used.
struct LinearBackwardPlan {
  bool act_kernel = false;      // dpre = dy * act'(aux) by petal's kernel (no GEMM precedes it here)
  bool dw_bgradb = false;       // dbias from the dW GEMM's BGRADB epilogue
  bool reduce_bias = false;     // dbias by a column reduction (reduce Sum over the rows of dpre)
};

inline LinearBackwardPlan linear_backward_fallback(const LinearArgs& a, bool want_dbias) {
  LinearBackwardPlan p;
  p.act_kernel = a.act != LinearActivation::None;
  p.reduce_bias = want_dbias;
  return p;
}

inline LinearBackwardPlan linear_backward_plan(const LinearArgs& a, bool lt, bool want_dw, void* dbias) {
  LinearBackwardPlan p = linear_backward_fallback(a, dbias != nullptr);
  const bool lt_dtype = a.dtype == DType::f32 || a.dtype == DType::bf16 || a.dtype == DType::f16;
  if (lt && lt_dtype && want_dw && dbias != nullptr && aligned16(dbias)) {
    p.dw_bgradb = true;
    p.reduce_bias = false;
  }
  return p;
}

/// The backward of a fused MLP (fc1 -> GELU -> fc2, kernels/cuda/mlp.cu). fc2's dX GEMM
/// (dhidden = dy W2, [m, h]) is the GEMM that precedes fc1's activation gradient, so with the
/// tanh GELU it can carry DGELU_BGRAD: dpre = (dy W2) * gelu'(aux) and db1 = the column sums
/// of dpre, then fc1's dW1 and dx GEMMs run plain. What cuBLASLt cannot take (the erf GELU,
/// since its GELU is the tanh form; f64; aux misaligned or h % 8 != 0, the aux leading
/// dimension; db1 misaligned; the simulator) and a problem it has no algorithm for
/// (rt_gemm_epilogue false) take the composition: fc2's linear_backward into dhidden, then
/// fc1's (Backend::mlp_backward), which on cuda still has BGRADB on both dW GEMMs.
struct MlpBackwardPlan {
  GemmEpilogue dhidden_epilogue = GemmEpilogue::None;  // DGelu / DGeluBGrad, or None: the composition
};

inline MlpBackwardPlan mlp_backward_plan(const MlpArgs& a, bool lt, const void* db1) {
  MlpBackwardPlan p;
  const bool lt_dtype = a.dtype == DType::f32 || a.dtype == DType::bf16 || a.dtype == DType::f16;
  if (!lt || !lt_dtype || a.act != LinearActivation::GeluTanh) return p;
  if (a.aux == nullptr || !aligned16(a.aux) || a.h % 8 != 0) return p;
  if (db1 != nullptr && !aligned16(db1)) return p;
  p.dhidden_epilogue = db1 != nullptr ? GemmEpilogue::DGeluBGrad : GemmEpilogue::DGelu;
  return p;
}

}  // namespace petal::kernels
