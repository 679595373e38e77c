// DistributedSampler (data/): shards are disjoint and cover the dataset, padded or
// truncated the way torch's DistributedSampler does, reshuffled per epoch by seed, and a
// DataLoader given the sampler batches exactly the shard. Single process: the replicas are
// simulated by constructing one sampler per rank.
#include <catch2/catch.hpp>

#include <petal/petal.h>

#include <algorithm>
#include <map>
#include <set>

using namespace petal;
using namespace petal::data;

namespace {

// Sample i: a 1x1x1 image holding i.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(size_t n) : n_(n) {}
  size_t size() const override { return n_; }
  Example get(size_t index, Rng&) const override {
    Example e;
    e.image = full({1, 1, 1}, static_cast<double>(index));
    e.label = static_cast<int64_t>(index % 3);
    return e;
  }

 private:
  size_t n_;
};

}  // namespace

TEST_CASE("DistributedSampler shards are disjoint, equal-sized and padded like torch", "[data][distributed]") {
  for (int64_t n : {1, 7, 12, 23}) {
    for (int R : {1, 2, 3, 5}) {
      INFO("n=" << n << " replicas=" << R);
      const int64_t per = (n + R - 1) / R;  // torch: ceil(n / R) without drop_last
      std::map<int64_t, int> count;
      std::vector<int64_t> interleaved(static_cast<size_t>(per * R));
      for (int r = 0; r < R; ++r) {
        DistributedSampler s(n, R, r, true, 5);
        REQUIRE(s.size() == per);
        auto idx = s.indices(2);
        REQUIRE(static_cast<int64_t>(idx.size()) == per);
        for (size_t k = 0; k < idx.size(); ++k) {
          REQUIRE(idx[k] >= 0);
          REQUIRE(idx[k] < n);
          ++count[idx[k]];
          interleaved[k * R + static_cast<size_t>(r)] = idx[k];
        }
      }
      // Every sample appears; the padding repeats the first per*R - n of the epoch order.
      REQUIRE(static_cast<int64_t>(count.size()) == n);
      const auto order = shuffled_order(n, true, 5, 2);
      for (int64_t k = 0; k < per * R; ++k) REQUIRE(interleaved[static_cast<size_t>(k)] == order[static_cast<size_t>(k % n)]);
    }
  }
}

TEST_CASE("DistributedSampler drop_last truncates to equal shards", "[data][distributed]") {
  // torch: num_samples = ceil((n - R) / R) when n % R != 0, i.e. floor(n / R).
  std::set<int64_t> seen;
  for (int r = 0; r < 3; ++r) {
    DistributedSampler s(23, 3, r, false, 0, /*drop_last=*/true);
    REQUIRE(s.size() == 7);
    auto idx = s.indices(0);
    for (size_t k = 0; k < idx.size(); ++k) REQUIRE(idx[k] == static_cast<int64_t>(k) * 3 + r);  // no shuffle: r, r+3, ...
    seen.insert(idx.begin(), idx.end());
  }
  REQUIRE(seen.size() == 21u);
  REQUIRE(*seen.rbegin() == 20);  // 21 and 22 are dropped
}

TEST_CASE("DistributedSampler reshuffles per epoch, reproducibly by seed", "[data][distributed]") {
  DistributedSampler a(50, 2, 1, true, 3), b(50, 2, 1, true, 3), c(50, 2, 1, true, 4);
  REQUIRE(a.indices(0) == b.indices(0));
  REQUIRE(a.indices(0) != a.indices(1));
  REQUIRE(a.indices(0) != c.indices(0));
  // One replica with the loader's seed visits the DataLoader's own shuffled order.
  auto ds = std::make_shared<CountingDataset>(50);
  DataLoaderOptions o;
  o.shuffle = true;
  o.seed = 3;
  REQUIRE(DistributedSampler(50, 1, 0, true, 3).indices(4) == DataLoader(ds, o).epoch_order(4));
}

TEST_CASE("DataLoader with a DistributedSampler batches the shard", "[data][distributed]") {
  auto ds = std::make_shared<CountingDataset>(11);
  auto sampler = std::make_shared<DistributedSampler>(11, 2, 1, true, 8);
  DataLoaderOptions o;
  o.batch_size = 4;
  o.sampler = sampler;
  o.num_workers = 2;
  DataLoader loader(ds, o);
  REQUIRE(loader.num_batches() == 2);  // 6 samples per rank
  auto ep = loader.epoch(1);
  std::vector<int64_t> got;
  while (auto b = ep.next()) {
    for (int64_t k = 0; k < b->size(); ++k) {
      REQUIRE(b->images.data<float>()[k] == static_cast<float>(b->indices[static_cast<size_t>(k)]));
      got.push_back(b->indices[static_cast<size_t>(k)]);
    }
  }
  REQUIRE(got == sampler->indices(1));
  o.shuffle = true;
  REQUIRE_THROWS_WITH(DataLoader(ds, o), Catch::Contains("shuffle must be off with a sampler"));
  REQUIRE_THROWS_WITH(DistributedSampler(10, 2, 2), Catch::Contains("rank 2 is outside [0, 2)"));
  REQUIRE_THROWS_WITH(DistributedSampler(10, 0, 0), Catch::Contains("num_replicas"));
}
