// torchvision-style transforms on float32 [C, H, W] CPU tensors (see transforms.h).
// Resizing is separable: every output row/column gets a short list of (input index,
// weight) taps, computed once per axis, then the image is filtered along W and then H.
// The taps are PIL's/torchvision's antialiased bilinear ("triangle") filter: for output
// i, centre = (i + 0.5) * in / out in input coordinates, support = max(in / out, 1), and
// input pixel j (centre j + 0.5) weighs max(0, 1 - |j + 0.5 - centre| / support),
// normalised over the pixels inside the image. When enlarging (support 1) this is plain
// bilinear with half-pixel centres and edge clamping, i.e. torch's align_corners=False.
#include <petal/data/transforms.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include <petal/data/image.h>
#include <petal/error.h>

namespace petal::data {
namespace {

struct Taps {
  std::vector<int64_t> start;   // first input index per output
  std::vector<int64_t> count;   // taps per output
  std::vector<double> weights;  // max_taps per output, row-major
  int64_t max_taps = 0;
};

Taps make_taps(int64_t in, int64_t out, bool antialias) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = antialias ? std::max(scale, 1.0) : 1.0;
  Taps t;
  t.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.start.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out * t.max_taps), 0.0);
  for (int64_t i = 0; i < out; ++i) {
    const double centre = (i + 0.5) * scale;
    int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(centre - support)));
    int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(std::ceil(centre + support)) + 1);
    double total = 0;
    int64_t first = -1, n = 0;
    double* w = &t.weights[static_cast<size_t>(i * t.max_taps)];
    for (int64_t j = lo; j < hi; ++j) {
      double v = 1.0 - std::abs(j + 0.5 - centre) / support;
      if (v <= 0) continue;
      if (first < 0) first = j;
      PETAL_CHECK(n < t.max_taps, "resize: internal tap overflow");
      w[n++] = v;  // contiguous: weights are positive on one interval only
      total += v;
    }
    if (first < 0) {  // centre outside every pixel's support cannot happen, but be safe
      first = std::clamp<int64_t>(static_cast<int64_t>(centre), 0, in - 1);
      w[0] = 1.0;
      n = 1;
      total = 1.0;
    }
    for (int64_t k = 0; k < n; ++k) w[k] /= total;
    t.start[i] = first;
    t.count[i] = n;
  }
  return t;
}

std::string vec_str(const std::vector<double>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace

Tensor Transform::operator()(const Tensor& image) const {
  Rng unused(0);
  return apply(image, unused);
}

Tensor as_float_chw(const Tensor& image, const char* op) {
  PETAL_CHECK(image.defined(), op, ": undefined image tensor");
  if (image.dtype() == DType::u8) return to_float_chw(image);
  PETAL_CHECK(image.is_floating_point() && image.dim() == 3, op,
              ": expected a uint8 [H, W, C] or float [C, H, W] image, got ", dtype_name(image.dtype()), " ",
              shape_str(image.shape()));
  return image.cpu().to(DType::f32).contiguous();
}

Tensor resize(const Tensor& image, int64_t out_h, int64_t out_w, bool antialias) {
  Tensor x = as_float_chw(image, "resize");
  PETAL_CHECK(out_h > 0 && out_w > 0, "resize: output size must be positive, got ", out_h, "x", out_w);
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2);
  PETAL_CHECK(H > 0 && W > 0, "resize: empty image ", shape_str(x.shape()));
  if (H == out_h && W == out_w) return x.clone();
  const Taps tw = make_taps(W, out_w, antialias);
  const Taps th = make_taps(H, out_h, antialias);
  // Pass 1 along W: [C, H, W] -> [C, H, out_w] (float64 accumulation).
  std::vector<float> mid(static_cast<size_t>(C * H * out_w));
  const float* src = x.data<float>();
  for (int64_t r = 0; r < C * H; ++r) {
    const float* row = src + r * W;
    float* dst = mid.data() + r * out_w;
    for (int64_t o = 0; o < out_w; ++o) {
      const double* w = &tw.weights[static_cast<size_t>(o * tw.max_taps)];
      const float* p = row + tw.start[o];
      double acc = 0;
      for (int64_t k = 0; k < tw.count[o]; ++k) acc += w[k] * p[k];
      dst[o] = static_cast<float>(acc);
    }
  }
  // Pass 2 along H: [C, H, out_w] -> [C, out_h, out_w].
  Tensor out = empty({C, out_h, out_w});
  float* dst = out.data<float>();
  std::vector<double> acc(static_cast<size_t>(out_w));
  for (int64_t c = 0; c < C; ++c) {
    const float* plane = mid.data() + c * H * out_w;
    for (int64_t o = 0; o < out_h; ++o) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const double* w = &th.weights[static_cast<size_t>(o * th.max_taps)];
      for (int64_t k = 0; k < th.count[o]; ++k) {
        const float* row = plane + (th.start[o] + k) * out_w;
        for (int64_t j = 0; j < out_w; ++j) acc[j] += w[k] * row[j];
      }
      float* orow = dst + (c * out_h + o) * out_w;
      for (int64_t j = 0; j < out_w; ++j) orow[j] = static_cast<float>(acc[j]);
    }
  }
  return out;
}

