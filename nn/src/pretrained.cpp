// Pretrained timm ViT weights into nn::ViT by key name, with head dropping and position-
// embedding resampling (see pretrained.h).
//
// Resampling is separable: for each axis a weight matrix W [out, in] is built following
// PyTorch's F.interpolate(align_corners=False) for the chosen mode, and the grid G [h, w, D]
// becomes Wh G Ww^T per channel, in float64.
//  - Bicubic: source coordinate s = (i + 0.5) * in/out - 0.5 (not clamped), taps
//    floor(s)-1 .. floor(s)+2 with Keys' cubic convolution (a = -0.75), tap indices clamped
//    to the edge (aten's upsample_bicubic2d).
//  - Bilinear: s clamped at 0, taps floor(s) and floor(s)+1 (clamped), linear weights.
//  - BicubicAntialias (timm's default, aten's _upsample_bicubic2d_aa): centre c = (i + 0.5)
//    * in/out, support 2 * max(in/out, 1), taps in [c - support, c + support) within the
//    input, weights cubic(a = -0.5)((j - c + 0.5) / max(in/out, 1)) normalized to sum 1.
//    When enlarging (as from 224 to 384 px) this is a plain bicubic with a = -0.5 and
//    edge-renormalized weights, when shrinking it low-pass filters like PIL.
// Everything is validated before the first parameter is written, so a failed load leaves
// the model untouched.
#include <petal/nn/pretrained.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace petal::nn {

