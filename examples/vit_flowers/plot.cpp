// Pictures: an RGB canvas with antialiased lines and stb_truetype text (see plot.h).
#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>

// stb_truetype, compiled here and file-local (STBTT_STATIC), as petal compiles stb_image.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb/stb_truetype.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;

namespace vit_flowers {

struct Font::Impl {
  std::vector<unsigned char> bytes;
  stbtt_fontinfo info;
};

Font::Font(const std::string& path) : path_(path), impl_(std::make_unique<Impl>()) {
  std::ifstream in(path, std::ios::binary);
  PETAL_CHECK(in.good(), "vit_flowers: cannot open font file '", path, "'");
  impl_->bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  const int offset = impl_->bytes.empty() ? -1 : stbtt_GetFontOffsetForIndex(impl_->bytes.data(), 0);
  PETAL_CHECK(offset >= 0 && stbtt_InitFont(&impl_->info, impl_->bytes.data(), offset),
              "vit_flowers: '", path, "' is not a TrueType font stb_truetype can read");
}

Font::~Font() = default;

std::string find_font() {
  if (const char* env = std::getenv("PETAL_FONT"); env != nullptr && *env != '\0') {
    PETAL_CHECK(fs::is_regular_file(env), "vit_flowers: $PETAL_FONT = '", env, "' is not a font file");
    return env;
  }
  // fonts-dejavu-core's location on Debian/Ubuntu, then other common layouts.
  for (const char* p : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                        "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/local/share/fonts/DejaVuSans.ttf"})
    if (fs::is_regular_file(p)) return p;
  std::error_code ec;
  for (const char* root : {"/usr/share/fonts", "/usr/local/share/fonts"}) {
    if (!fs::is_directory(root, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->path().filename() == "DejaVuSans.ttf") return it->path().string();
    }
  }
  return "";
}

const Font* default_font() {
  static std::once_flag once;
  static std::unique_ptr<Font> font;
  std::call_once(once, [] {
    const std::string path = find_font();
    if (path.empty()) {
      std::cerr << "warning: vit_flowers: no DejaVuSans.ttf found (install Debian's fonts-dejavu-core, or set "
                   "PETAL_FONT to a .ttf file): pictures are drawn without text\n";
      return;
    }
    font = std::make_unique<Font>(path);
  });
  return font.get();
}

// ---------------------------------------------------------------- canvas

Canvas::Canvas(int64_t width, int64_t height, Rgb bg) : w_(width), h_(height) {
  PETAL_CHECK(width > 0 && height > 0, "vit_flowers: canvas of ", width, "x", height, " pixels");
  px_.resize(static_cast<size_t>(width * height * 3));
  for (size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = bg.r;
    px_[i + 1] = bg.g;
    px_[i + 2] = bg.b;
  }
}

Canvas Canvas::from_image(const petal::Tensor& img) {
  PETAL_CHECK(img.dim() == 3 && img.size(2) == 3 && img.dtype() == petal::DType::u8,
              "vit_flowers: Canvas::from_image needs a uint8 [H, W, 3] image, got ", petal::shape_str(img.shape()));
  Canvas c(img.size(1), img.size(0));
  c.paste(img, 0, 0);
  return c;
}

void Canvas::blend(int64_t x, int64_t y, Rgb c, double a) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || a <= 0) return;
  a = std::min(a, 1.0);
  uint8_t* p = &px_[static_cast<size_t>((y * w_ + x) * 3)];
  auto mix = [a](uint8_t dst, uint8_t src) {
    return static_cast<uint8_t>(std::lround(dst * (1.0 - a) + src * a));
  };
  p[0] = mix(p[0], c.r);
  p[1] = mix(p[1], c.g);
  p[2] = mix(p[2], c.b);
}

void Canvas::fill_rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, Rgb c) {
  for (int64_t y = std::max<int64_t>(0, y0); y < std::min(h_, y1); ++y)
    for (int64_t x = std::max<int64_t>(0, x0); x < std::min(w_, x1); ++x) blend(x, y, c, 1.0);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, double width) {
  // Coverage from the distance of each pixel centre to the segment (a capsule of radius width/2).
  const double r = width / 2;
  const auto bx0 = static_cast<int64_t>(std::floor(std::min(x0, x1) - r - 1)), bx1 = static_cast<int64_t>(std::ceil(std::max(x0, x1) + r + 1));
  const auto by0 = static_cast<int64_t>(std::floor(std::min(y0, y1) - r - 1)), by1 = static_cast<int64_t>(std::ceil(std::max(y0, y1) + r + 1));
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int64_t y = std::max<int64_t>(0, by0); y <= std::min(h_ - 1, by1); ++y)
    for (int64_t x = std::max<int64_t>(0, bx0); x <= std::min(w_ - 1, bx1); ++x) {
      const double px = x + 0.5, py = y + 0.5;
      const double t = len2 > 0 ? std::clamp(((px - x0) * dx + (py - y0) * dy) / len2, 0.0, 1.0) : 0.0;
      const double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
      blend(x, y, c, r + 0.5 - std::sqrt(ex * ex + ey * ey));
    }
}

