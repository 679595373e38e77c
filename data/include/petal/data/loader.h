// DataLoader: batches of (images [B, C, H, W] float32, labels [B] int64) on the CPU from a
// Dataset, with seeded shuffling, drop_last, and worker threads that decode and transform
// whole batches in parallel ahead of the consumer (at most `prefetch` batches ahead).
//
// Determinism: epoch e's order is a Fisher-Yates shuffle by Rng::derive(seed, e), and the
// random transforms of the sample at dataset index i in epoch e draw from
// Rng::derive(seed, e, i + 1). Batches are handed out in order. So the stream of batches
// depends only on (seed, epoch), never on the number of workers or on thread timing.
// An exception thrown while loading a batch is re-thrown by next() for that batch.
//
// pin_memory (PyTorch's DataLoader(pin_memory=True)): the workers write each batch straight
// into pinned host memory, so `batch.images.to(device, true)` is an asynchronous DMA on the
// device's copy stream instead of a staged synchronous copy. The pinned blocks are cached and
// recycled as each batch's tensors die (pinned_memory_stats()).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <petal/data/dataset.h>
#include <petal/data/sampler.h>
#include <petal/tensor.h>

namespace petal::data {

struct Batch {
  Tensor images;  ///< [B, C, H, W] float32
  Tensor labels;  ///< [B] int64
  /// Dataset indices of the samples, in batch order.
  std::vector<int64_t> indices;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct DataLoaderOptions {
  int64_t batch_size = 8;
  bool shuffle = false;
  bool drop_last = false;
  int num_workers = 0;   ///< 0: load in the calling thread
  int prefetch = 2;      ///< batches in flight per worker (at least 1)
  uint64_t seed = 0;
  /// Indices per epoch instead of the loader's own order (e.g. a DistributedSampler); needs shuffle off.
  std::shared_ptr<const Sampler> sampler;
  /// Batches (images and labels) in pinned host memory, for non_blocking copies to cuda/sim.
  /// Where nothing can pin (pinned_memory_available() false: no cuda device, no simulator)
  /// the batches are ordinary cpu tensors and a warning says so once, as in PyTorch.
  bool pin_memory = false;
};

class DataLoader {
 public:
  class Epoch;

  DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& options);
  /// Batches per epoch.
  int64_t num_batches() const;
  size_t dataset_size() const { return dataset_->size(); }
  const DataLoaderOptions& options() const { return options_; }
  /// The dataset indices of epoch `epoch`, in the order they are batched.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  /// Starts epoch `epoch` (workers start loading at once).
  Epoch epoch(int64_t epoch) const;

  /// One pass over the data: call next() until it returns nothing. Destroying an Epoch
  /// early stops and joins its workers.
  class Epoch {
   public:
    Epoch(Epoch&&) noexcept;
    Epoch& operator=(Epoch&&) noexcept;
    ~Epoch();
    std::optional<Batch> next();
    int64_t num_batches() const;

   private:
    friend class DataLoader;
    struct State;
    explicit Epoch(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
  };

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  bool pin_ = false;  // options_.pin_memory where pinning is available
};

/// Loads batch `indices` synchronously: each sample with Rng::derive(seed, epoch, i + 1),
/// stacked. All images must have the same shape (the message names the mismatch).
/// pin_memory: the batch's tensors are allocated in pinned host memory.
Batch load_batch(const Dataset& dataset, const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch,
                 bool pin_memory = false);

}  // namespace petal::data
