// The table of the cross-backend suite: every op family of the backend instruction set
// as rows of (name, input shapes, function of the inputs), run on a device in a dtype,
// with contiguous or non-contiguous inputs, forward and backward. A row's reference is
// the same function on the CPU in float64 applied to the very values the device saw
// (inputs rounded to the dtype first), so the comparison measures the kernels, not the
// rounding of the inputs. The device result is also compared with the CPU result in the
// same dtype. Shared by test_cross_backend.cpp (every device) and
// test_cross_backend_kernels.cpp (the simulator's kernel coverage).
#pragma once
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "testing.h"

namespace petal::cross_backend {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

enum class Domain { Any, Positive, AwayFromZero };

/// Input shapes of one call (one shape per input).
using Inputs = std::vector<Shape>;

struct Case {
  std::string name;
  /// The calls to make: each entry lists the shapes of the inputs of one call.
  std::vector<Inputs> variants;
  Fn f;
  bool differentiable = true;
  Domain domain = Domain::Any;
  /// Tolerance multiplier for this row (ops that chain several roundings).
  double slack = 1.0;
  /// Integer-valued results (argmax, comparisons, indices): compared exactly.
  bool exact = false;
  /// Dtypes this row also runs in, whatever the suite asks (kernels that exist only for
  /// them, e.g. the bf16/f16 tensor-core attention, are then launched by every run).
  std::vector<DType> also_dtypes = {};
};

/// Relative tolerance of a dtype for one op (float32 far under 1e-4, bf16 ~1e-2).
inline double tolerance(DType dt, const Case& c) {
  if (c.exact) return 0.0;
  double t = 1e-12;
  switch (dt) {
    case DType::f64: t = 1e-12; break;
    case DType::f32: t = 2e-6; break;
    case DType::bf16: t = 1.6e-2; break;
    case DType::f16: t = 2e-3; break;
    default: t = 0.0; break;
  }
  return t * c.slack;
}

/// An index tensor (int64) with the given values on device.
inline Tensor index_on(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  return tensor(values, shape, TensorOptions(DType::i64)).to(device);
}

// ------------------------------------------------------------------ the table

inline std::vector<Case> unary_cases() {
  const std::vector<Inputs> s1 = {{{1}}, {{7}}, {{3, 33}}, {{2, 197}}};
  return {
      {"neg", s1, [](const auto& x) { return neg(x[0]); }},
      {"exp", s1, [](const auto& x) { return exp(x[0]); }},
      {"log", s1, [](const auto& x) { return log(x[0]); }, true, Domain::Positive},
      {"sqrt", s1, [](const auto& x) { return sqrt(x[0]); }, true, Domain::Positive},
      {"rsqrt", s1, [](const auto& x) { return rsqrt(x[0]); }, true, Domain::Positive},
      {"abs", s1, [](const auto& x) { return abs(x[0]); }, true, Domain::AwayFromZero},
      {"sin", s1, [](const auto& x) { return sin(x[0]); }},
      {"cos", s1, [](const auto& x) { return cos(x[0]); }},
      {"tanh", s1, [](const auto& x) { return tanh(x[0]); }},
      {"sigmoid", s1, [](const auto& x) { return sigmoid(x[0]); }},
      {"relu", s1, [](const auto& x) { return relu(x[0]); }, true, Domain::AwayFromZero},
      {"gelu", s1, [](const auto& x) { return gelu(x[0]); }},
      {"gelu_tanh", s1, [](const auto& x) { return gelu(x[0], true); }},
      {"square", s1, [](const auto& x) { return square(x[0]); }},
      {"pow_scalar", s1, [](const auto& x) { return pow(x[0], 2.5); }, true, Domain::Positive},
      {"clamp", s1, [](const auto& x) { return clamp(x[0], -0.5, 0.7); }, true, Domain::AwayFromZero},
      {"add_scalar", s1, [](const auto& x) { return add(x[0], 1.25); }},
      {"mul_scalar", s1, [](const auto& x) { return mul(x[0], -3.0); }},
      {"rsub", s1, [](const auto& x) { return rsub(x[0], 2.0); }},
      {"rdiv", s1, [](const auto& x) { return rdiv(x[0], 1.5); }, true, Domain::AwayFromZero, 2.0},
  };
}

inline std::vector<Case> binary_cases() {
  // Same shapes, and two broadcasts ([4,1,33] x [5,1] -> [4,5,33], [1,197] x [3,1] -> [3,197]).
  const std::vector<Inputs> v = {{{7}, {7}}, {{3, 33}, {3, 33}}, {{4, 1, 33}, {5, 1}}, {{1, 197}, {3, 1}}};
  std::vector<Case> rows = {
      {"add", v, [](const auto& x) { return add(x[0], x[1], 0.5); }},
      {"sub", v, [](const auto& x) { return sub(x[0], x[1]); }},
      {"mul", v, [](const auto& x) { return mul(x[0], x[1]); }},
      {"div", v, [](const auto& x) { return div(x[0], x[1]); }, true, Domain::AwayFromZero, 2.0},
      {"pow", v, [](const auto& x) { return pow(x[0], x[1]); }, true, Domain::Positive, 2.0},
      {"maximum", v, [](const auto& x) { return maximum(x[0], x[1]); }},
      {"minimum", v, [](const auto& x) { return minimum(x[0], x[1]); }},
      {"where", v, [](const auto& x) { return where(gt(x[0], 0.0), x[0], x[1]); }},
  };
  // Comparisons (bool results): b equals a where a > 0.5 (exact in every dtype), so == and != see equal pairs.
  const auto with_ties = [](const std::vector<Tensor>& x) { return where(gt(x[0], 0.5), x[0], x[1]); };
  const std::vector<Inputs> cmp = {{{3, 33}, {3, 33}}, {{1, 197}, {1, 197}}};
  rows.push_back({"eq", cmp, [=](const auto& x) { return eq(x[0], with_ties(x)); }, false, Domain::Any, 1, true});
  rows.push_back({"ne", cmp, [=](const auto& x) { return ne(x[0], with_ties(x)); }, false, Domain::Any, 1, true});
  rows.push_back({"lt", cmp, [=](const auto& x) { return lt(x[0], with_ties(x)); }, false, Domain::Any, 1, true});
  rows.push_back({"le", cmp, [=](const auto& x) { return le(x[0], with_ties(x)); }, false, Domain::Any, 1, true});
  rows.push_back({"gt", v, [](const auto& x) { return gt(x[0], x[1]); }, false, Domain::Any, 1, true});
  rows.push_back({"ge scalar", {{{7}}, {{2, 33}}}, [](const auto& x) { return ge(x[0], 0.25); }, false, Domain::Any, 1,
                  true});
  return rows;
}

inline std::vector<Case> reduce_cases() {
  return {
      {"sum all", {{{3, 33}}}, [](const auto& x) { return sum(x[0]); }},
      {"sum all (long)", {{{2, 1025}}}, [](const auto& x) { return sum(x[0]); }},
      {"sum rows", {{{7, 33}}}, [](const auto& x) { return sum(x[0], {1}); }},
      {"sum columns", {{{33, 7}}}, [](const auto& x) { return sum(x[0], {0}, true); }},
      {"sum columns (wide)", {{{5, 1100}}}, [](const auto& x) { return sum(x[0], {0}); }},
      // Long enough for the split schedules of kernels/cuda/reduce.cu (columns, and whole).
      {"sum columns (long, split)", {{{300, 40}}}, [](const auto& x) { return sum(x[0], {0}); }},
      {"sum all (long, split)", {{{3, 3000}}}, [](const auto& x) { return sum(x[0]); }},
      {"sum dims 0,2", {{{3, 5, 7}}}, [](const auto& x) { return sum(x[0], {0, 2}); }},
      {"mean", {{{3, 5, 7}}}, [](const auto& x) { return mean(x[0], {1}); }},
      {"mean all", {{{197}}}, [](const auto& x) { return mean(x[0]); }},
      {"max all", {{{3, 33}}}, [](const auto& x) { return max(x[0]); }},
      {"max dim", {{{7, 33}}}, [](const auto& x) { return max(x[0], 1); }},
      {"max dim 0", {{{33, 7}}}, [](const auto& x) { return max(x[0], 0, true); }},
      {"min dim", {{{7, 65}}}, [](const auto& x) { return min(x[0], -1); }},
      {"min all", {{{197}}}, [](const auto& x) { return min(x[0]); }},
      {"argmax", {{{7, 33}}}, [](const auto& x) { return argmax(x[0], 1); }, false, Domain::Any, 1, true},
      {"argmax dim 0", {{{33, 7}}}, [](const auto& x) { return argmax(x[0], 0); }, false, Domain::Any, 1, true},
      {"argmin", {{{5, 200}}}, [](const auto& x) { return argmin(x[0], 1); }, false, Domain::Any, 1, true},
      // Ties: argmax must return the first of equal maxima on every backend.
      {"argmax ties",
       {{{4, 40}}},
       [](const auto& x) { return argmax(clamp(x[0], -0.3, 0.3), 1); },
       false,
       Domain::Any,
       1,
       true},
      {"var", {{{7, 33}}}, [](const auto& x) { return var(x[0], {1}); }, true, Domain::Any, 4.0},
      {"var all", {{{3, 5, 7}}}, [](const auto& x) { return var(x[0], {0, 1, 2}, 0); }, true, Domain::Any, 4.0},
  };
}

inline std::vector<Case> softmax_cases() {
  return {
      {"softmax rows", {{{7, 33}}}, [](const auto& x) { return softmax(x[0], -1); }},
      {"softmax one column", {{{3, 1}}}, [](const auto& x) { return softmax(x[0], 1); }},
      {"softmax dim 0", {{{33, 7}}}, [](const auto& x) { return softmax(x[0], 0); }},
      {"softmax long rows", {{{2, 197}}}, [](const auto& x) { return softmax(mul(x[0], 3.0), -1); }},
      {"log_softmax rows", {{{7, 33}}}, [](const auto& x) { return log_softmax(x[0], -1); }},
      {"log_softmax 3d", {{{2, 5, 65}}}, [](const auto& x) { return log_softmax(x[0], 2); }},
      {"log_softmax dim 1", {{{3, 33, 5}}}, [](const auto& x) { return log_softmax(x[0], 1); }},
  };
}

inline std::vector<Case> matmul_cases() {
  return {
      {"matmul 2d", {{{7, 33}, {33, 5}}}, [](const auto& x) { return matmul(x[0], x[1]); }, true, Domain::Any, 2.0},
      {"matmul vector", {{{33}, {33, 7}}}, [](const auto& x) { return matmul(x[0], x[1]); }, true, Domain::Any, 2.0},
      {"matmul batched", {{{3, 7, 9}, {3, 9, 5}}}, [](const auto& x) { return matmul(x[0], x[1]); }, true, Domain::Any,
       2.0},
      {"matmul broadcast", {{{2, 1, 4, 6}, {3, 6, 5}}}, [](const auto& x) { return matmul(x[0], x[1]); }, true,
       Domain::Any, 2.0},
      {"matmul transposed", {{{33, 7}, {5, 33}}}, [](const auto& x) { return matmul(x[0].t(), x[1].t()); }, true,
       Domain::Any, 2.0},
      {"matmul 1x1", {{{1, 1}, {1, 1}}}, [](const auto& x) { return matmul(x[0], x[1]); }},
  };
}

inline std::vector<Case> index_cases() {
  return {
      {"index_select dim 0", {{{7, 5}}},
       [](const auto& x) { return index_select(x[0], 0, index_on({6, 0, 3, 3, 1}, {5}, x[0].device())); }},
      {"index_select dim 1", {{{3, 33}}},
       [](const auto& x) { return index_select(x[0], 1, index_on({32, 0, 7, 7, 7, 12, 1}, {7}, x[0].device())); }},
      {"gather dim 1", {{{4, 6}}},
       [](const auto& x) {
         return gather(x[0], 1, index_on({5, 0, 0, 2, 1, 1, 3, 4, 5, 5, 2, 0}, {4, 3}, x[0].device()));
       }},
      {"gather dim 0", {{{5, 3}}},
       [](const auto& x) { return gather(x[0], 0, index_on({4, 0, 2, 4, 4, 1}, {2, 3}, x[0].device())); }},
      {"scatter_add", {{{4, 6}, {4, 3}}},
       [](const auto& x) {
         return scatter_add(x[0], 1, index_on({5, 0, 0, 2, 2, 2, 3, 4, 5, 0, 0, 0}, {4, 3}, x[0].device()), x[1]);
       },
       true, Domain::Any, 2.0},
      {"scatter_add dim 0", {{{3, 5}, {4, 5}}},
       [](const auto& x) {
         std::vector<int64_t> idx;
         for (int i = 0; i < 20; ++i) idx.push_back((i * 7 + 1) % 3);
         return scatter_add(x[0], 0, index_on(idx, {4, 5}, x[0].device()), x[1]);
       },
       true, Domain::Any, 2.0},
      {"cat", {{{3, 5}, {2, 5}}}, [](const auto& x) { return cat({x[0], x[1]}, 0); }},
      {"cat dim 1", {{{3, 5}, {3, 2}}}, [](const auto& x) { return cat({x[0], x[1]}, 1); }},
      {"stack", {{{3, 7}, {3, 7}}}, [](const auto& x) { return stack({x[0], x[1]}, 1); }},
      {"one_hot", {{{1}}},
       [](const auto& x) { return one_hot(index_on({2, 0, 4, 4, 1}, {5}, x[0].device()), 6); },
       false, Domain::Any, 1, true},
      {"contiguous of a transpose", {{{5, 33}}}, [](const auto& x) { return x[0].t().contiguous(); }},
      {"expand + mul", {{{1, 33}}}, [](const auto& x) { return mul(x[0].expand({4, 33}), 2.0); }},
  };
}

// Optimizer steps (in place, not differentiable): two steps on a contiguous copy of the
// parameter, returning it. States start at zero.
inline Tensor adamw_two_steps(const std::vector<Tensor>& x, bool amsgrad) {
  Tensor p = x[0].contiguous().clone(), g = x[1].contiguous();
  Tensor m = zeros_like(p), v = zeros_like(p), vmax = zeros_like(p);
  for (int64_t step = 1; step <= 2; ++step) adamw_step_(p, g, m, v, vmax, 1e-2, 0.9, 0.999, 1e-8, 0.05, step, amsgrad);
  return p;
}
inline Tensor sgd_two_steps(const std::vector<Tensor>& x, bool nesterov) {
  Tensor p = x[0].contiguous().clone(), g = x[1].contiguous();
  Tensor buf = zeros_like(p);
  for (int step = 0; step < 2; ++step) sgd_step_(p, g, buf, 0.1, 0.9, 0.0, 1e-3, nesterov, step == 0);
  return p;
}

// Multi-tensor steps: two steps over a list of two parameters (contiguous copies of x[0]
// and x[1]) with gradients x[2], x[3]; returns both parameters flattened and joined.
inline Tensor adamw_multi_two_steps(const std::vector<Tensor>& x, bool amsgrad) {
  std::vector<Tensor> p = {x[0].contiguous().clone(), x[1].contiguous().clone()};
  std::vector<Tensor> g = {x[2].contiguous(), x[3].contiguous()};
  std::vector<Tensor> m = {zeros_like(p[0]), zeros_like(p[1])}, v = {zeros_like(p[0]), zeros_like(p[1])};
  std::vector<Tensor> vmax = {zeros_like(p[0]), zeros_like(p[1])};
  for (int64_t step = 1; step <= 2; ++step)
    adamw_multi_tensor_step_(p, g, m, v, vmax, {step, step + 1}, 1e-2, 0.9, 0.999, 1e-8, 0.05, amsgrad);
  return cat({p[0].reshape({-1}), p[1].reshape({-1})}, 0);
}
inline Tensor sgd_multi_two_steps(const std::vector<Tensor>& x, double momentum) {
  std::vector<Tensor> p = {x[0].contiguous().clone(), x[1].contiguous().clone()};
  std::vector<Tensor> g = {x[2].contiguous(), x[3].contiguous()};
  std::vector<Tensor> buf = {zeros_like(p[0]), zeros_like(p[1])};
  for (int step = 0; step < 2; ++step)
    sgd_multi_tensor_step_(p, g, buf, {step == 0, step == 0}, 0.1, momentum, 0.0, 1e-3, momentum != 0.0);
  return cat({p[0].reshape({-1}), p[1].reshape({-1})}, 0);
}

/// The fused kernels of the mission (LayerNorm, softmax-cross-entropy, attention, patch
/// embedding, optimizer updates).
inline std::vector<Case> fused_cases() {
  return {
      {"layer_norm", {{{7, 33}, {33}, {33}}, {{2, 3, 197}, {197}, {197}}},
       [](const auto& x) { return layer_norm(x[0], x[1], x[2]); }, true, Domain::Any, 4.0},
      {"layer_norm without affine", {{{5, 65}}}, [](const auto& x) { return layer_norm(x[0], Tensor(), Tensor()); },
       true, Domain::Any, 4.0},
      {"cross_entropy", {{{7, 5}}},
       [](const auto& x) { return cross_entropy(x[0], index_on({4, 0, 2, 2, 1, 3, 0}, {7}, x[0].device())); }, true,
       Domain::Any, 4.0},
      {"cross_entropy smoothing + ignore", {{{6, 33}}},
       [](const auto& x) {
         return cross_entropy(x[0], index_on({32, -100, 0, 7, -100, 5}, {6}, x[0].device()), 0.1, -100);
       },
       true, Domain::Any, 4.0},
      {"attention",
       {{{2, 3, 7, 8}, {2, 3, 7, 8}, {2, 3, 7, 8}},
        {{1, 2, 5, 16}, {1, 2, 9, 16}, {1, 2, 9, 16}},
        {{1, 1, 33, 32}, {1, 1, 65, 32}, {1, 1, 65, 32}}},
       [](const auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }, true, Domain::Any, 4.0, false,
       {DType::bf16, DType::f16}},
      {"attention causal + key padding", {{{1, 2, 9, 16}, {1, 2, 12, 16}, {1, 2, 12, 16}}},
       [](const auto& x) {
         Tensor keep = lt(arange(int64_t(12)).to(x[0].device()), 10.0).reshape({1, 1, 1, 12});  // last 2 keys padded
         return scaled_dot_product_attention(x[0], x[1], x[2], keep, true);
       },
       true, Domain::Any, 4.0, false, {DType::bf16, DType::f16}},
      {"attention dropout (seeded Philox; + causal)",
       {{{1, 2, 9, 16}, {1, 2, 13, 16}, {1, 2, 13, 16}}, {{2, 1, 17, 8}, {2, 1, 17, 8}, {2, 1, 17, 8}}},
       [](const auto& x) {
         manual_seed(4242);  // the same mask on every device and every call (forward, backward)
         return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), x[0].shape()[2] == 17, -1.0, 0.3);
       },
       true, Domain::Any, 4.0, false, {DType::bf16, DType::f16}},
      {"attention deterministic dQ (+ causal)",
       {{{1, 2, 9, 16}, {1, 2, 70, 16}, {1, 2, 70, 16}}, {{1, 1, 80, 8}, {1, 1, 80, 8}, {1, 1, 80, 8}}},
       [](const auto& x) {
         const bool before = are_deterministic_algorithms_enabled();
         use_deterministic_algorithms(true);  // taken by this op's backward too
         Tensor out = scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), x[0].shape()[2] == 80);
         use_deterministic_algorithms(before);
         return out;
       },
       true, Domain::Any, 4.0, false, {DType::bf16, DType::f16}},
      {"patch_embed", {{{2, 3, 8, 8}, {5, 3, 4, 4}, {5}}},
       [](const auto& x) { return patch_embed(x[0], x[1], x[2]); }, true, Domain::Any, 4.0},
      {"fused_linear", {{{5, 7}, {3, 7}, {3}}, {{2, 3, 16}, {24, 16}, {24}}},
       [](const auto& x) { return fused_linear(x[0], x[1], x[2]); }, true, Domain::Any, 4.0},
      {"fused_linear gelu", {{{5, 7}, {16, 7}, {16}}, {{2, 3, 9}, {5, 9}, {5}}},
       [](const auto& x) { return fused_linear(x[0], x[1], x[2], "gelu"); }, true, Domain::Any, 4.0},
      {"fused_linear gelu_tanh", {{{4, 8}, {8, 8}, {8}}},
       [](const auto& x) { return fused_linear(x[0], x[1], x[2], "gelu_tanh"); }, true, Domain::Any, 4.0},
      {"fused_mlp gelu", {{{5, 7}, {9, 7}, {9}, {3, 9}, {3}}, {{2, 3, 6}, {16, 6}, {16}, {8, 16}, {8}}},
       [](const auto& x) { return fused_mlp(x[0], x[1], x[2], x[3], x[4], "gelu"); }, true, Domain::Any, 4.0},
      {"fused_mlp gelu_tanh", {{{4, 8}, {16, 8}, {16}, {5, 16}, {5}}},
       [](const auto& x) { return fused_mlp(x[0], x[1], x[2], x[3], x[4], "gelu_tanh"); }, true, Domain::Any, 4.0},
      {"adamw step", {{{7, 33}, {7, 33}}}, [](const auto& x) { return adamw_two_steps(x, false); }, false,
       Domain::Any, 4.0},
      {"adamw step amsgrad", {{{197}, {197}}}, [](const auto& x) { return adamw_two_steps(x, true); }, false,
       Domain::Any, 4.0},
      {"sgd step", {{{7, 33}, {7, 33}}}, [](const auto& x) { return sgd_two_steps(x, false); }, false, Domain::Any,
       4.0},
      {"sgd step nesterov", {{{197}, {197}}}, [](const auto& x) { return sgd_two_steps(x, true); }, false,
       Domain::Any, 4.0},
      {"adamw multi-tensor step", {{{7, 33}, {197}, {7, 33}, {197}}},
       [](const auto& x) { return adamw_multi_two_steps(x, false); }, false, Domain::Any, 4.0},
      {"adamw multi-tensor step amsgrad", {{{1}, {1025}, {1}, {1025}}},
       [](const auto& x) { return adamw_multi_two_steps(x, true); }, false, Domain::Any, 4.0},
      {"sgd multi-tensor step", {{{7, 33}, {197}, {7, 33}, {197}}},
       [](const auto& x) { return sgd_multi_two_steps(x, 0.0); }, false, Domain::Any, 4.0},
      {"sgd multi-tensor step nesterov", {{{7}, {1025}, {7}, {1025}}},
       [](const auto& x) { return sgd_multi_two_steps(x, 0.9); }, false, Domain::Any, 4.0},
  };
}