void Canvas::disc(double cx, double cy, double radius, Rgb c) { line(cx, cy, cx, cy, c, 2 * radius); }

double Canvas::text_width(const Font* font, const std::string& s, double pixel_height) {
  if (font == nullptr) return 0;
  const stbtt_fontinfo& f = font->impl().info;
  const float scale = stbtt_ScaleForPixelHeight(&f, static_cast<float>(pixel_height));
  double w = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    int advance = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f, static_cast<unsigned char>(s[i]), &advance, &lsb);
    w += advance * scale;
    if (i + 1 < s.size())
      w += scale * stbtt_GetCodepointKernAdvance(&f, static_cast<unsigned char>(s[i]), static_cast<unsigned char>(s[i + 1]));
  }
  return w;
}

double Canvas::text(const Font* font, double x, double y, const std::string& s, double pixel_height, Rgb c) {
  if (font == nullptr) return 0;
  const stbtt_fontinfo& f = font->impl().info;
  const float scale = stbtt_ScaleForPixelHeight(&f, static_cast<float>(pixel_height));
  double pen = x;
  for (size_t i = 0; i < s.size(); ++i) {
    const int cp = static_cast<unsigned char>(s[i]);  // the texts drawn here are ASCII
    int advance = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f, cp, &advance, &lsb);
    const float shift_x = static_cast<float>(pen - std::floor(pen));
    int w = 0, h = 0, xoff = 0, yoff = 0;
    unsigned char* bmp = stbtt_GetCodepointBitmapSubpixel(&f, scale, scale, shift_x, 0.f, cp, &w, &h, &xoff, &yoff);
    const auto ox = static_cast<int64_t>(std::floor(pen)) + xoff, oy = static_cast<int64_t>(std::lround(y)) + yoff;
    for (int j = 0; j < h; ++j)
      for (int k = 0; k < w; ++k) blend(ox + k, oy + j, c, bmp[j * w + k] / 255.0);
    stbtt_FreeBitmap(bmp, nullptr);
    pen += advance * scale;
    if (i + 1 < s.size()) pen += scale * stbtt_GetCodepointKernAdvance(&f, cp, static_cast<unsigned char>(s[i + 1]));
  }
  return pen - x;
}

void Canvas::paste(const petal::Tensor& img_in, int64_t x0, int64_t y0) {
  PETAL_CHECK(img_in.dim() == 3 && img_in.size(2) == 3 && img_in.dtype() == petal::DType::u8,
              "vit_flowers: Canvas::paste needs a uint8 [H, W, 3] image, got ", petal::shape_str(img_in.shape()));
  const petal::Tensor img = img_in.cpu().contiguous();
  const uint8_t* src = img.data<uint8_t>();
  for (int64_t y = 0; y < img.size(0); ++y)
    for (int64_t x = 0; x < img.size(1); ++x) {
      const uint8_t* s = src + (y * img.size(1) + x) * 3;
      blend(x0 + x, y0 + y, Rgb{s[0], s[1], s[2]}, 1.0);
    }
}

petal::Tensor Canvas::tensor() const {
  petal::Tensor t = petal::empty({h_, w_, 3}, petal::TensorOptions(petal::DType::u8));
  std::copy(px_.begin(), px_.end(), t.data<uint8_t>());
  return t;
}

void Canvas::save(const std::string& path) const { petal::data::write_image(path, tensor()); }

// ---------------------------------------------------------------- curves

