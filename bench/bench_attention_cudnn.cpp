// bf16 attention at the shapes of issue 12: B*H in {64*12, 256*12}, S in {65, 197}, Dh = 64,
// petal's scaled_dot_product_attention (the tensor-core flash kernels on cuda) against
// cuDNN's SDPA through its graph API (cudnn-frontend) in the same binary and run: forward,
// backward (cuDNN) and forward + backward. TFLOP/s counters count the two GEMMs of the
// forward, 4 B H S^2 Dh, and 2.5x that for the backward (FlashAttention-2's convention: five
// GEMMs of that size), so fwd + bwd is 3.5x. The cuDNN cases are built when the
// cudnn-frontend headers and cuDNN are found (bench/CMakeLists.txt) and run only on a GPU.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_common.h"

#if PETAL_BENCH_CUDNN
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cudnn_frontend.h>
#endif

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

constexpr int64_t kHeads = 12, kHeadDim = 64;

struct Sdpa {
  int64_t B, H, S, D;
  double fwd_flops() const { return 4.0 * B * H * S * S * D; }
};

Sdpa shape_of(const benchmark::State& state) { return {state.range(0), kHeads, state.range(1), kHeadDim}; }

void set_counters(benchmark::State& state, double flops) {
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// petal, bf16 on the cuda device.
void BM_sdpa_bf16_petal_forward(benchmark::State& state) {
  if (skip_without_device(state, "cuda")) return;
  NoGradGuard ng;
  const Sdpa s = shape_of(state);
  const TensorOptions o(DType::bf16, Device("cuda"));
  Tensor q = randn({s.B, s.H, s.S, s.D}, o), k = randn({s.B, s.H, s.S, s.D}, o), v = randn({s.B, s.H, s.S, s.D}, o);
  for (auto _ : state) {
    Tensor out = scaled_dot_product_attention(q, k, v);
    sync(out);
  }
  set_counters(state, s.fwd_flops());
}

void BM_sdpa_bf16_petal_forward_backward(benchmark::State& state) {
  if (skip_without_device(state, "cuda")) return;
  const Sdpa s = shape_of(state);
  const TensorOptions o(DType::bf16, Device("cuda"));
  Tensor q = randn({s.B, s.H, s.S, s.D}, o).requires_grad_(), k = randn({s.B, s.H, s.S, s.D}, o).requires_grad_(),
         v = randn({s.B, s.H, s.S, s.D}, o).requires_grad_();
  Tensor w = randn({s.B, s.H, s.S, s.D}, o);
  for (auto _ : state) {
    Tensor out = scaled_dot_product_attention(q, k, v);
    out.backward(w);
    sync(q.grad());
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
  }
  set_counters(state, 3.5 * s.fwd_flops());
}

#if PETAL_BENCH_CUDNN
namespace fe = cudnn_frontend;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

#define PETAL_CUDA_OK(call)                                                                        \
  do {                                                                                             \
    const cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(e_)); \
  } while (0)

void fe_ok(fe::error_t st, const char* what) {
  if (!st.is_good()) throw std::runtime_error(std::string("cudnn-frontend ") + what + ": " + st.get_message());
}

// One SDPA problem on the GPU: buffers, the cuDNN handle, the forward and backward graphs.
struct CudnnSdpa {
  Sdpa s;
  cudnnHandle_t handle = nullptr;
  std::shared_ptr<fe::graph::Graph> fwd, bwd;
  std::unordered_map<int64_t, void*> ptrs;
  void* workspace = nullptr;

