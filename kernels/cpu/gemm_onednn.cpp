// bf16 / f32 GEMM through oneDNN matmul (see gemm_onednn.h). The row-major GemmArgs map onto
// oneDNN's dst[b, m, n] = sum_k src[b, m, k] wei[b, k, n] with explicit strides: a
// transpose is a swap of the two inner strides, a batch stride of 0 a batch dimension of 1
// (oneDNN broadcasts it), alpha the output scale and beta a sum post-op (dst read as bf16,
// added in f32; C may be f32 under bf16 inputs). The library-side scratchpad is replaced by a
// per-thread buffer, so one cached primitive may run on several threads at once. The cache
// is a map under a mutex; OnednnGemm looks a primitive up once and keeps its own memory
// objects and stream, so repeated runs skip the lookup and the object creation (about 4 us
// a call on this machine, as much as a 65 x 65 x 64 product).
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
// alpha and beta (as bits), C dtype.
using Key = std::array<int64_t, 16>;

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

dt onednn_type(DType t) { return t == DType::bf16 ? dt::bf16 : dt::f32; }

std::shared_ptr<Plan> make_plan(const GemmArgs& g, DType c_dtype) {
  const dt type = onednn_type(g.dtype), c_type = onednn_type(c_dtype);
  const auto a_md = operand_desc(g.batch, g.stride_a, g.m, g.k, g.trans_a, g.lda, type);
  const auto b_md = operand_desc(g.batch, g.stride_b, g.k, g.n, g.trans_b, g.ldb, type);
  const auto c_md = g.batch == 1 ? dnnl::memory::desc(dims{g.m, g.n}, c_type, dims{g.ldc, 1})
                                 : dnnl::memory::desc(dims{g.batch, g.m, g.n}, c_type, dims{g.stride_c, g.ldc, 1});
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
std::shared_ptr<Plan> plan_of(const GemmArgs& g, DType c_dtype) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<Plan>> plans;
  const Key key{static_cast<int64_t>(g.dtype), g.batch, g.m, g.n, g.k, g.trans_a, g.lda,
                g.batch == 1 ? 0 : g.stride_a, g.trans_b, g.ldb, g.batch == 1 ? 0 : g.stride_b, g.ldc,
                g.batch == 1 ? 0 : g.stride_c, bits_of(g.alpha), bits_of(g.beta), static_cast<int64_t>(c_dtype)};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  std::shared_ptr<Plan> plan;
  try {
    plan = make_plan(g, c_dtype);
  } catch (const dnnl::error&) {
    plan = nullptr;  // unsupported layout or ISA: the caller's fallback runs
  }
  plans.emplace(key, plan);
  return plan;
}

// The dtype pairs handled (see onednn_gemm_to) and the shapes every path declines.
bool takes(const GemmArgs& g, DType c_dtype) {
  if (!onednn_gemm_enabled()) return false;
  const bool types = (g.dtype == DType::bf16 && (c_dtype == DType::bf16 || c_dtype == DType::f32)) ||
                     (g.dtype == DType::f32 && c_dtype == DType::f32);
  if (!types) return false;
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0 || g.k <= 0) return false;
  return !(g.batch > 1 && g.stride_c == 0);
}

// This thread's scratchpad, at least `bytes` long.
void* thread_scratch(size_t bytes) {
  thread_local std::vector<unsigned char> scratch;
  if (scratch.size() < bytes) scratch.resize(bytes);
  return scratch.data();
}

}  // namespace

bool onednn_built() { return true; }

struct OnednnGemm::Impl {
  std::shared_ptr<Plan> plan;
  dnnl::memory a, b, c, s;
  dnnl::stream stream;
};

bool OnednnGemm::prepare(const GemmArgs& g, DType c_dtype) {
  impl_.reset();
  if (!takes(g, c_dtype)) return false;
  std::shared_ptr<Plan> plan = plan_of(g, c_dtype);
  if (!plan) return false;
  dnnl::engine& eng = engine();
  auto impl = std::make_unique<Impl>();
  // Memory objects with no handle yet (DNNL_MEMORY_NONE): run() sets the pointers.
  impl->a = dnnl::memory(plan->a, eng, DNNL_MEMORY_NONE);
  impl->b = dnnl::memory(plan->b, eng, DNNL_MEMORY_NONE);
  impl->c = dnnl::memory(plan->c, eng, DNNL_MEMORY_NONE);
  impl->s = dnnl::memory(plan->scratch, eng, DNNL_MEMORY_NONE);
  impl->stream = dnnl::stream(eng);
  impl->plan = std::move(plan);
  impl_ = std::move(impl);
  return true;
}

void OnednnGemm::run(const void* a, const void* b, void* c) {
  Impl& p = *impl_;
  p.a.set_data_handle(const_cast<void*>(a));
  p.b.set_data_handle(const_cast<void*>(b));
  p.c.set_data_handle(c);
  p.s.set_data_handle(thread_scratch(p.plan->scratch_bytes));
  p.plan->prim.execute(p.stream,
                       {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}, {DNNL_ARG_SCRATCHPAD, p.s}});
  p.stream.wait();
}

bool onednn_gemm_to(const GemmArgs& g, DType c_dtype) {
  OnednnGemm op;
  if (!op.prepare(g, c_dtype)) return false;
  op.run(g.a, g.b, g.c);
  return true;
}

bool onednn_gemm(const GemmArgs& g) { return g.dtype == DType::bf16 && onednn_gemm_to(g, DType::bf16); }

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
bool onednn_gemm_to(const GemmArgs&, DType) { return false; }

struct OnednnGemm::Impl {};
bool OnednnGemm::prepare(const GemmArgs&, DType) {
  impl_.reset();
  return false;
}
void OnednnGemm::run(const void*, const void*, void*) {}
std::string onednn_cpu_isa() { return "none"; }

#endif

OnednnGemm::OnednnGemm() = default;
OnednnGemm::~OnednnGemm() = default;
OnednnGemm::OnednnGemm(OnednnGemm&&) noexcept = default;
OnednnGemm& OnednnGemm::operator=(OnednnGemm&&) noexcept = default;

bool onednn_gemm_enabled() { return onednn_built() && enabled_flag().load(std::memory_order_relaxed); }

void set_onednn_gemm_enabled(bool enabled) { enabled_flag().store(enabled, std::memory_order_relaxed); }

}  // namespace petal::kernels::cpu