Tensor resize_shorter(const Tensor& image, int64_t size, bool antialias) {
  Tensor x = as_float_chw(image, "resize");
  PETAL_CHECK(size > 0, "resize: size must be positive, got ", size);
  const int64_t H = x.size(1), W = x.size(2);
  // torchvision: the long side is int(size * long / short) (truncation).
  if (H <= W) {
    return resize(x, size, static_cast<int64_t>(static_cast<double>(size) * W / H), antialias);
  }
  return resize(x, static_cast<int64_t>(static_cast<double>(size) * H / W), size, antialias);
}

Tensor crop(const Tensor& image, int64_t top, int64_t left, int64_t h, int64_t w) {
  Tensor x = as_float_chw(image, "crop");
  PETAL_CHECK(h > 0 && w > 0, "crop: size must be positive, got ", h, "x", w);
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2);
  Tensor out = zeros({C, h, w});
  const float* s = x.data<float>();
  float* d = out.data<float>();
  const int64_t x0 = std::max<int64_t>(left, 0), x1 = std::min<int64_t>(left + w, W);
  if (x1 <= x0) return out;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < h; ++i) {
      const int64_t y = top + i;
      if (y < 0 || y >= H) continue;
      std::memcpy(d + (c * h + i) * w + (x0 - left), s + (c * H + y) * W + x0, sizeof(float) * (x1 - x0));
    }
  return out;
}

Tensor center_crop(const Tensor& image, int64_t h, int64_t w) {
  Tensor x = as_float_chw(image, "center_crop");
  const int64_t H = x.size(1), W = x.size(2);
  // Python's round() (ties to even), as torchvision's F.center_crop uses; negative offsets
  // (image smaller than the crop) pad with zeros like its padding path.
  const int64_t top = static_cast<int64_t>(std::nearbyint((H - h) / 2.0));
  const int64_t left = static_cast<int64_t>(std::nearbyint((W - w) / 2.0));
  return crop(x, top, left, h, w);
}

Tensor horizontal_flip(const Tensor& image) {
  Tensor x = as_float_chw(image, "horizontal_flip");
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2);
  Tensor out = empty({C, H, W});
  const float* s = x.data<float>();
  float* d = out.data<float>();
  for (int64_t r = 0; r < C * H; ++r)
    for (int64_t j = 0; j < W; ++j) d[r * W + j] = s[r * W + (W - 1 - j)];
  return out;
}

Tensor normalize(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std) {
  Tensor x = as_float_chw(image, "normalize");
  const int64_t C = x.size(0), plane = x.size(1) * x.size(2);
  PETAL_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C,
              "normalize: image has ", C, " channels but mean has ", mean.size(), " and std ", std.size(), " values");
  Tensor out = empty(x.shape());
  const float* s = x.data<float>();
  float* d = out.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    PETAL_CHECK(std[c] != 0.0, "normalize: std[", c, "] is zero");
    const double m = mean[c], inv = 1.0 / std[c];
    for (int64_t p = 0; p < plane; ++p) d[c * plane + p] = static_cast<float>((s[c * plane + p] - m) * inv);
  }
  return out;
}

// ---- transform objects

Compose::Compose(std::vector<TransformPtr> transforms) : transforms_(std::move(transforms)) {
  for (size_t i = 0; i < transforms_.size(); ++i)
    PETAL_CHECK(transforms_[i] != nullptr, "Compose: transform ", i, " is null");
}

Tensor Compose::apply(const Tensor& image, Rng& rng) const {
  Tensor x = image;
  for (const auto& t : transforms_) x = t->apply(x, rng);
  return x;
}

std::string Compose::repr() const {
  std::string s = "Compose(";
  for (size_t i = 0; i < transforms_.size(); ++i) s += (i ? ", " : "") + transforms_[i]->repr();
  return s + ")";
}

Tensor ToTensor::apply(const Tensor& image, Rng&) const { return as_float_chw(image, "ToTensor"); }

Normalize::Normalize(std::vector<double> mean, std::vector<double> std) : mean_(std::move(mean)), std_(std::move(std)) {
  PETAL_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize: mean has ", mean_.size(), " values and std ",
              std_.size());
  for (size_t c = 0; c < std_.size(); ++c) PETAL_CHECK(std_[c] != 0.0, "Normalize: std[", c, "] is zero");
}
Tensor Normalize::apply(const Tensor& image, Rng&) const { return normalize(image, mean_, std_); }
std::string Normalize::repr() const { return "Normalize(mean=" + vec_str(mean_) + ", std=" + vec_str(std_) + ")"; }

