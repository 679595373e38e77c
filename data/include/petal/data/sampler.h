// Samplers: the dataset indices one epoch visits, in order. A DataLoader given a sampler
// (DataLoaderOptions::sampler) batches the sampler's indices instead of its own order.
//
// DistributedSampler follows torch.utils.data.DistributedSampler: the epoch's order is the
// DataLoader's own shuffle (Fisher-Yates by Rng::derive(seed, epoch)) or 0..n-1; it is padded
// by repeating its first indices to a multiple of the number of replicas (or, with
// drop_last, truncated), and replica r takes positions r, r + R, r + 2R, ... So the shards
// are disjoint (up to the padding), of equal size, and for batch size b the union of the
// replicas' k-th batches is the k-th batch of size R*b of a single process with the same seed.
#pragma once
#include <cstdint>
#include <vector>

namespace petal::data {

/// The indices of one epoch (a pure function of the epoch number).
class Sampler {
 public:
  virtual ~Sampler() = default;
  /// Indices visited in epoch `epoch`, in order.
  virtual std::vector<int64_t> indices(int64_t epoch) const = 0;
  /// Number of indices per epoch.
  virtual int64_t size() const = 0;
};

/// One replica's shard of a dataset, reshuffled every epoch (see the file comment).
class DistributedSampler : public Sampler {
 public:
  /// num_replicas >= 1 and 0 <= rank < num_replicas (e.g. distributed::world_size() and rank()).
  DistributedSampler(int64_t dataset_size, int num_replicas, int rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return num_samples_; }
  /// Padded (or truncated) length of the epoch over all replicas.
  int64_t total_size() const { return num_samples_ * num_replicas_; }

 private:
  int64_t dataset_size_;
  int num_replicas_, rank_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
  int64_t num_samples_;
};

/// The epoch order of DataLoader(shuffle, seed) over n samples: 0..n-1, Fisher-Yates
/// shuffled by Rng::derive(seed, epoch) when shuffle.
std::vector<int64_t> shuffled_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch);

}  // namespace petal::data
