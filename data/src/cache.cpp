// ImageCache and CachedImageDataset (see cache.h).
#include <petal/data/cache.h>

#include <algorithm>
#include <cmath>

#include <petal/data/image.h>
#include <petal/data/transforms.h>
#include <petal/error.h>

namespace petal::data {

ImageCache::ImageCache(int64_t max_bytes, int64_t short_side) : max_bytes_(max_bytes), short_side_(short_side) {
  PETAL_CHECK(short_side >= 0, "ImageCache: short_side must be >= 0 (0 keeps the decoded size), got ", short_side);
}

Tensor ImageCache::shrink(const Tensor& img) const {
  if (short_side_ <= 0) return img;
  PETAL_CHECK(img.dim() == 3 && img.dtype() == DType::u8, "ImageCache: expected a decoded uint8 [H, W, C] image, got ",
              shape_str(img.shape()));
  const int64_t h = img.size(0), w = img.size(1), shorter = std::min(h, w);
  if (shorter <= short_side_) return img;
  // torchvision's Resize(int) sizes: the shorter side becomes short_side, the longer int(s * long / short).
  const int64_t nh = h == shorter ? short_side_ : static_cast<int64_t>(static_cast<double>(short_side_) * h / w);
  const int64_t nw = w == shorter ? short_side_ : static_cast<int64_t>(static_cast<double>(short_side_) * w / h);
  return to_uint8_hwc(resize(to_float_chw(img), nh, nw));
}

void ImageCache::insert(size_t index, const Tensor& img) {
  const int64_t nbytes = img.numel() * static_cast<int64_t>(img.element_size());
  std::lock_guard<std::mutex> lock(mutex_);
  if (images_.count(index) || bytes_ + nbytes > max_bytes_) return;
  images_.emplace(index, img.contiguous());
  bytes_ += nbytes;
}

ImageCacheStats ImageCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ImageCacheStats s;
  s.hits = hits_;
  s.misses = misses_;
  s.decodes = decodes_.load();
  s.entries = static_cast<int64_t>(images_.size());
  s.bytes = bytes_;
  return s;
}

CachedImageDataset::CachedImageDataset(std::vector<Sample> samples, TransformPtr transform, int64_t max_bytes,
                                       int64_t short_side, int64_t max_image_pixels)
    : samples_(std::move(samples)),
      transform_(std::move(transform)),
      max_image_pixels_(max_image_pixels),
      cache_(std::max<int64_t>(max_bytes, 0), short_side) {}

Example CachedImageDataset::get(size_t index, Rng& rng) const {
  PETAL_CHECK(index < samples_.size(), "CachedImageDataset: index ", index, " out of range for ", samples_.size(),
              " samples");
  const Sample& s = samples_[index];
  const Tensor img = cache_.get(index, [&] { return read_image(s.path, 3, max_image_pixels_); });
  try {
    return {transform_ ? transform_->apply(img, rng) : to_float_chw(img), s.label};
  } catch (const Error& e) {
    PETAL_FAIL("while transforming '", s.path, "': ", e.what());
  }
}

}  // namespace petal::data