  explicit CudnnSdpa(const Sdpa& shape) : s(shape) {
    if (cudnnCreate(&handle) != CUDNN_STATUS_SUCCESS) throw std::runtime_error("cudnnCreate failed");
    const size_t elems = static_cast<size_t>(s.B * s.H * s.S * s.D);
    for (int64_t uid : {kQ, kK, kV, kO, kDO, kDQ, kDK, kDV}) {
      void* p = nullptr;
      PETAL_CUDA_OK(cudaMalloc(&p, elems * 2));
      PETAL_CUDA_OK(cudaMemset(p, 0, elems * 2));
      ptrs[uid] = p;
    }
    // Small values (bf16 0x3c00..: ~0.0078) so the softmax is well conditioned.
    std::vector<uint16_t> host(elems);
    for (size_t i = 0; i < elems; ++i) host[i] = static_cast<uint16_t>(0x3c00u + (i * 2654435761u >> 24) % 64u);
    for (int64_t uid : {kQ, kK, kV, kDO})
      PETAL_CUDA_OK(cudaMemcpy(ptrs[uid], host.data(), elems * 2, cudaMemcpyHostToDevice));
    void* stats = nullptr;
    PETAL_CUDA_OK(cudaMalloc(&stats, static_cast<size_t>(s.B * s.H * s.S) * sizeof(float)));
    ptrs[kStats] = stats;
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.D));
    fwd = build(false, scale);
    bwd = build(true, scale);
    int64_t ws_fwd = 0, ws_bwd = 0;
    fe_ok(fwd->get_workspace_size(ws_fwd), "forward workspace");
    fe_ok(bwd->get_workspace_size(ws_bwd), "backward workspace");
    if (std::max(ws_fwd, ws_bwd) > 0) PETAL_CUDA_OK(cudaMalloc(&workspace, static_cast<size_t>(std::max(ws_fwd, ws_bwd))));
  }
  ~CudnnSdpa() {
    for (auto& [uid, p] : ptrs) cudaFree(p);
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cudnnDestroy(handle);
  }
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;

  std::shared_ptr<fe::graph::Graph> build(bool backward, float scale) {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const std::vector<int64_t> dim{s.B, s.H, s.S, s.D}, stride{s.H * s.S * s.D, s.S * s.D, s.D, 1};
    auto input = [&](const char* name, int64_t uid) {
      return g->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(dim).set_stride(stride));
    };
    auto q = input("Q", kQ), k = input("K", kK), v = input("V", kV);
    if (!backward) {
      auto opts = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(scale);
      auto [o, stats] = g->sdpa(q, k, v, opts);
      o->set_output(true).set_dim(dim).set_stride(stride).set_uid(kO);
      stats->set_output(true).set_data_type(fe::DataType_t::FLOAT).set_uid(kStats);
    } else {
      auto o = input("O", kO), dout = input("dO", kDO);
      auto stats = g->tensor(fe::graph::Tensor_attributes()
                                 .set_name("Stats")
                                 .set_uid(kStats)
                                 .set_dim({s.B, s.H, s.S, 1})
                                 .set_stride({s.H * s.S, s.S, 1, 1})
                                 .set_data_type(fe::DataType_t::FLOAT));
      auto opts = fe::graph::SDPA_backward_attributes().set_name("sdpa_backward").set_attn_scale(scale);
      auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, opts);
      dq->set_output(true).set_dim(dim).set_stride(stride).set_uid(kDQ);
      dk->set_output(true).set_dim(dim).set_stride(stride).set_uid(kDK);
      dv->set_output(true).set_dim(dim).set_stride(stride).set_uid(kDV);
    }
    fe_ok(g->validate(), "validate");
    fe_ok(g->build_operation_graph(handle), "build_operation_graph");
    fe_ok(g->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
    fe_ok(g->check_support(handle), "check_support");
    fe_ok(g->build_plans(handle), "build_plans");
    return g;
  }

  void run(bool forward, bool backward) {
    if (forward) fe_ok(fwd->execute(handle, ptrs, workspace), "forward execute");
    if (backward) fe_ok(bwd->execute(handle, ptrs, workspace), "backward execute");
  }
};

// cuDNN's SDPA, timed by CUDA events around each iteration (manual time).
void BM_sdpa_bf16_cudnn(benchmark::State& state, bool forward, bool backward) {
  if (skip_without_device(state, "cuda")) return;
  const Sdpa s = shape_of(state);
  try {
    CudnnSdpa p(s);
    p.run(true, backward);  // warm-up (and Stats / O for a backward-only run)
    cudaEvent_t start, stop;
    PETAL_CUDA_OK(cudaEventCreate(&start));
    PETAL_CUDA_OK(cudaEventCreate(&stop));
    for (auto _ : state) {
      PETAL_CUDA_OK(cudaEventRecord(start));
      p.run(forward, backward);
      PETAL_CUDA_OK(cudaEventRecord(stop));
      PETAL_CUDA_OK(cudaEventSynchronize(stop));
      float ms = 0;
      PETAL_CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
      state.SetIterationTime(ms * 1e-3);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  set_counters(state, ((forward ? 1.0 : 0.0) + (backward ? 2.5 : 0.0)) * s.fwd_flops());
}
#endif

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t batch : {64, 256})
    for (int64_t seq : {65, 197}) b->Args({batch, seq});
  b->ArgNames({"B", "S"})->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_sdpa_bf16_petal_forward)->Apply(shapes)->UseRealTime();
BENCHMARK(BM_sdpa_bf16_petal_forward_backward)->Apply(shapes)->UseRealTime();
#if PETAL_BENCH_CUDNN
BENCHMARK_CAPTURE(BM_sdpa_bf16_cudnn, forward, true, false)->Apply(shapes)->UseManualTime();
BENCHMARK_CAPTURE(BM_sdpa_bf16_cudnn, backward, false, true)->Apply(shapes)->UseManualTime();
BENCHMARK_CAPTURE(BM_sdpa_bf16_cudnn, forward_backward, true, true)->Apply(shapes)->UseManualTime();
#endif
