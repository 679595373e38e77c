// Pinned host memory and non_blocking host-to-device copies (core/src/pinned_memory.cpp,
// Tensor::to(device, non_blocking), Backend::copy_from_host_async): pin_memory / is_pinned and
// the cache of pinned blocks, the values of asynchronous copies on sim (and cuda), the
// simulator's copy stream (a copy runs only once the compute stream has waited for it, so a
// missing wait reads stale memory: a planted-bug case proves it), the source kept alive until
// its copy ran (dropped at once here; a freed source is poisoned, and ASan-poisoned), and
// DataLoaderOptions::pin_memory (pinned batches equal the ordinary ones; blocks recycled).
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <petal/data.h>

#include "testing.h"

#include "kernels/backend.h"

using namespace petal;

namespace petal::detail {
void disable_pinned_memory_for_testing(bool off);  // core/src/pinned_memory.cpp
}  // namespace petal::detail

namespace petal::kernels::sim_impl {
// Defined only when petal is built with the simulator (kernels/sim/runtime_sim.cpp); weak, so
// this file links without it.
void set_skip_copy_wait_for_testing(bool skip) __attribute__((weak));
}  // namespace petal::kernels::sim_impl

namespace {

/// True when a and b (any devices) hold the same dtype, shape and bytes.
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor x = a.detach().cpu().contiguous(), y = b.detach().cpu().contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(x.numel()) * x.element_size()) == 0;
}

Tensor random_of(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = testing::random_input(shape, seed);
  if (dtype == DType::i64) t = t.mul(1000.0);
  return t.to(dtype);
}

/// The planted bug of the simulator's copy stream, undone at scope exit.
struct SkipCopyWait {
  SkipCopyWait() { kernels::sim_impl::set_skip_copy_wait_for_testing(true); }
  ~SkipCopyWait() { kernels::sim_impl::set_skip_copy_wait_for_testing(false); }
};

/// A build without cuda and sim (nothing can pin), while in scope.
struct NoPinning {
  NoPinning() { detail::disable_pinned_memory_for_testing(true); }
  ~NoPinning() { detail::disable_pinned_memory_for_testing(false); }
};

/// Example i: a [3, 4, 5] image of i + (k / 1000) and label i % 7.
class RampDataset : public data::Dataset {
 public:
  explicit RampDataset(size_t n) : n_(n) {}
  size_t size() const override { return n_; }
  data::Example get(size_t index, data::Rng& rng) const override {
    Tensor img = empty({3, 4, 5});
    float* p = img.data<float>();
    for (int k = 0; k < 60; ++k) p[k] = static_cast<float>(index) + static_cast<float>(k) / 1000.0f;
    p[0] += static_cast<float>(rng.uniform());  // the per-sample stream
    return {img, static_cast<int64_t>(index % 7)};
  }

 private:
  size_t n_;
};

}  // namespace

TEST_CASE("pin_memory: pinned copies, is_pinned, errors and the block cache", "[pinned]") {
  Tensor t = random_of({5, 7}, 1, DType::f32);
  CHECK_FALSE(t.is_pinned());
  if (!pinned_memory_available()) return;  // the next case checks that behaviour
  Tensor p = t.pin_memory();
  CHECK(p.is_pinned());
  CHECK(p.device() == kCPU);
  CHECK(same_values(p, t));
  CHECK(p.pin_memory().is_same(p));        // already pinned
  CHECK(p.narrow(0, 1, 2).is_pinned());    // views share the pinned storage
  CHECK_FALSE(p.clone().is_pinned());      // copies are ordinary memory, as in PyTorch
  Tensor strided = t.t();                  // non-contiguous: pinned contiguous copy
  Tensor ps = strided.pin_memory();
  CHECK(ps.is_pinned());
  CHECK(ps.is_contiguous());
  CHECK(same_values(ps, strided));
  Tensor e = empty({3, 2}, TensorOptions(DType::i64).pinned_memory(true));
  CHECK(e.is_pinned());
  CHECK(zeros({6}, TensorOptions().pinned_memory(true)).is_pinned());
  CHECK_THROWS_WITH(empty({2}, TensorOptions(DType::f32, Device("sim")).pinned_memory(true)),
                    Catch::Contains("pinned_memory is for cpu tensors"));
  if (sim::is_available()) {
    CHECK_THROWS_WITH(t.to(Device("sim")).pin_memory(), Catch::Contains("only cpu tensors can be pinned"));
  }

  // A freed block serves the next request of up to its size.
  {
    Tensor warm = empty({1000}, TensorOptions().pinned_memory(true));
  }
  const PinnedMemoryStats before = pinned_memory_stats();
  CHECK(before.cached_bytes >= 4000);
  {
    Tensor again = empty({1000}, TensorOptions().pinned_memory(true));
    CHECK(pinned_memory_stats().in_use_bytes >= before.in_use_bytes + 4000);
  }
  const PinnedMemoryStats after = pinned_memory_stats();
  CHECK(after.allocations == before.allocations);
  CHECK(after.reuses == before.reuses + 1);

  // Differentiable (identity), as PyTorch's.
  Tensor x = random_of({4}, 2, DType::f64).requires_grad_(true);
  x.pin_memory().mul(3.0).sum().backward();
  CHECK(same_values(x.grad(), full({4}, 3.0, DType::f64)));
}

