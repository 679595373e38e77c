// An in-memory cache of decoded images, so that the epochs after the first skip JPEG/PNG
// decoding: CachedImageDataset is ImageDataset (decode, then the transform) with the decoded
// uint8 [H, W, 3] image of each sample kept in an ImageCache, bounded in bytes. The random
// transforms still run every epoch on the cached pixels, so with short_side = 0 (keep the
// decoded size) an epoch's batches are exactly those of an uncached ImageDataset.
// short_side > 0 shrinks each cached image first (bilinear, antialiased) so that its shorter
// side is at most short_side: less memory and faster augmentation, slightly different pixels.
// When the cache is full, further images are decoded on every access (nothing is evicted:
// with a random order, keeping the first ones is as good as any and costs no locking churn).
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <petal/data/dataset.h>

namespace petal::data {

struct ImageCacheStats {
  int64_t hits = 0, misses = 0, decodes = 0, entries = 0, bytes = 0;
};

/// A thread-safe map from sample index to a decoded uint8 HWC image, holding at most
/// max_bytes of pixels.
class ImageCache {
 public:
  explicit ImageCache(int64_t max_bytes, int64_t short_side = 0);
  /// The cached image of `index`, or load() (decode) it and keep it when it fits.
  template <class Load>
  Tensor get(size_t index, Load&& load) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = images_.find(index);
      if (it != images_.end()) {
        ++hits_;
        return it->second;
      }
      ++misses_;
    }
    Tensor img = shrink(load());
    ++decodes_;
    insert(index, img);
    return img;
  }
  ImageCacheStats stats() const;
  int64_t max_bytes() const { return max_bytes_; }
  int64_t short_side() const { return short_side_; }

 private:
  Tensor shrink(const Tensor& img) const;
  void insert(size_t index, const Tensor& img);
  int64_t max_bytes_, short_side_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, Tensor> images_;
  int64_t bytes_ = 0, hits_ = 0, misses_ = 0;
  std::atomic<int64_t> decodes_{0};
};

/// ImageDataset with an ImageCache in front of the decoder.
class CachedImageDataset : public Dataset {
 public:
  /// max_bytes <= 0 disables the cache (every access decodes, as ImageDataset).
  CachedImageDataset(std::vector<Sample> samples, TransformPtr transform, int64_t max_bytes, int64_t short_side = 0,
                     int64_t max_image_pixels = kDefaultMaxImagePixels);
  size_t size() const override { return samples_.size(); }
  Example get(size_t index, Rng& rng) const override;
  const std::vector<Sample>& samples() const { return samples_; }
  ImageCacheStats cache_stats() const { return cache_.stats(); }

 private:
  std::vector<Sample> samples_;
  TransformPtr transform_;
  int64_t max_image_pixels_;
  mutable ImageCache cache_;
};

}  // namespace petal::data
