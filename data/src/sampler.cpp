// DistributedSampler and the shared epoch order (see sampler.h). Padding repeats the order
// from its start, as often as needed when the dataset is smaller than the replica count.
#include <petal/data/rng.h>
#include <petal/data/sampler.h>
#include <petal/error.h>

#include <utility>

namespace petal::data {

std::vector<int64_t> shuffled_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (shuffle) {
    Rng rng = Rng::derive(seed, static_cast<uint64_t>(epoch));
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.randint(0, i + 1))]);
  }
  return order;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int num_replicas, int rank, bool shuffle, uint64_t seed,
                                       bool drop_last)
    : dataset_size_(dataset_size), num_replicas_(num_replicas), rank_(rank), shuffle_(shuffle), drop_last_(drop_last),
      seed_(seed) {
  PETAL_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be >= 1, got ", num_replicas);
  PETAL_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: rank ", rank, " is outside [0, ", num_replicas, ")");
  PETAL_CHECK(dataset_size >= 0, "DistributedSampler: negative dataset size ", dataset_size);
  const int64_t r = num_replicas;
  num_samples_ = (drop_last && dataset_size % r != 0) ? dataset_size / r : (dataset_size + r - 1) / r;
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch) const {
  std::vector<int64_t> order = shuffled_order(dataset_size_, shuffle_, seed_, epoch);
  const int64_t total = total_size();
  if (static_cast<int64_t>(order.size()) < total) {
    PETAL_CHECK(!order.empty(), "DistributedSampler: cannot pad an empty dataset to ", total, " samples");
    const size_t n = order.size();
    for (size_t i = 0; static_cast<int64_t>(order.size()) < total; ++i) order.push_back(order[i % n]);
  } else {
    order.resize(static_cast<size_t>(total));
  }
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(num_samples_));
  for (int64_t i = rank_; i < total; i += num_replicas_) mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

}  // namespace petal::data
