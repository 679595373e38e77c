// DataLoader: seeded epoch orders, batch loading, and the worker-thread prefetch queue.
// Workers claim batch numbers in increasing order from a shared counter, but never more
// than `prefetch * num_workers` batches ahead of the consumer (the bound on memory); the
// consumer takes batch k only once it is ready, so batches come out in order whatever
// thread produced them.
#include <petal/data/loader.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include <petal/error.h>
#include <petal/warning.h>

namespace petal::data {

Batch load_batch(const Dataset& dataset, const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch,
                 bool pin_memory) {
  PETAL_CHECK(!indices.empty(), "DataLoader: empty batch");
  Batch batch;
  batch.indices = indices;
  std::vector<Tensor> images;
  std::vector<int64_t> labels;
  images.reserve(indices.size());
  for (int64_t i : indices) {
    Rng rng = Rng::derive(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i) + 1);
    Example ex = dataset.get(static_cast<size_t>(i), rng);
    PETAL_CHECK(ex.image.defined() && ex.image.dim() == 3 && ex.image.dtype() == DType::f32,
                "DataLoader: sample ", i, " is not a float32 [C, H, W] image (got ",
                ex.image.defined() ? shape_str(ex.image.shape()) : std::string("undefined"),
                "); end the transform with ToTensor");
    if (!images.empty()) {
      PETAL_CHECK(ex.image.shape() == images[0].shape(), "DataLoader: cannot batch sample ", i, " of shape ",
                  shape_str(ex.image.shape()), " with sample ", indices[0], " of shape ", shape_str(images[0].shape()),
                  " (use a transform that yields a fixed size, e.g. CenterCrop or RandomResizedCrop)");
    }
    images.push_back(ex.image.cpu().contiguous());
    labels.push_back(ex.label);
  }
  Shape shape = images[0].shape();
  shape.insert(shape.begin(), static_cast<int64_t>(images.size()));
  // With pin_memory the batch is written straight into pinned memory (no extra copy).
  batch.images = empty(shape, TensorOptions(DType::f32).pinned_memory(pin_memory));
  const size_t per = static_cast<size_t>(images[0].numel());
  float* dst = batch.images.data<float>();
  for (size_t b = 0; b < images.size(); ++b) std::memcpy(dst + b * per, images[b].data<float>(), per * sizeof(float));
  batch.labels = empty({static_cast<int64_t>(labels.size())}, TensorOptions(DType::i64).pinned_memory(pin_memory));
  std::memcpy(batch.labels.data<int64_t>(), labels.data(), labels.size() * sizeof(int64_t));
  return batch;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& options)
    : dataset_(std::move(dataset)), options_(options) {
  PETAL_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
  PETAL_CHECK(options_.batch_size > 0, "DataLoader: batch_size must be positive, got ", options_.batch_size);
  PETAL_CHECK(options_.num_workers >= 0, "DataLoader: num_workers must be >= 0, got ", options_.num_workers);
  PETAL_CHECK(options_.prefetch >= 1, "DataLoader: prefetch must be >= 1, got ", options_.prefetch);
  PETAL_CHECK(!options_.sampler || !options_.shuffle,
              "DataLoader: shuffle must be off with a sampler (the sampler decides the order)");
  pin_ = options_.pin_memory && pinned_memory_available();
  if (options_.pin_memory && !pin_)
    warn_once("DataLoader.pin_memory", "DataLoader: pin_memory is set but no accelerator (cuda device or simulator) "
                                       "is available to pin memory for; the batches are ordinary cpu tensors");
}

int64_t DataLoader::num_batches() const {
  const int64_t n = options_.sampler ? options_.sampler->size() : static_cast<int64_t>(dataset_->size());
  const int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  if (options_.sampler) {
    std::vector<int64_t> order = options_.sampler->indices(epoch);
    for (int64_t i : order)
      PETAL_CHECK(i >= 0 && i < static_cast<int64_t>(dataset_->size()), "DataLoader: the sampler gave index ", i,
                  " for a dataset of ", dataset_->size(), " samples");
    return order;
  }
  return shuffled_order(static_cast<int64_t>(dataset_->size()), options_.shuffle, options_.seed, epoch);
}

