// bf16 GEMM through oneDNN matmul (see gemm_onednn.h). The row-major GemmArgs map onto
// oneDNN's dst[b, m, n] = sum_k src[b, m, k] wei[b, k, n] with explicit strides: a
// transpose is a swap of the two inner strides, a batch stride of 0 a batch dimension of 1
// (oneDNN broadcasts it), alpha the output scale and beta a sum post-op (dst read as bf16,
// added in f32). The library-side scratchpad is replaced by a per-thread buffer, so one
// cached primitive may run on several threads at once.
#include "kernels/cpu/gemm_onednn.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if PETAL_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <vector>
#endif

namespace petal::kernels::cpu {

namespace {

bool env_enabled() {
  const char* v = std::getenv("PETAL_ONEDNN");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{env_enabled()};
  return flag;
}

}  // namespace

#if PETAL_WITH_ONEDNN

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;

// dtype, batch, m, n, k, trans_a, lda, stride_a, trans_b, ldb, stride_b, ldc, stride_c,
// alpha and beta (as bits).
using Key = std::array<int64_t, 15>;

struct Plan {
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c, scratch;
  size_t scratch_bytes = 0;
};

// oneDNN 2.6 uses AMX only when allowed to (ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX or
// dnnl_set_max_cpu_isa before the first primitive). Allow it unless the user chose a
// limit through the environment; without AMX on the CPU this changes nothing.
dnnl::engine& engine() {
  static dnnl::engine eng = [] {
    if (std::getenv("ONEDNN_MAX_CPU_ISA") == nullptr && std::getenv("DNNL_MAX_CPU_ISA") == nullptr)
      (void)dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx512_core_amx);
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return eng;
}

int64_t bits_of(double x) {
  int64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// The descriptor of an operand stored with inner dimensions rows x cols of the product
// (m x k for A, k x n for B), transposed storage when trans, leading dimension ld.
dnnl::memory::desc operand_desc(int64_t batch, int64_t stride, int64_t rows, int64_t cols, bool trans, int64_t ld,
                                dt type) {
  const int64_t rs = trans ? 1 : ld, cs = trans ? ld : 1;
  if (batch == 1) return dnnl::memory::desc(dims{rows, cols}, type, dims{rs, cs});
  if (stride == 0) return dnnl::memory::desc(dims{1, rows, cols}, type, dims{rows * cols, rs, cs});
  return dnnl::memory::desc(dims{batch, rows, cols}, type, dims{stride, rs, cs});
}

std::shared_ptr<Plan> make_plan(const GemmArgs& g) {
  const dt type = dt::bf16;
  const auto a_md = operand_desc(g.batch, g.stride_a, g.m, g.k, g.trans_a, g.lda, type);
  const auto b_md = operand_desc(g.batch, g.stride_b, g.k, g.n, g.trans_b, g.ldb, type);
  const auto c_md = g.batch == 1 ? dnnl::memory::desc(dims{g.m, g.n}, type, dims{g.ldc, 1})
                                 : dnnl::memory::desc(dims{g.batch, g.m, g.n}, type, dims{g.stride_c, g.ldc, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (g.alpha != 1.0) attr.set_output_scales(0, {static_cast<float>(g.alpha)});
  if (g.beta != 0.0) {
    dnnl::post_ops po;
    po.append_sum(static_cast<float>(g.beta));
    attr.set_post_ops(po);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
  auto plan = std::make_shared<Plan>();
  plan->a = pd.src_desc();
  plan->b = pd.weights_desc();
  plan->c = pd.dst_desc();
  plan->scratch = pd.scratchpad_desc();
  plan->scratch_bytes = plan->scratch.get_size();
  plan->prim = dnnl::matmul(pd);
  return plan;
}

// The cached primitive of this problem, or null when oneDNN has none for it (cached too).
std::shared_ptr<Plan> plan_of(const GemmArgs& g) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<Plan>> plans;
  const Key key{static_cast<int64_t>(g.dtype), g.batch, g.m, g.n, g.k, g.trans_a, g.lda,
                g.batch == 1 ? 0 : g.stride_a, g.trans_b, g.ldb, g.batch == 1 ? 0 : g.stride_b, g.ldc,
                g.batch == 1 ? 0 : g.stride_c, bits_of(g.alpha), bits_of(g.beta)};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  std::shared_ptr<Plan> plan;
  try {
    plan = make_plan(g);
  } catch (const dnnl::error&) {
    plan = nullptr;  // unsupported layout or ISA: the caller's fallback runs
  }
  plans.emplace(key, plan);
  return plan;
}

}  // namespace

bool onednn_built() { return true; }

bool onednn_gemm(const GemmArgs& g) {
  if (!onednn_gemm_enabled() || g.dtype != DType::bf16) return false;
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0 || g.k <= 0) return false;
  if (g.batch > 1 && g.stride_c == 0) return false;
  const std::shared_ptr<Plan> plan = plan_of(g);
  if (!plan) return false;
  thread_local std::vector<unsigned char> scratch;
  if (scratch.size() < plan->scratch_bytes) scratch.resize(plan->scratch_bytes);
  dnnl::engine& eng = engine();
  dnnl::memory a(plan->a, eng, const_cast<void*>(g.a));
  dnnl::memory b(plan->b, eng, const_cast<void*>(g.b));
  dnnl::memory c(plan->c, eng, g.c);
  dnnl::memory s(plan->scratch, eng, scratch.data());
  dnnl::stream stream(eng);
  plan->prim.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, s}});
  stream.wait();
  return true;
}

std::string onednn_cpu_isa() {
  (void)engine();  // the ISA limit is set with the engine
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    default: return "other";
  }
}

bool onednn_bf16_fast() {
  if (!onednn_gemm_enabled()) return false;
  const std::string isa = onednn_cpu_isa();
  return isa == "avx512_core_amx" || isa == "avx512_core_bf16";
}

#else  // no oneDNN in this build

bool onednn_bf16_fast() { return false; }

bool onednn_built() { return false; }
bool onednn_gemm(const GemmArgs&) { return false; }
std::string onednn_cpu_isa() { return "none"; }

#endif

bool onednn_gemm_enabled() { return onednn_built() && enabled_flag().load(std::memory_order_relaxed); }

void set_onednn_gemm_enabled(bool enabled) { enabled_flag().store(enabled, std::memory_order_relaxed); }

}  // namespace petal::kernels::cpu
