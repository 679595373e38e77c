// torchvision-style image transforms, on the CPU. The image flowing through a pipeline is
// either a decoded uint8 [H, W, C] tensor or a float32 [C, H, W] tensor; the geometric
// transforms work in float CHW and convert a uint8 HWC input first (exactly as ToTensor
// would), so the torchvision order RandomResizedCrop -> RandomHorizontalFlip -> ToTensor
// -> Normalize works as written, and ToTensor on a float CHW tensor is the identity.
// Random transforms draw from the data::Rng passed in (the DataLoader passes one stream
// per sample), never from global state.
//
// Resizing is separable bilinear interpolation with half-pixel centres (align_corners =
// false). With antialias (the default, as torchvision's Resize on tensors) the triangle
// filter is widened by the scale factor when shrinking, like PIL's BILINEAR; enlarging is
// the same with or without it and equals torch's interpolate(mode="bilinear").
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <petal/data/rng.h>
#include <petal/tensor.h>

namespace petal::data {

class Transform {
 public:
  virtual ~Transform() = default;
  /// Applies the transform; random ones draw from rng.
  virtual Tensor apply(const Tensor& image, Rng& rng) const = 0;
  /// Deterministic transforms can be called without a generator.
  Tensor operator()(const Tensor& image) const;
  Tensor operator()(const Tensor& image, Rng& rng) const { return apply(image, rng); }
  /// "Resize(size=256)" etc., for printing pipelines.
  virtual std::string repr() const = 0;
};
using TransformPtr = std::shared_ptr<const Transform>;

// ---- functional forms (float32 CHW in, float32 CHW out unless stated)

/// The image as float32 [C, H, W]: uint8 HWC is converted (to_float_chw), float CHW is
/// returned as is (made contiguous, float32). Throws on any other layout.
Tensor as_float_chw(const Tensor& image, const char* op);
/// Bilinear resize to exactly [out_h, out_w].
Tensor resize(const Tensor& image, int64_t out_h, int64_t out_w, bool antialias = true);
/// Resize so the shorter side becomes `size` (aspect ratio kept; the longer side is
/// int(size * long / short), as torchvision computes it).
Tensor resize_shorter(const Tensor& image, int64_t size, bool antialias = true);
/// The window [top, top+h) x [left, left+w); parts outside the image are zero.
Tensor crop(const Tensor& image, int64_t top, int64_t left, int64_t h, int64_t w);
/// Centre crop (torchvision's rounding: top = round((H - h) / 2), ties to even); an image
/// smaller than the crop is zero-padded.
Tensor center_crop(const Tensor& image, int64_t h, int64_t w);
Tensor horizontal_flip(const Tensor& image);
/// (x - mean[c]) / std[c] per channel.
Tensor normalize(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std);

/// A crop window, as RandomResizedCrop::get_params returns it.
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// ---- transform objects

class Compose : public Transform {
 public:
  explicit Compose(std::vector<TransformPtr> transforms);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;
  const std::vector<TransformPtr>& transforms() const { return transforms_; }

 private:
  std::vector<TransformPtr> transforms_;
};

/// uint8 HWC -> float CHW in [0, 1].
class ToTensor : public Transform {
 public:
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override { return "ToTensor()"; }
};

class Normalize : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;

 private:
  std::vector<double> mean_, std_;
};

/// An exact output size.
struct ImageSize {
  int64_t height = 0, width = 0;
};

/// Resize(size): shorter side to size; Resize(ImageSize{h, w}): exactly h x w.
class Resize : public Transform {
 public:
  explicit Resize(int64_t size, bool antialias = true);
  explicit Resize(ImageSize size, bool antialias = true);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;

 private:
  int64_t height_, width_;  // width_ < 0: shorter side mode
  bool antialias_;
};

class CenterCrop : public Transform {
 public:
  explicit CenterCrop(int64_t size) : CenterCrop(size, size) {}
  CenterCrop(int64_t height, int64_t width);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;

 private:
  int64_t height_, width_;
};

/// torchvision's RandomResizedCrop: a random window of area fraction in `scale` and aspect
/// ratio (log-uniform) in `ratio` (10 tries, then the centre crop of the clamped ratio),
/// resized to size x size.
class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(int64_t size, std::pair<double, double> scale = {0.08, 1.0},
                             std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0}, bool antialias = true);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;
  /// The window for an image of height x width.
  CropBox get_params(int64_t height, int64_t width, Rng& rng) const;

 private:
  int64_t size_;
  std::pair<double, double> scale_, ratio_;
  bool antialias_;
};

class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor apply(const Tensor& image, Rng& rng) const override;
  std::string repr() const override;

 private:
  double p_;
};

/// The seed's pipelines (ImageNet-style with mean = std = 0.5):
///   train: RandomResizedCrop(size), RandomHorizontalFlip, ToTensor, Normalize
///   val:   Resize(size * 256 / 224), CenterCrop(size), ToTensor, Normalize
std::shared_ptr<Compose> train_transform(int64_t size, const std::vector<double>& mean = {0.5, 0.5, 0.5},
                                         const std::vector<double>& std = {0.5, 0.5, 0.5});
std::shared_ptr<Compose> val_transform(int64_t size, const std::vector<double>& mean = {0.5, 0.5, 0.5},
                                       const std::vector<double>& std = {0.5, 0.5, 0.5});

}  // namespace petal::data
