// petal_bench_all_reduce: bandwidth of petal::distributed::all_reduce and the overlap that
// nn::DistributedDataParallel achieves, run under mpirun (not Google Benchmark: every rank
// must run exactly the same number of collectives, so iteration counts are fixed, not
// adaptive).
//
//   mpirun -np 2 petal_bench_all_reduce [--device cpu|sim|cuda] [--max-mb 256] [--ddp]
//
// all_reduce: float32 sum of 1 MiB .. max-mb MiB, 2 warm-up calls then timed calls between
// barriers; reports time, algorithm bandwidth (bytes / time) and bus bandwidth (algbw *
// 2(W-1)/W, the nccl-tests convention: what each link carries in a ring all-reduce).
// --ddp: the step time (forward, backward, SGD) of a small ViT on each rank with DDP's
// gradient all-reduce, and inside no_sync() (same compute, no communication).
#include <petal/petal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace petal;
namespace dist = petal::distributed;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void bench_all_reduce(Device device, int64_t max_mb) {
  const int W = dist::world_size();
  if (dist::is_main_process())
    std::printf("all_reduce float32 sum on %s, %d ranks (%s)\n%10s %8s %12s %12s %12s\n", device.str().c_str(), W,
                dist::backend_name().c_str(), "MiB", "iters", "time (ms)", "algbw GB/s", "busbw GB/s");
  for (int64_t mb = 1; mb <= max_mb; mb *= 2) {
    const int64_t n = mb * 1024 * 1024 / 4;
    Tensor t = full({n}, 1.0, TensorOptions(DType::f32, device));
    const int iters = static_cast<int>(std::max<int64_t>(3, std::min<int64_t>(50, 512 / mb)));
    for (int i = 0; i < 2; ++i) dist::all_reduce(t);
    dist::barrier();
    const double t0 = now();
    for (int i = 0; i < iters; ++i) dist::all_reduce(t);
    dist::barrier();
    const double dt = (now() - t0) / iters;
    const double bytes = static_cast<double>(n) * 4.0;
    const double algbw = bytes / dt / 1e9;
    if (dist::is_main_process())
      std::printf("%10lld %8d %12.3f %12.3f %12.3f\n", static_cast<long long>(mb), iters, dt * 1e3, algbw,
                  algbw * 2.0 * (W - 1) / W);
  }
}

void bench_ddp(Device device) {
  nn::ViTConfig c;
  c.img_size = 32;
  c.patch_size = 4;
  c.width = 192;
  c.depth = 4;
  c.heads = 3;
  c.num_classes = 5;
  manual_seed(0);
  auto model = std::make_shared<nn::ViT>(c);
  model->to(device);
  nn::DistributedDataParallel ddp(model);
  optim::SGDOptions so;
  so.lr = 1e-3;
  optim::SGD opt(ddp.parameters(), so);
  Tensor x = randn({8, 3, 32, 32}).to(device);
  Tensor y = randint(0, 5, {8}).to(device);
  auto step = [&] {
    opt.zero_grad();
    cross_entropy(ddp.forward(x), y).backward();
    opt.step();
  };
  // Synchronised and local steps alternate, and the medians are compared, so that load from
  // other processes on the machine hits both alike.
  step();  // warm-up (and buckets allocated)
  std::vector<double> with, without;
  for (int i = 0; i < 8; ++i)
    for (bool sync : {true, false}) {
      dist::barrier();
      const double t0 = now();
      if (sync) {
        step();
      } else {
        auto guard = ddp.no_sync();
        step();
      }
      dist::barrier();
      (sync ? with : without).push_back(now() - t0);
    }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double t_comm = median(with), t_local = median(without);
  const double grad_mb = static_cast<double>(model->num_parameters(true)) * 4.0 / (1024.0 * 1024.0);
  if (dist::is_main_process())
    std::printf("DDP step of a ViT (%lld parameters, %.1f MiB of gradients, batch 8 per rank) on %s, %d ranks:\n"
                "  median step with gradient all-reduce %.1f ms, without (no_sync) %.1f ms: communication adds %.1f ms\n",
                static_cast<long long>(model->num_parameters(true)), grad_mb, device.str().c_str(), dist::world_size(),
                t_comm * 1e3, t_local * 1e3, (t_comm - t_local) * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::init();
    Device device = kCPU;
    int64_t max_mb = 256;
    bool ddp = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--device" && i + 1 < argc) device = Device(argv[++i]);
      else if (a == "--max-mb" && i + 1 < argc) max_mb = std::stoll(argv[++i]);
      else if (a == "--ddp") ddp = true;
      else PETAL_FAIL("petal_bench_all_reduce: unknown argument '", a, "' (--device D, --max-mb N, --ddp)");
    }
    if (device.is_cuda() && dist::world_size() > 1) device = Device(DeviceType::CUDA, dist::local_rank());
    if (ddp) bench_ddp(device);
    else bench_all_reduce(device, max_mb);
    dist::finalize();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petal_bench_all_reduce (rank %d): %s\n", dist::rank(), e.what());
    dist::abort(1);
    return 1;
  }
}