/// Every family, with its name.
inline std::vector<std::pair<std::string, std::vector<Case>>> all_families() {
  return {{"unary", unary_cases()},     {"binary", binary_cases()}, {"reduce", reduce_cases()},
          {"softmax", softmax_cases()}, {"matmul", matmul_cases()}, {"index", index_cases()},
          {"fused", fused_cases()}};
}

// ------------------------------------------------------------------ running a row

inline Tensor shape_input(const Tensor& x64, Domain domain) {
  NoGradGuard ng;
  switch (domain) {
    case Domain::Positive: return add(abs(x64), 0.5);
    case Domain::AwayFromZero: return where(ge(x64, 0.0), add(x64, 0.25), sub(x64, 0.25));
    case Domain::Any: break;
  }
  return x64;
}

/// Runs one row on device in dtype and checks forward and backward against the float64
/// CPU result and against the CPU in the same dtype.
inline void run_case(const Case& c, const Inputs& shapes, const std::string& device, DType dtype, bool non_contiguous,
                     uint64_t seed) {
  using petal::testing::check_close;
  using petal::testing::normalized_error;
  std::string shape_list;
  for (const Shape& s : shapes) shape_list += shape_str(s) + " ";
  INFO("op " << c.name << " on " << device << " in " << dtype_name(dtype) << ", inputs " << shape_list
             << (non_contiguous ? "(non-contiguous)" : "(contiguous)"));
  const Device dev(device);
  const double tol = tolerance(dtype, c);
  const bool grads = c.differentiable;

  std::vector<Tensor> on_dev, ref_in, cpu_in;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor x64 = shape_input(petal::testing::random_input(shapes[i], seed + 101 * i), c.domain);
    Tensor d = x64.to(dev, dtype);
    if (non_contiguous) d = petal::testing::non_contiguous_copy(d);
    // The reference sees exactly the values the device sees.
    ref_in.push_back(d.to(kCPU, DType::f64).contiguous().clone());
    cpu_in.push_back(d.to(kCPU).clone());
    if (grads) {
      d.requires_grad_(true);
      ref_in.back().requires_grad_(true);
      cpu_in.back().requires_grad_(true);
    }
    on_dev.push_back(d);
  }

  Tensor ref = c.f(ref_in);
  Tensor cpu = c.f(cpu_in);
  Tensor out = c.f(on_dev);
  REQUIRE(out.device() == dev);
  REQUIRE(out.shape() == ref.shape());
  check_close(out, ref, tol, c.name + " forward vs float64 cpu");
  // Same dtype on the CPU: the two backends agree at least as well as each with float64.
  CHECK(normalized_error(out, cpu) <= 2 * tol);
  if (!grads) return;

  Tensor w64 = petal::testing::random_input(out.shape(), seed + 7);
  Tensor w = w64.to(dev, out.dtype());
  sum(mul(out, w)).backward();
  sum(mul(ref, w.to(kCPU, DType::f64))).backward();
  sum(mul(cpu, w.to(kCPU))).backward();
  for (size_t i = 0; i < on_dev.size(); ++i) {
    INFO("gradient of input " << i);
    Tensor g = on_dev[i].grad();
    REQUIRE(g.defined());
    REQUIRE(g.device() == dev);
    check_close(g, ref_in[i].grad(), 2 * tol, c.name + " backward vs float64 cpu");
    CHECK(normalized_error(g, cpu_in[i].grad()) <= 4 * tol);
  }
}

/// Runs every row of a family on device over dtypes, contiguous and not.
inline void run_family(const std::vector<Case>& rows, const std::string& device, const std::vector<DType>& dtypes) {
  uint64_t seed = 1000;
  for (const Case& c : rows) {
    std::vector<DType> row_dtypes = dtypes;
    for (DType dt : c.also_dtypes)
      if (std::find(row_dtypes.begin(), row_dtypes.end(), dt) == row_dtypes.end()) row_dtypes.push_back(dt);
    for (const Inputs& shapes : c.variants)
      for (DType dt : row_dtypes)
        for (bool nc : {false, true}) run_case(c, shapes, device, dt, nc, seed++);
  }
}

}  // namespace petal::cross_backend