namespace {

using Matrix = std::vector<std::vector<double>>;  // [out][in]

// Keys' cubic convolution kernel with parameter a, |x| < 2.
double cubic(double x, double a) {
  x = std::fabs(x);
  if (x <= 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}

Matrix resample_weights(int64_t in, int64_t out, PosEmbedInterpolation mode) {
  Matrix w(static_cast<size_t>(out), std::vector<double>(static_cast<size_t>(in), 0.0));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  auto clamp_index = [in](int64_t i) { return std::min<int64_t>(std::max<int64_t>(i, 0), in - 1); };
  for (int64_t i = 0; i < out; ++i) {
    auto& row = w[static_cast<size_t>(i)];
    switch (mode) {
      case PosEmbedInterpolation::Bicubic: {
        const double a = -0.75;
        const double s = (static_cast<double>(i) + 0.5) * scale - 0.5;
        const double f = std::floor(s);
        const double t = s - f;
        const int64_t x0 = static_cast<int64_t>(f);
        const double taps[4] = {cubic(t + 1.0, a), cubic(t, a), cubic(1.0 - t, a), cubic(2.0 - t, a)};
        for (int k = 0; k < 4; ++k) row[static_cast<size_t>(clamp_index(x0 - 1 + k))] += taps[k];
        break;
      }
      case PosEmbedInterpolation::Bilinear: {
        const double s = std::max(0.0, (static_cast<double>(i) + 0.5) * scale - 0.5);
        const int64_t x0 = static_cast<int64_t>(s);
        const int64_t x1 = x0 < in - 1 ? x0 + 1 : x0;
        const double l1 = s - static_cast<double>(x0);
        row[static_cast<size_t>(x0)] += 1.0 - l1;
        row[static_cast<size_t>(x1)] += l1;
        break;
      }
      case PosEmbedInterpolation::BicubicAntialias: {
        const double a = -0.5;
        const double stretch = std::max(scale, 1.0);
        const double support = 2.0 * stretch;
        const double center = scale * (static_cast<double>(i) + 0.5);
        const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
        const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
        double total = 0.0;
        for (int64_t j = lo; j < hi; ++j) {
          double v = cubic((static_cast<double>(j) - center + 0.5) / stretch, a);
          row[static_cast<size_t>(j)] = v;
          total += v;
        }
        if (total != 0.0)
          for (int64_t j = lo; j < hi; ++j) row[static_cast<size_t>(j)] /= total;
        break;
      }
    }
  }
  return w;
}

const char* interpolation_name(PosEmbedInterpolation m) {
  switch (m) {
    case PosEmbedInterpolation::BicubicAntialias: return "bicubic (antialiased, timm's default)";
    case PosEmbedInterpolation::Bicubic: return "bicubic";
    case PosEmbedInterpolation::Bilinear: return "bilinear";
  }
  return "?";
}

// Exact integer square root, or -1.
int64_t exact_sqrt(int64_t n) {
  if (n < 0) return -1;
  int64_t r = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return r * r == n ? r : -1;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

Tensor resample_pos_embed(const Tensor& pos_embed, int64_t grid_h, int64_t grid_w, int64_t new_h, int64_t new_w,
                          int64_t num_prefix_tokens, PosEmbedInterpolation interpolation) {
  PETAL_CHECK(pos_embed.defined() && pos_embed.dim() == 3 && pos_embed.size(0) == 1, "resample_pos_embed: expected ",
              "pos_embed [1, tokens, D], got ", pos_embed.defined() ? shape_str(pos_embed.shape()) : "undefined");
  PETAL_CHECK(grid_h > 0 && grid_w > 0 && new_h > 0 && new_w > 0 && num_prefix_tokens >= 0,
              "resample_pos_embed: grids must be positive and the prefix count non-negative, got grid ", grid_h, "x",
              grid_w, " -> ", new_h, "x", new_w, ", ", num_prefix_tokens, " prefix tokens");
  PETAL_CHECK(pos_embed.size(1) == num_prefix_tokens + grid_h * grid_w, "resample_pos_embed: pos_embed ",
              shape_str(pos_embed.shape()), " does not hold ", num_prefix_tokens, " prefix tokens and a ", grid_h,
              "x", grid_w, " grid");
  const int64_t D = pos_embed.size(2);
  Tensor src = pos_embed.detach().to(kCPU, DType::f64).contiguous();
  Tensor dst = empty({1, num_prefix_tokens + new_h * new_w, D}, TensorOptions(DType::f64, kCPU));
  const double* s = src.data<double>();
  double* d = dst.data<double>();
  std::copy(s, s + num_prefix_tokens * D, d);
  const double* grid = s + num_prefix_tokens * D;  // [grid_h, grid_w, D]
  double* out = d + num_prefix_tokens * D;           // [new_h, new_w, D]

  const Matrix wh = resample_weights(grid_h, new_h, interpolation);
  const Matrix ww = resample_weights(grid_w, new_w, interpolation);
  // Rows first: tmp [new_h, grid_w, D] = Wh G, then columns: out = tmp Ww^T.
  std::vector<double> tmp(static_cast<size_t>(new_h * grid_w * D), 0.0);
  for (int64_t i = 0; i < new_h; ++i)
    for (int64_t a = 0; a < grid_h; ++a) {
      const double w = wh[static_cast<size_t>(i)][static_cast<size_t>(a)];
      if (w == 0.0) continue;
      for (int64_t x = 0; x < grid_w * D; ++x) tmp[static_cast<size_t>(i * grid_w * D + x)] += w * grid[a * grid_w * D + x];
    }
  std::fill(out, out + new_h * new_w * D, 0.0);
  for (int64_t i = 0; i < new_h; ++i)
    for (int64_t j = 0; j < new_w; ++j)
      for (int64_t b = 0; b < grid_w; ++b) {
        const double w = ww[static_cast<size_t>(j)][static_cast<size_t>(b)];
        if (w == 0.0) continue;
        const double* t = tmp.data() + (i * grid_w + b) * D;
        double* o = out + (i * new_w + j) * D;
        for (int64_t c = 0; c < D; ++c) o[c] += w * t[c];
      }
  return dst.to(pos_embed.device(), pos_embed.dtype());
}

std::string PretrainedReport::summary() const {
  std::ostringstream os;
  os << "pretrained weights: " << loaded.size() << " tensors loaded";
  if (head_dropped) os << "\n  head dropped (kept the model's freshly initialized head): " << head_reason;
  if (pos_embed_resampled)
    os << "\n  pos_embed resampled from a " << pos_grid_from_h << "x" << pos_grid_from_w << " grid to "
       << pos_grid_to_h << "x" << pos_grid_to_w << " (" << pos_interpolation << ")";
  if (!missing.empty()) os << "\n  missing (left as initialized): " << join(missing);
  if (!unexpected.empty()) os << "\n  unexpected (ignored): " << join(unexpected);
  return os.str();
}

PretrainedReport load_pretrained(ViT& model, const std::string& path, const PretrainedOptions& options) {
  TensorMap weights = load_safetensors(path);
  try {
    return load_pretrained(model, weights, options);
  } catch (const Error& e) {
    PETAL_FAIL("load_pretrained('", path, "'): ", e.what());
  }
}

PretrainedReport load_pretrained(ViT& model, const TensorMap& weights, const PretrainedOptions& options) {
  const ViTConfig& cfg = model.config();
  PretrainedReport report;
  StateDict own = model.state_dict();
  std::set<std::string> trainable;
  for (const auto& np : model.named_parameters()) trainable.insert(np.first);

  // Values to copy, by model key (converted/resampled as needed), validated before copying.
  std::vector<std::pair<std::string, Tensor>> plan;
  std::vector<std::string> shape_errors;
  std::set<std::string> consumed;

  // The classifier: dropped when the model has none or another class count.
  const Tensor* file_head = weights.count("head.weight") ? &weights.at("head.weight") : nullptr;
  const Tensor* model_head = own.find("head.weight");
  if (file_head) {
    if (!model_head) {
      report.head_dropped = true;
      report.head_reason = detail::str_cat(file_head->size(0), " classes in the file, the model has no head");
    } else if (file_head->shape() != model_head->shape()) {
      report.head_dropped = true;
      report.head_reason = detail::str_cat(file_head->size(0), " classes in the file (head.weight ",
                                           shape_str(file_head->shape()), "), ", model_head->size(0),
                                           " in the model (", shape_str(model_head->shape()), ")");
    }
    if (report.head_dropped)
      for (const auto& kv : weights)
        if (kv.first.rfind("head.", 0) == 0) consumed.insert(kv.first);
  }

  for (const auto& [name, target] : own) {
    auto it = weights.find(name);
    if (it == weights.end() || consumed.count(name)) {
      if (!(report.head_dropped && name.rfind("head.", 0) == 0)) report.missing.push_back(name);
      continue;
    }
    consumed.insert(name);
    Tensor src = it->second;
    PETAL_CHECK(src.defined(), "load_pretrained: tensor '", name, "' is undefined");
    if (name == "pos_embed") {
      if (!trainable.count("pos_embed")) {
        // The model uses a fixed sin-cos table: a learned one does not apply.
        report.unexpected.push_back(name + " (the model's position embedding is a fixed sin-cos table)");
        continue;
      }
      const int64_t grid_h = cfg.img_size / cfg.patch_size, grid_w = grid_h;
      if (src.dim() == 3 && target.dim() == 3 && src.size(0) == 1 && src.size(2) == target.size(2) &&
          src.size(1) != target.size(1)) {
        // timm checkpoints hold one class-token row then a square grid.
        const int64_t from = exact_sqrt(src.size(1) - 1);
        if (from <= 0) {
          shape_errors.push_back(detail::str_cat("pos_embed: file shape ", shape_str(src.shape()),
                                                 " is not a class token plus a square grid"));
          continue;
        }
        src = resample_pos_embed(src, from, from, grid_h, grid_w, 1, options.interpolation);
        report.pos_embed_resampled = true;
        report.pos_grid_from_h = report.pos_grid_from_w = from;
        report.pos_grid_to_h = grid_h;
        report.pos_grid_to_w = grid_w;
        report.pos_interpolation = interpolation_name(options.interpolation);
      }
      if (!cfg.class_token_first && src.shape() == target.shape()) {
        // timm stores the class token's row first; this model keeps the class token last.
        src = cat({src.narrow(1, 1, src.size(1) - 1), src.narrow(1, 0, 1)}, 1);
      }
    }
    if (src.shape() != target.shape()) {
      shape_errors.push_back(detail::str_cat(name, ": file shape ", shape_str(src.shape()), " vs model shape ",
                                             shape_str(target.shape())));
      continue;
    }
    plan.emplace_back(name, src);
  }
  for (const auto& kv : weights)
    if (!consumed.count(kv.first)) report.unexpected.push_back(kv.first);

  if (!shape_errors.empty()) {
    std::string msg = "load_pretrained: the weights do not fit this ViT (width " + std::to_string(cfg.width) +
                      ", depth " + std::to_string(cfg.depth) + ", patch " + std::to_string(cfg.patch_size) + "):";
    for (const auto& e : shape_errors) msg += "\n  " + e;
    PETAL_FAIL(msg);
  }
  {
    TensorMap to_load;
    for (const auto& [name, src] : plan) to_load.emplace(name, src);
    check_finite(to_load, "load_pretrained");
  }
  // The tensors a file could fill: all of the model's, but its head when the head is dropped.
  size_t wanted = 0;
  for (const auto& kv : own) wanted += !(report.head_dropped && kv.first.rfind("head.", 0) == 0);
  if (options.min_loaded_fraction > 0 &&
      static_cast<double>(plan.size()) < options.min_loaded_fraction * static_cast<double>(wanted)) {
    auto first = [](const std::vector<std::string>& v) {
      std::vector<std::string> head(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(v.size(), 12)));
      return join(head) + (v.size() > 12 ? ", ... (" + std::to_string(v.size()) + " in all)" : std::string());
    };
    std::string msg = detail::str_cat("load_pretrained: only ", plan.size(), " of the model's ", wanted,
                                      " tensors match the file (at least ", options.min_loaded_fraction * 100,
                                      "% required); is it a timm ViT checkpoint?");
    if (!report.missing.empty()) msg += "\n  model tensors not in the file: " + first(report.missing);
    if (!report.unexpected.empty()) msg += "\n  file tensors the model does not have: " + first(report.unexpected);
    PETAL_FAIL(msg);
  }
  if (options.strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = "load_pretrained (strict):";
    if (!report.missing.empty()) msg += "\n  missing keys: " + join(report.missing);
    if (!report.unexpected.empty()) msg += "\n  unexpected keys: " + join(report.unexpected);
    PETAL_FAIL(msg);
  }

  NoGradGuard no_grad;
  for (auto& [name, src] : plan) {
    Tensor target = own.at(name);
    target.copy_(src.detach());  // converts dtype, crosses devices
    report.loaded.push_back(name);
  }
  return report;
}

}  // namespace petal::nn
