// Host-to-device copies on cuda: from pageable memory (the runtime's 4 MiB pinned staging
// buffers, a host memcpy each) against non_blocking copies from pinned memory (one
// cudaMemcpyAsync on the copy stream), in bytes/s; and a ViT-sized batch upload beside a
// queued GEMM (the overlap the DataLoader's pin_memory buys). Skipped without a GPU.
#include "bench_common.h"

namespace {

using namespace petal;

/// range(0): MiB per copy; range(1): 0 pageable, 1 pinned + non_blocking.
void BM_h2d_copy_cuda(benchmark::State& state) {
  if (bench::skip_without_device(state, "cuda")) return;
  const Device dev("cuda");
  const int64_t n = state.range(0) * (int64_t(1) << 20) / 4;
  const bool pinned = state.range(1) != 0;
  Tensor h = rand({n});
  if (pinned) h = h.pin_memory();
  Tensor d = h.to(dev, pinned);  // warm-up: allocation, pools, pinned cache
  bench::sync(d);
  for (auto _ : state) {
    d = h.to(dev, pinned);
    bench::sync(d);
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.SetLabel(pinned ? "pinned, non_blocking" : "pageable");
}
BENCHMARK(BM_h2d_copy_cuda)
    ->ArgsProduct({{4, 64}, {0, 1}})
    ->ArgNames({"MiB", "pinned"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// A [64, 3, 224, 224] float32 batch (38.5 MB) uploaded while a 4096^3 GEMM is queued: with
/// pinned memory the DMA runs beside the GEMM; pageable memory goes through the staging
/// buffers on the compute stream, after it. range(0): 0 pageable, 1 pinned + non_blocking.
void BM_h2d_batch_beside_gemm_cuda(benchmark::State& state) {
  if (bench::skip_without_device(state, "cuda")) return;
  const Device dev("cuda");
  const bool pinned = state.range(0) != 0;
  Tensor batch = rand({64, 3, 224, 224});
  if (pinned) batch = batch.pin_memory();
  Tensor a = randn({4096, 4096}, TensorOptions(DType::bf16, dev));
  Tensor c = matmul(a, a);
  Tensor x = batch.to(dev, pinned);
  bench::sync(c);
  bench::sync(x);
  for (auto _ : state) {
    c = matmul(a, a);           // queued on the compute stream
    x = batch.to(dev, pinned);  // the next step's batch
    bench::sync(c);
    bench::sync(x);
  }
  state.SetBytesProcessed(state.iterations() * batch.numel() * 4);
  state.SetLabel(pinned ? "pinned, non_blocking" : "pageable");
}
BENCHMARK(BM_h2d_batch_beside_gemm_cuda)->Arg(0)->Arg(1)->ArgName("pinned")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