TEST_CASE("without cuda or sim: pin_memory throws, the DataLoader gives ordinary batches and warns", "[pinned]") {
  NoPinning none;  // what a cpu-only build does (also without the guard, where nothing can pin)
  CHECK_FALSE(pinned_memory_available());
  Tensor t = random_of({5, 7}, 3, DType::f32);
  CHECK_THROWS_WITH(t.pin_memory(), Catch::Contains("no accelerator"));
  CHECK_THROWS_WITH(empty({4}, TensorOptions().pinned_memory(true)), Catch::Contains("no accelerator"));
  CHECK_FALSE(t.is_pinned());
  // non_blocking without pinned memory is an ordinary copy.
  if (sim::is_available()) CHECK(same_values(t.to(Device("sim"), true), t));

  auto ds = std::make_shared<RampDataset>(9);
  data::DataLoaderOptions o;
  o.batch_size = 4;
  auto reference = data::DataLoader(ds, o).epoch(0).next();
  REQUIRE(reference.has_value());
  o.pin_memory = true;
  std::vector<std::string> warnings;
  WarningHandler previous = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  reset_warn_once();
  std::optional<data::Batch> b;
  {
    data::DataLoader loader(ds, o);
    data::DataLoader again(ds, o);  // warned once per process
    b = loader.epoch(0).next();
  }
  set_warning_handler(previous);
  REQUIRE(b.has_value());
  CHECK_FALSE(b->images.is_pinned());
  CHECK_FALSE(b->labels.is_pinned());
  CHECK(same_values(b->images, reference->images));
  CHECK(same_values(b->labels, reference->labels));
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("pin_memory is set but no accelerator") != std::string::npos);
}

TEST_CASE("non_blocking copies from pinned memory to sim give the values", "[pinned][sim]") {
  if (!sim::is_available()) return;
  const Device dev("sim");
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    INFO(dtype_name(dt));
    Tensor h = random_of({3, 17}, 10, dt).pin_memory();
    Tensor d = h.to(dev, true);
    CHECK(d.device() == dev);
    CHECK(same_values(d, h));
    CHECK(same_values(h.to(dev, DType::f64, true), h.to(DType::f64)));  // converted on the device
    // Straight into an existing tensor (copy_ non_blocking), and through a strided destination.
    Tensor dst = zeros({3, 17}, TensorOptions(dt, dev));
    dst.copy_(h, true);
    CHECK(same_values(dst, h));
    Tensor dst_t = zeros({17, 3}, TensorOptions(dt, dev)).t();
    dst_t.copy_(h, true);
    CHECK(same_values(dst_t, h));
    // A broadcast source.
    Tensor row = random_of({1, 17}, 11, dt).pin_memory();
    Tensor wide = zeros({3, 17}, TensorOptions(dt, dev));
    wide.copy_(row, true);
    CHECK(same_values(wide, row.expand({3, 17})));
  }
  // Kernels right after the copy read the data; pageable and non-contiguous sources take the
  // synchronous path with the same result.
  Tensor h = random_of({64}, 12, DType::f32).pin_memory();
  CHECK(same_values(h.to(dev, true).mul(2.0), h.mul(2.0)));
  Tensor pageable = random_of({8, 9}, 13, DType::f32);
  CHECK(same_values(pageable.to(dev, true), pageable));
  Tensor pinned_view = random_of({9, 8}, 14, DType::f32).pin_memory().t();
  CHECK(same_values(pinned_view.to(dev, true), pinned_view));
  CHECK(same_values(empty({0, 3}, TensorOptions().pinned_memory(true)).to(dev, true), empty({0, 3})));
}

TEST_CASE("the simulator's copy stream: a missing wait reads stale data (planted bug)", "[pinned][sim]") {
  if (!sim::is_available() || &kernels::sim_impl::set_skip_copy_wait_for_testing == nullptr) return;
  const Device dev("sim");
  Tensor h = random_of({4, 33}, 20, DType::f32).pin_memory();
  Tensor d;
  {
    SkipCopyWait planted;
    d = h.to(dev, true);
    // The compute stream did not wait: the copy has not run, the device memory is poison.
    Tensor early = d.cpu();
    int nans = 0;
    for (double v : early.tolist<double>()) nans += std::isnan(v) ? 1 : 0;
    CHECK(nans == early.numel());
    CHECK_FALSE(same_values(early, h));
  }
  kernels::backend_for(dev).synchronize();  // the whole device: the copy stream finishes
  CHECK(same_values(d, h));
  // With the wait, the same sequence reads the data.
  Tensor d2 = h.to(dev, true);
  CHECK(same_values(d2.cpu(), h));
}

