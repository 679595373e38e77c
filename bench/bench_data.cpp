// The input pipeline of vit_flowers, per thread: decode + the seed's training augmentation
// (RandomResizedCrop(224) + flip + ToTensor + Normalize) of flower_photos-sized JPEGs
// (the synthetic generator's 320x320 images; flower_photos' are mostly 320-500 x 240-375), uncached (decode every time) and
// from data::CachedImageDataset (decoded once, the augmentation still every time), and with
// the cache's shrink to a 256-pixel shorter side. Counter: images per second of one thread.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

#include <petal/data.h>
#include <petal/data/cache.h>

namespace {

namespace data = petal::data;

/// 20 generated 320x320 JPEGs (made once per process, in a temporary folder).
const std::vector<data::Sample>& sample_files() {
  static const std::vector<data::Sample> samples = [] {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("petal_bench_data_" + std::to_string(::getpid()))).string();
    data::SyntheticFlowersOptions so;
    so.per_class = 4;
    so.size = 320;
    so.format = "jpg";
    data::make_synthetic_flowers(dir, so);
    std::vector<data::Sample> s = data::ImageFolder(dir).samples();
    return s;
  }();
  return samples;
}

data::TransformPtr train_transform() {
  return std::make_shared<data::Compose>(std::vector<data::TransformPtr>{
      std::make_shared<data::RandomResizedCrop>(224), std::make_shared<data::RandomHorizontalFlip>(),
      std::make_shared<data::ToTensor>(), std::make_shared<data::Normalize>(std::vector<double>{0.5, 0.5, 0.5},
                                                                          std::vector<double>{0.5, 0.5, 0.5})});
}

void run(benchmark::State& state, const data::Dataset& ds) {
  data::Rng rng(1);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ds.get(i % ds.size(), rng).image.data_ptr());
    ++i;
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_decode_augment_uncached(benchmark::State& state) {
  data::ImageDataset ds(sample_files(), train_transform());
  run(state, ds);
}

void BM_decode_augment_cached(benchmark::State& state) {
  data::CachedImageDataset ds(sample_files(), train_transform(), int64_t(1) << 30, state.range(0));
  data::Rng warm(0);
  for (size_t i = 0; i < ds.size(); ++i) ds.get(i, warm);  // the first epoch fills the cache
  run(state, ds);
}

void BM_decode_only(benchmark::State& state) {
  const auto& s = sample_files();
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(data::read_image(s[i++ % s.size()].path).data_ptr());
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_decode_only)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_augment_uncached)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_augment_cached)->Arg(0)->Arg(256)->Unit(benchmark::kMillisecond);