Resize::Resize(int64_t size, bool antialias) : height_(size), width_(-1), antialias_(antialias) {
  PETAL_CHECK(size > 0, "Resize: size must be positive, got ", size);
}
Resize::Resize(ImageSize size, bool antialias) : height_(size.height), width_(size.width), antialias_(antialias) {
  PETAL_CHECK(height_ > 0 && width_ > 0, "Resize: size must be positive, got ", height_, "x", width_);
}
Tensor Resize::apply(const Tensor& image, Rng&) const {
  return width_ < 0 ? resize_shorter(image, height_, antialias_) : resize(image, height_, width_, antialias_);
}
std::string Resize::repr() const {
  return width_ < 0 ? "Resize(size=" + std::to_string(height_) + ")"
                    : "Resize(size=(" + std::to_string(height_) + ", " + std::to_string(width_) + "))";
}

CenterCrop::CenterCrop(int64_t height, int64_t width) : height_(height), width_(width) {
  PETAL_CHECK(height > 0 && width > 0, "CenterCrop: size must be positive, got ", height, "x", width);
}
Tensor CenterCrop::apply(const Tensor& image, Rng&) const { return center_crop(image, height_, width_); }
std::string CenterCrop::repr() const {
  return "CenterCrop(size=(" + std::to_string(height_) + ", " + std::to_string(width_) + "))";
}

RandomResizedCrop::RandomResizedCrop(int64_t size, std::pair<double, double> scale, std::pair<double, double> ratio,
                                     bool antialias)
    : size_(size), scale_(scale), ratio_(ratio), antialias_(antialias) {
  PETAL_CHECK(size > 0, "RandomResizedCrop: size must be positive, got ", size);
  PETAL_CHECK(scale.first > 0 && scale.first <= scale.second, "RandomResizedCrop: bad scale range (", scale.first,
              ", ", scale.second, ")");
  PETAL_CHECK(ratio.first > 0 && ratio.first <= ratio.second, "RandomResizedCrop: bad ratio range (", ratio.first,
              ", ", ratio.second, ")");
}

CropBox RandomResizedCrop::get_params(int64_t height, int64_t width, Rng& rng) const {
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(ratio_.first), log_hi = std::log(ratio_.second);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale_.first, scale_.second);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    // Python's round() as torchvision: ties to even.
    const int64_t w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
    const int64_t h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int64_t top = rng.randint(0, height - h + 1);
      const int64_t left = rng.randint(0, width - w + 1);
      return {top, left, h, w};
    }
  }
  // Fallback: the whole image, cropped to the nearest allowed aspect ratio, centred.
  const double in_ratio = static_cast<double>(width) / height;
  int64_t w = width, h = height;
  if (in_ratio < ratio_.first) {
    h = static_cast<int64_t>(std::nearbyint(w / ratio_.first));
  } else if (in_ratio > ratio_.second) {
    w = static_cast<int64_t>(std::nearbyint(h * ratio_.second));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

Tensor RandomResizedCrop::apply(const Tensor& image, Rng& rng) const {
  Tensor x = as_float_chw(image, "RandomResizedCrop");
  const CropBox box = get_params(x.size(1), x.size(2), rng);
  return resize(crop(x, box.top, box.left, box.height, box.width), size_, size_, antialias_);
}

std::string RandomResizedCrop::repr() const {
  std::ostringstream os;
  os << "RandomResizedCrop(size=" << size_ << ", scale=(" << scale_.first << ", " << scale_.second << "), ratio=("
     << ratio_.first << ", " << ratio_.second << "))";
  return os.str();
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  PETAL_CHECK(p >= 0 && p <= 1, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
}
Tensor RandomHorizontalFlip::apply(const Tensor& image, Rng& rng) const {
  // Always draw, so later transforms see the same stream whatever the outcome.
  const bool flip = rng.uniform() < p_;
  Tensor x = as_float_chw(image, "RandomHorizontalFlip");
  return flip ? horizontal_flip(x) : x;
}
std::string RandomHorizontalFlip::repr() const {
  std::ostringstream os;
  os << "RandomHorizontalFlip(p=" << p_ << ")";
  return os.str();
}

std::shared_ptr<Compose> train_transform(int64_t size, const std::vector<double>& mean, const std::vector<double>& std) {
  return std::make_shared<Compose>(std::vector<TransformPtr>{
      std::make_shared<RandomResizedCrop>(size), std::make_shared<RandomHorizontalFlip>(),
      std::make_shared<ToTensor>(), std::make_shared<Normalize>(mean, std)});
}

std::shared_ptr<Compose> val_transform(int64_t size, const std::vector<double>& mean, const std::vector<double>& std) {
  const int64_t resize_to = static_cast<int64_t>(size * 256 / 224);
  return std::make_shared<Compose>(std::vector<TransformPtr>{
      std::make_shared<Resize>(resize_to), std::make_shared<CenterCrop>(size), std::make_shared<ToTensor>(),
      std::make_shared<Normalize>(mean, std)});
}

}  // namespace petal::data