namespace {

const Rgb kTrainColour{31, 119, 180}, kValColour{255, 127, 14};  // matplotlib's first two
const Rgb kInk{40, 40, 40}, kGrid{225, 225, 225};

std::string tick_text(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

/// A 1-2-5 step giving about `count` intervals over span.
double nice_step(double span, int count) {
  const double raw = span / count, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

void panel(Canvas& cv, const Font* font, int64_t ox, int64_t width, const std::string& title, const std::vector<EpochStats>& rows,
           bool accuracy) {
  const double left = ox + 62, right = ox + width - 16, top = 38, bottom = kCurvesHeight - 48;
  auto train_v = [&](const EpochStats& r) { return accuracy ? r.train_acc : r.train_loss; };
  auto val_v = [&](const EpochStats& r) { return accuracy ? r.val_acc : r.val_loss; };
  double y_lo = 0, y_hi = accuracy ? 1.0 : 0.0;
  if (!accuracy) {
    for (const auto& r : rows)
      for (double v : {train_v(r), val_v(r)})
        if (std::isfinite(v)) y_hi = std::max(y_hi, v);
    y_hi = y_hi > 0 ? y_hi * 1.08 : 1.0;
  }
  int64_t e_lo = rows.empty() ? 1 : rows.front().epoch + 1, e_hi = rows.empty() ? 1 : rows.back().epoch + 1;
  for (const auto& r : rows) {
    e_lo = std::min(e_lo, r.epoch + 1);
    e_hi = std::max(e_hi, r.epoch + 1);
  }
  const double x_lo = e_lo - 0.5, x_hi = e_hi + 0.5;
  auto X = [&](double e) { return left + (e - x_lo) / (x_hi - x_lo) * (right - left); };
  auto Y = [&](double v) { return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top); };

  const double ystep = nice_step(y_hi - y_lo, 5);
  for (double v = y_lo; v <= y_hi + 1e-9; v += ystep) {
    cv.line(left, Y(v), right, Y(v), kGrid, 1.0);
    const std::string t = tick_text(v, ystep);
    cv.text(font, left - 6 - Canvas::text_width(font, t, 13), Y(v) + 4.5, t, 13, kInk);
  }
  const int64_t xstep = std::max<int64_t>(1, static_cast<int64_t>(nice_step(static_cast<double>(e_hi - e_lo + 1), 8)));
  for (int64_t e = e_lo; e <= e_hi; e += xstep) {
    cv.line(X(static_cast<double>(e)), bottom, X(static_cast<double>(e)), bottom + 5, kInk, 1.0);
    const std::string t = std::to_string(e);
    cv.text(font, X(static_cast<double>(e)) - Canvas::text_width(font, t, 13) / 2, bottom + 20, t, 13, kInk);
  }
  cv.line(left, top, left, bottom, kInk, 1.2);
  cv.line(left, bottom, right, bottom, kInk, 1.2);
  cv.text(font, (left + right) / 2 - Canvas::text_width(font, "epoch", 14) / 2, bottom + 40, "epoch", 14, kInk);
  cv.text(font, (left + right) / 2 - Canvas::text_width(font, title, 17) / 2, top - 14, title, 17, kInk);

  for (int curve = 0; curve < 2; ++curve) {
    const Rgb colour = curve == 0 ? kTrainColour : kValColour;
    bool have_prev = false;
    double px = 0, py = 0;
    for (const auto& r : rows) {
      const double v = curve == 0 ? train_v(r) : val_v(r);
      if (!std::isfinite(v)) {
        have_prev = false;  // a gap, not a line through a missing value
        continue;
      }
      const double x = X(static_cast<double>(r.epoch + 1)), y = Y(std::clamp(v, y_lo, y_hi));
      if (have_prev) cv.line(px, py, x, y, colour, 2.2);
      cv.disc(x, y, 3.0, colour);
      px = x;
      py = y;
      have_prev = true;
    }
  }
  // Legend, top right of the panel.
  double ly = top + 14;
  for (int curve = 0; curve < 2; ++curve) {
    const Rgb colour = curve == 0 ? kTrainColour : kValColour;
    const double lx = right - 80;
    cv.line(lx, ly - 4, lx + 22, ly - 4, colour, 2.2);
    cv.text(font, lx + 28, ly, curve == 0 ? "train" : "val", 13, kInk);
    ly += 18;
  }
}

}  // namespace

void plot_curves(const std::vector<EpochStats>& rows, const std::string& path, const Font* font) {
  Canvas cv(kCurvesWidth, kCurvesHeight);
  panel(cv, font, 0, kCurvesWidth / 2, "loss", rows, false);
  panel(cv, font, kCurvesWidth / 2, kCurvesWidth / 2, "accuracy", rows, true);
  cv.save(path);
}

// ---------------------------------------------------------------- prediction picture

std::pair<int64_t, int64_t> prediction_image_size(int64_t w, int64_t h) {
  PETAL_CHECK(w > 0 && h > 0, "vit_flowers: image of ", w, "x", h, " pixels");
  const double s = static_cast<double>(kPredictionSide) / static_cast<double>(std::max(w, h));
  const int64_t sw = std::max<int64_t>(1, std::lround(w * s)), sh = std::max<int64_t>(1, std::lround(h * s));
  return {sw, sh + kTitleHeight};
}

void write_prediction_image(const petal::Tensor& hwc_u8, const std::string& title, const std::string& path,
                            const Font* font) {
  PETAL_CHECK(hwc_u8.dim() == 3 && hwc_u8.size(2) == 3, "vit_flowers: the prediction picture needs an RGB [H, W, 3] image, got ",
              petal::shape_str(hwc_u8.shape()));
  const auto [w, h] = prediction_image_size(hwc_u8.size(1), hwc_u8.size(0));
  const petal::Tensor scaled =
      petal::data::to_uint8_hwc(petal::data::resize(petal::data::to_float_chw(hwc_u8), h - kTitleHeight, w));
  Canvas cv(w, h);
  cv.paste(scaled, 0, kTitleHeight);
  double size = 22;
  while (size > 9 && Canvas::text_width(font, title, size) > static_cast<double>(w) - 8) size -= 1;
  cv.text(font, (static_cast<double>(w) - Canvas::text_width(font, title, size)) / 2, kTitleHeight / 2.0 + size * 0.36, title,
          size, {0, 0, 0});
  cv.save(path);
}

}  // namespace vit_flowers