TEST_CASE("the source of a non_blocking copy stays alive until the copy has run", "[pinned][sim]") {
  if (!sim::is_available()) return;
  const Device dev("sim");
  const Shape shape{16, 129};
  for (bool into_existing : {false, true}) {
    INFO("into an existing tensor: " << into_existing);
    Tensor expected = random_of(shape, 30 + into_existing, DType::f32);
    Tensor h = expected.pin_memory();
    const size_t bytes = static_cast<size_t>(h.numel()) * h.element_size();
    const size_t in_use_before = pinned_memory_stats().in_use_bytes;
    Tensor d;
    if (into_existing) {
      d = empty(shape, TensorOptions(DType::f32, dev));
      d.copy_(h, true);
    } else {
      d = h.to(dev, true);
    }
    h = Tensor();  // dropped at once: the queued copy holds the storage
    // The simulator runs the copy at the device's next operation, so it has not run yet and
    // the pinned block is still in use; had it been released, it would be poisoned now.
    CHECK(pinned_memory_stats().in_use_bytes == in_use_before);
    CHECK(same_values(d, expected));  // the read runs the copy first
    CHECK(pinned_memory_stats().in_use_bytes + bytes <= in_use_before);  // released after it
  }
}

TEST_CASE("DataLoader pin_memory: pinned batches equal the ordinary ones, blocks are recycled", "[pinned][data]") {
  auto ds = std::make_shared<RampDataset>(37);
  data::DataLoaderOptions o;
  o.batch_size = 4;
  o.shuffle = true;
  o.seed = 5;
  std::vector<data::Batch> reference;
  {
    auto ep = data::DataLoader(ds, o).epoch(1);
    while (auto b = ep.next()) reference.push_back(std::move(*b));
  }
  REQUIRE(reference.size() == 10);
  o.pin_memory = true;
  if (!pinned_memory_available()) return;  // the case "without cuda or sim" checks that
  for (int workers : {0, 2}) {
    INFO("workers " << workers);
    o.num_workers = workers;
    const PinnedMemoryStats before = pinned_memory_stats();
    int64_t batches = 0;
    for (int64_t epoch : {1, 1, 1}) {
      auto ep = data::DataLoader(ds, o).epoch(epoch);
      size_t i = 0;
      while (auto b = ep.next()) {
        REQUIRE(i < reference.size());
        CHECK(b->images.is_pinned());
        CHECK(b->labels.is_pinned());
        CHECK(b->indices == reference[i].indices);
        CHECK(same_values(b->images, reference[i].images));
        CHECK(same_values(b->labels, reference[i].labels));
        if (sim::is_available()) {
          CHECK(same_values(b->images.to(Device("sim"), true), reference[i].images));
          CHECK(same_values(b->labels.to(Device("sim"), true), reference[i].labels));
        }
        ++i;
        ++batches;
      }
      CHECK(i == reference.size());
    }
    // Each batch takes two blocks; at most (prefetch * workers + 2) batches are alive at once,
    // so after the first ones every block is a reused one.
    const PinnedMemoryStats after = pinned_memory_stats();
    const int64_t requests = 2 * batches;
    CHECK(after.allocations + after.reuses - before.allocations - before.reuses == requests);
    CHECK(after.allocations - before.allocations <= 2 * (o.prefetch * workers + 2));
  }
}

TEST_CASE("cuda: non_blocking copies from pinned memory, the source dropped at once", "[pinned][cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  const Device dev("cuda");
  REQUIRE(pinned_memory_available());
  for (DType dt : {DType::f32, DType::bf16, DType::i64}) {
    INFO(dtype_name(dt));
    Tensor h = random_of({257, 1031}, 40, dt).pin_memory();  // over the 4 MiB staging buffers
    CHECK(h.is_pinned());
    CHECK(same_values(h.to(dev, true), h));
    Tensor dst = zeros({257, 1031}, TensorOptions(dt, dev));
    dst.copy_(h, true);
    CHECK(same_values(dst, h));
  }
  // Many copies in flight, each source dropped at once and each result used by a kernel at
  // once: the compute stream waits for every copy, no source is reused while its DMA runs.
  std::vector<Tensor> expected, results;
  for (int k = 0; k < 12; ++k) {
    Tensor x = random_of({1 << 18}, 50 + static_cast<uint64_t>(k), DType::f32);
    expected.push_back(x.mul(2.0));
    results.push_back(x.pin_memory().to(dev, true).mul(2.0));
  }
  for (int k = 0; k < 12; ++k) CHECK(same_values(results[static_cast<size_t>(k)], expected[static_cast<size_t>(k)]));
  kernels::backend_for(dev).synchronize();
  // The DataLoader's pinned batches go to the GPU the same way.
  auto ds = std::make_shared<RampDataset>(9);
  data::DataLoaderOptions o;
  o.batch_size = 4;
  o.pin_memory = true;
  o.num_workers = 2;
  auto ep = data::DataLoader(ds, o).epoch(0);
  while (auto b = ep.next()) {
    CHECK(b->images.is_pinned());
    Tensor img = b->images.to(dev, true);
    CHECK(same_values(img, b->images));
  }
}