struct DataLoader::Epoch::State {
  std::shared_ptr<const Dataset> dataset;
  DataLoaderOptions options;
  int64_t epoch = 0;
  std::vector<std::vector<int64_t>> batches;

  std::mutex mutex;
  std::condition_variable work_cv;   // workers wait for room in the window
  std::condition_variable ready_cv;  // the consumer waits for its batch
  int64_t next_claim = 0;
  int64_t next_consume = 0;
  bool stop = false;
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Result> ready;
  std::vector<std::thread> workers;

  int64_t window() const { return static_cast<int64_t>(options.prefetch) * options.num_workers; }

  void worker_loop() {
    for (;;) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(mutex);
        work_cv.wait(lock, [&] {
          return stop || next_claim >= static_cast<int64_t>(batches.size()) || next_claim < next_consume + window();
        });
        if (stop || next_claim >= static_cast<int64_t>(batches.size())) return;
        k = next_claim++;
      }
      Result r;
      try {
        r.batch = load_batch(*dataset, batches[static_cast<size_t>(k)], options.seed, epoch, options.pin_memory);
      } catch (...) {
        r.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready.emplace(k, std::move(r));
      }
      ready_cv.notify_all();
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    work_cv.notify_all();
    for (auto& t : workers)
      if (t.joinable()) t.join();
    workers.clear();
  }
};

DataLoader::Epoch DataLoader::epoch(int64_t epoch) const {
  auto state = std::make_unique<Epoch::State>();
  state->dataset = dataset_;
  state->options = options_;
  state->options.pin_memory = pin_;
  state->epoch = epoch;
  const std::vector<int64_t> order = epoch_order(epoch);
  const int64_t nb = num_batches(), bs = options_.batch_size;
  for (int64_t b = 0; b < nb; ++b) {
    const auto first = order.begin() + b * bs;
    const auto last = order.begin() + std::min<int64_t>((b + 1) * bs, static_cast<int64_t>(order.size()));
    state->batches.emplace_back(first, last);
  }
  Epoch::State* s = state.get();
  const int workers = static_cast<int>(std::min<int64_t>(options_.num_workers, nb));
  for (int w = 0; w < workers; ++w) s->workers.emplace_back([s] { s->worker_loop(); });
  return Epoch(std::move(state));
}

DataLoader::Epoch::Epoch(std::unique_ptr<State> state) : state_(std::move(state)) {}
DataLoader::Epoch::Epoch(Epoch&&) noexcept = default;
DataLoader::Epoch& DataLoader::Epoch::operator=(Epoch&& other) noexcept {
  if (this != &other) {
    if (state_) state_->shutdown();
    state_ = std::move(other.state_);
  }
  return *this;
}
DataLoader::Epoch::~Epoch() {
  if (state_) state_->shutdown();
}

int64_t DataLoader::Epoch::num_batches() const { return static_cast<int64_t>(state_->batches.size()); }

std::optional<Batch> DataLoader::Epoch::next() {
  State& s = *state_;
  const int64_t k = s.next_consume;
  if (k >= static_cast<int64_t>(s.batches.size())) return std::nullopt;
  if (s.workers.empty()) {
    ++s.next_consume;
    return load_batch(*s.dataset, s.batches[static_cast<size_t>(k)], s.options.seed, s.epoch, s.options.pin_memory);
  }
  State::Result r;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.ready_cv.wait(lock, [&] { return s.ready.count(k) != 0; });
    auto it = s.ready.find(k);
    r = std::move(it->second);
    s.ready.erase(it);
    ++s.next_consume;
  }
  s.work_cv.notify_all();
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.batch);
}

}  // namespace petal::data
