// Procedural flower photos (see synthetic.h for what each class looks like). Everything is
// drawn in float RGB on a size x size canvas: a background (gradient + soft blotches), an
// optional leaf or two, one or two flowers, then brightness/contrast jitter and pixel noise.
// Shapes are implicit functions evaluated per pixel inside their bounding box, blended
// with a one-pixel soft edge so small images are antialiased. Radial flowers evaluate the
// two petals nearest in angle to a pixel, which is enough for the overlaps they have.
#include <petal/data/synthetic.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <petal/data/image.h>
#include <petal/error.h>

namespace petal::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Rgb {
  double r, g, b;
  Rgb operator*(double s) const { return {r * s, g * s, b * s}; }
  Rgb operator+(const Rgb& o) const { return {r + o.r, g + o.g, b + o.b}; }
};

Rgb mix(const Rgb& a, const Rgb& b, double t) { return a * (1 - t) + b * t; }

Rgb jitter(const Rgb& c, double amount, Rng& rng) {
  auto j = [&](double v) { return std::clamp(v + rng.uniform(-amount, amount), 0.0, 1.0); };
  return {j(c.r), j(c.g), j(c.b)};
}

double smoothstep(double e0, double e1, double x) {
  double t = std::clamp((x - e0) / (e1 - e0), 0.0, 1.0);
  return t * t * (3 - 2 * t);
}

struct Canvas {
  int64_t size;
  std::vector<double> px;  // HWC
  explicit Canvas(int64_t s) : size(s), px(static_cast<size_t>(s * s * 3), 0.0) {}
  void blend(int64_t x, int64_t y, const Rgb& c, double alpha) {
    if (x < 0 || y < 0 || x >= size || y >= size || alpha <= 0) return;
    alpha = std::min(alpha, 1.0);
    double* p = &px[static_cast<size_t>((y * size + x) * 3)];
    p[0] += (c.r - p[0]) * alpha;
    p[1] += (c.g - p[1]) * alpha;
    p[2] += (c.b - p[2]) * alpha;
  }
  /// Calls f(x, y, px_centre_x, px_centre_y) for every pixel of the clipped box.
  template <typename F>
  void for_box(double cx, double cy, double radius, F&& f) {
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cx - radius - 1)));
    const int64_t x1 = std::min<int64_t>(size - 1, static_cast<int64_t>(std::ceil(cx + radius + 1)));
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cy - radius - 1)));
    const int64_t y1 = std::min<int64_t>(size - 1, static_cast<int64_t>(std::ceil(cy + radius + 1)));
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) f(x, y, x + 0.5, y + 0.5);
  }
};

/// Soft coverage of an implicit shape: inside where value < 1; `scale_px` is roughly the
/// shape's size in pixels across the boundary direction, so the edge is ~1 px wide.
double coverage(double value, double scale_px) { return std::clamp(0.5 - (value - 1.0) * scale_px, 0.0, 1.0); }

/// A soft-edged filled ellipse (axes a, b in pixels, rotated by angle).
void draw_ellipse(Canvas& cv, double cx, double cy, double a, double b, double angle, const Rgb& c, double opacity) {
  const double ca = std::cos(angle), sa = std::sin(angle);
  cv.for_box(cx, cy, std::max(a, b), [&](int64_t x, int64_t y, double px, double py) {
    const double dx = px - cx, dy = py - cy;
    const double u = dx * ca + dy * sa, v = -dx * sa + dy * ca;
    const double e = std::sqrt((u / a) * (u / a) + (v / b) * (v / b));
    cv.blend(x, y, c, opacity * coverage(e, std::min(a, b)));
  });
}

// ---- backgrounds

void draw_background(Canvas& cv, Rng& rng) {
  const int kind = static_cast<int>(rng.randint(0, 4));
  Rgb top, bottom, blotch;
  switch (kind) {
    case 0:  // sky
      top = jitter({0.35, 0.55, 0.85}, 0.08, rng);
      bottom = jitter({0.70, 0.82, 0.95}, 0.06, rng);
      blotch = {0.95, 0.95, 0.97};  // clouds
      break;
    case 1:  // grass / foliage
      top = jitter({0.20, 0.40, 0.15}, 0.08, rng);
      bottom = jitter({0.35, 0.55, 0.20}, 0.08, rng);
      blotch = jitter({0.10, 0.25, 0.08}, 0.05, rng);
      break;
    case 2:  // soil / dark
      top = jitter({0.30, 0.22, 0.15}, 0.08, rng);
      bottom = jitter({0.45, 0.35, 0.25}, 0.08, rng);
      blotch = jitter({0.20, 0.15, 0.10}, 0.05, rng);
      break;
    default:  // blurred garden of mixed colours
      top = jitter({0.45, 0.50, 0.40}, 0.15, rng);
      bottom = jitter({0.30, 0.40, 0.25}, 0.15, rng);
      blotch = jitter({0.6, 0.5, 0.5}, 0.35, rng);
      break;
  }
  const double angle = rng.uniform(-0.5, 0.5);
  const double S = static_cast<double>(cv.size);
  for (int64_t y = 0; y < cv.size; ++y)
    for (int64_t x = 0; x < cv.size; ++x) {
      const double t = std::clamp(((y + 0.5) / S - 0.5) * std::cos(angle) + ((x + 0.5) / S - 0.5) * std::sin(angle) + 0.5, 0.0, 1.0);
      cv.blend(x, y, mix(top, bottom, t), 1.0);
    }
  const int64_t n = rng.randint(2, 7);
  for (int64_t i = 0; i < n; ++i) {
    const double r = S * rng.uniform(0.08, 0.3);
    draw_ellipse(cv, rng.uniform(0, S), rng.uniform(0, S), r, r * rng.uniform(0.4, 1.0), rng.uniform(0, kPi),
                 jitter(blotch, 0.08, rng), rng.uniform(0.25, 0.6));
  }
}

void draw_leaf(Canvas& cv, double cx, double cy, double length, double angle, Rng& rng) {
  const Rgb green = jitter({0.18, 0.45, 0.15}, 0.08, rng);
  const double ca = std::cos(angle), sa = std::sin(angle);
  const double a = length / 2, b = length * rng.uniform(0.12, 0.22);
  const double mx = cx + ca * a, my = cy + sa * a;
  cv.for_box(mx, my, a, [&](int64_t x, int64_t y, double px, double py) {
    const double dx = px - mx, dy = py - my;
    const double u = dx * ca + dy * sa, v = -dx * sa + dy * ca;
    // A lens: width shrinks to a point at both ends.
    const double half = b * (1 - (u / a) * (u / a));
    if (half <= 0) return;
    const double e = std::abs(v) / half;
    const double shade = 0.8 + 0.2 * (1 - std::abs(v) / b) - (std::abs(v) < 0.6 ? 0.15 : 0.0);
    cv.blend(x, y, green * shade, coverage(e, half));
  });
}

// ---- radial flowers

struct PetalSpec {
  int64_t count;
  double inner, outer;  // radial extent, fraction of R
  double width;         // half-width at the widest point, fraction of R
  double pointed;       // 0: rounded (ellipse), 1: pointed tip (lens)
  double length_jitter;
  Rgb base, tip;
};

/// Draws a ring of petals around (cx, cy) with radius R (pixels), rotation rot.
void draw_petal_ring(Canvas& cv, double cx, double cy, double R, double rot, const PetalSpec& p, Rng& rng) {
  std::vector<double> angle(static_cast<size_t>(p.count)), length(static_cast<size_t>(p.count));
  const double step = 2 * kPi / static_cast<double>(p.count);
  for (int64_t k = 0; k < p.count; ++k) {
    angle[static_cast<size_t>(k)] = rot + step * k + rng.uniform(-0.15, 0.15) * step;
    length[static_cast<size_t>(k)] = 1.0 - rng.uniform(0.0, p.length_jitter);
  }
  cv.for_box(cx, cy, R * p.outer, [&](int64_t x, int64_t y, double px, double py) {
    const double dx = px - cx, dy = py - cy;
    const double r = std::sqrt(dx * dx + dy * dy) / R;
    if (r > p.outer + 0.05) return;
    const double theta = std::atan2(dy, dx);
    const double f = (theta - rot) / step;
    const int64_t k0 = static_cast<int64_t>(std::floor(f));
    double best = 0;
    Rgb colour{0, 0, 0};
    for (int64_t dk = -1; dk <= 2; ++dk) {
      const int64_t k = ((k0 + dk) % p.count + p.count) % p.count;
      const double d = theta - angle[static_cast<size_t>(k)];
      const double u = r * std::cos(d), v = r * std::sin(d);
      const double outer = p.inner + (p.outer - p.inner) * length[static_cast<size_t>(k)];
      const double mid = (p.inner + outer) / 2, a = (outer - p.inner) / 2;
      const double t = (u - mid) / a;  // -1 at the base, +1 at the tip
      if (t <= -1.0 || t >= 1.0) continue;
      // Rounded petals follow an ellipse; pointed ones narrow linearly towards the tip.
      const double round_half = std::sqrt(1 - t * t);
      const double point_half = t < 0 ? std::sqrt(1 - t * t) : (1 - t);
      const double half = p.width * ((1 - p.pointed) * round_half + p.pointed * point_half);
      if (half <= 1e-6) continue;
      const double e = std::abs(v) / half;
      const double alpha = coverage(e, half * R);
      if (alpha > best) {
        best = alpha;
        const double along = (t + 1) / 2;
        const double vein = 1.0 - 0.12 * std::exp(-(v / (0.25 * half)) * (v / (0.25 * half)));
        colour = mix(p.base, p.tip, along) * (vein * (0.85 + 0.15 * (1 - e)));
      }
    }
    cv.blend(x, y, colour, best);
  });
}

/// A filled disc with a speckled seed texture (flower centres).
void draw_disc(Canvas& cv, double cx, double cy, double radius, const Rgb& inner, const Rgb& outer, double speckle,
               Rng& rng) {
  const uint64_t tex_seed = rng.next_u64();
  cv.for_box(cx, cy, radius, [&](int64_t x, int64_t y, double px, double py) {
    const double dx = px - cx, dy = py - cy;
    const double r = std::sqrt(dx * dx + dy * dy) / radius;
    Rng tex = Rng::derive(tex_seed, static_cast<uint64_t>(x), static_cast<uint64_t>(y));
    const double s = 1.0 + speckle * (tex.uniform() - 0.5);
    cv.blend(x, y, mix(inner, outer, smoothstep(0.2, 1.0, r)) * s, coverage(r, radius));
  });
}

void draw_daisy(Canvas& cv, double cx, double cy, double R, double rot, Rng& rng) {
  PetalSpec p;
  p.count = rng.randint(14, 23);
  p.inner = 0.12;
  p.outer = 1.0;
  p.width = rng.uniform(0.07, 0.11);
  p.pointed = 0.1;
  p.length_jitter = 0.15;
  const Rgb white = jitter({0.95, 0.95, 0.93}, 0.04, rng);
  const double tint = rng.uniform(0, 1);
  p.base = tint < 0.25 ? Rgb{0.95, 0.80, 0.88} : white * 0.9;
  p.tip = white;
  draw_petal_ring(cv, cx, cy, R, rot, p, rng);
  draw_disc(cv, cx, cy, R * rng.uniform(0.18, 0.26), jitter({0.95, 0.75, 0.10}, 0.05, rng),
            jitter({0.90, 0.62, 0.05}, 0.05, rng), 0.35, rng);
}

void draw_dandelion(Canvas& cv, double cx, double cy, double R, double rot, Rng& rng) {
  const Rgb yellow = jitter({0.98, 0.82, 0.10}, 0.05, rng);
  const Rgb deep = jitter({0.95, 0.62, 0.05}, 0.05, rng);
  // Three layers of short fine rays, each a bit shorter and deeper in colour.
  const double layers[3] = {1.0, 0.78, 0.55};
  for (int l = 0; l < 3; ++l) {
    PetalSpec p;
    p.count = rng.randint(44, 70);
    p.inner = 0.05;
    p.outer = layers[l];
    p.width = rng.uniform(0.035, 0.05);
    p.pointed = 0.0;
    p.length_jitter = 0.25;
    p.base = mix(deep, yellow, 0.3 * l);
    p.tip = mix(yellow, deep, 0.25 * l);
    draw_petal_ring(cv, cx, cy, R, rot + l * 0.37, p, rng);
  }
  draw_disc(cv, cx, cy, R * rng.uniform(0.08, 0.14), deep, yellow, 0.5, rng);
}

void draw_rose(Canvas& cv, double cx, double cy, double R, double rot, Rng& rng) {
  const Rgb palettes[] = {{0.80, 0.08, 0.12}, {0.92, 0.45, 0.60}, {0.96, 0.92, 0.88}, {0.95, 0.55, 0.35}, {0.60, 0.05, 0.15}};
  const Rgb base = jitter(palettes[rng.randint(0, 5)], 0.05, rng);
  const int64_t lobes = rng.randint(5, 8);
  const double spiral = rng.uniform(1.5, 2.5), twist = rng.uniform(2.5, 4.0);
  const double phase = rng.uniform(0, 2 * kPi);
  // Scalloped outline, then a spiral of petal edges that darken towards the centre.
  cv.for_box(cx, cy, R * 1.1, [&](int64_t x, int64_t y, double px, double py) {
    const double dx = px - cx, dy = py - cy;
    const double r = std::sqrt(dx * dx + dy * dy) / R;
    const double theta = std::atan2(dy, dx) - rot;
    const double outline = 0.92 + 0.08 * std::cos(lobes * theta + phase);
    const double alpha = coverage(r / outline, R * outline);
    if (alpha <= 0) return;
    const double s = theta / (2 * kPi) * spiral + r * twist;
    const double edge = std::abs(s - std::floor(s) - 0.5) * 2;  // 1 on the petal edge lines
    const double shade = (0.55 + 0.45 * smoothstep(0.0, 0.9, r)) * (1.0 - 0.35 * std::pow(edge, 6.0));
    const double fold = 0.9 + 0.1 * std::cos(lobes * theta * 2 + r * 9);
    cv.blend(x, y, base * (shade * fold), alpha);
  });
}

void draw_sunflower(Canvas& cv, double cx, double cy, double R, double rot, Rng& rng) {
  PetalSpec p;
  p.count = rng.randint(16, 27);
  p.inner = 0.30;
  p.outer = 1.0;
  p.width = rng.uniform(0.10, 0.14);
  p.pointed = 0.85;
  p.length_jitter = 0.12;
  p.base = jitter({0.95, 0.65, 0.05}, 0.05, rng);
  p.tip = jitter({0.99, 0.82, 0.12}, 0.05, rng);
  draw_petal_ring(cv, cx, cy, R, rot, p, rng);
  draw_petal_ring(cv, cx, cy, R * 0.92, rot + kPi / static_cast<double>(p.count), p, rng);
  draw_disc(cv, cx, cy, R * rng.uniform(0.36, 0.46), jitter({0.18, 0.10, 0.04}, 0.04, rng),
            jitter({0.40, 0.25, 0.08}, 0.05, rng), 0.6, rng);
}

void draw_tulip(Canvas& cv, double cx, double cy, double R, double rot, Rng& rng) {
  const Rgb palettes[] = {{0.85, 0.10, 0.12}, {0.95, 0.45, 0.65}, {0.98, 0.85, 0.15},
                          {0.55, 0.20, 0.60}, {0.97, 0.95, 0.92}, {0.97, 0.50, 0.10}};
  const Rgb base = jitter(palettes[rng.randint(0, 6)], 0.05, rng);
  // Seen from the side: a stem down to the bottom edge, a leaf, and a cup whose top rim
  // has 2-3 pointed petal tips. `rot` only tilts it a little (tulips stand upright).
  const double tilt = std::sin(rot) * 0.3;
  const double ct = std::cos(tilt), st = std::sin(tilt);
  const double stem_w = std::max(1.0, R * 0.07);
  const Rgb stem = jitter({0.25, 0.50, 0.18}, 0.06, rng);
  for (double t = 0; t < static_cast<double>(cv.size) * 1.5; t += 0.5) {
    const double sx = cx - st * t, sy = cy + ct * t;
    if (sy > static_cast<double>(cv.size) + stem_w) break;
    cv.for_box(sx, sy, stem_w, [&](int64_t x, int64_t y, double px, double py) {
      const double d = std::hypot(px - sx, py - sy) / stem_w;
      cv.blend(x, y, stem, coverage(d, stem_w) * 0.6);
    });
  }
  if (rng.uniform() < 0.8) {
    draw_leaf(cv, cx - st * R * 1.2, cy + ct * R * 1.2, R * rng.uniform(1.0, 1.6),
              -kPi / 2 + tilt + (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(0.3, 0.7), rng);
  }
  const int64_t tips = rng.randint(2, 4);
  const double width = rng.uniform(0.55, 0.7), height = rng.uniform(0.85, 1.05);
  const double tip_depth = rng.uniform(0.15, 0.3);
  cv.for_box(cx, cy, R * 1.2, [&](int64_t x, int64_t y, double px, double py) {
    // Local frame: u across (-1..1 over the cup's width), v up (0 at the base).
    const double dx = (px - cx) / R, dy = (py - cy) / R;
    const double lx = dx * ct + dy * st, ly = -dx * st + dy * ct;
    const double u = lx / width, v = -ly / height;  // v from 0 (base) to ~1 (rim)
    if (v < -0.05 || std::abs(u) > 1.05) return;
    // Rim height at u: tips at evenly spaced u, dips between them.
    const double phase = (u + 1) / 2 * tips;
    const double rim = 1.0 - tip_depth * std::abs(std::sin(kPi * phase));
    // Cup outline: rounded bottom (a half-ellipse), straight-ish sides.
    const double side = std::sqrt(std::max(0.0, 1 - std::pow(std::max(0.0, 0.45 - v) / 0.45, 2)));
    const double half = std::max(1e-3, side * (1 - 0.15 * v));
    const double e = std::max(std::abs(u) / half, v / rim);
    const double alpha = coverage(e, R * width * 0.5);
    if (alpha <= 0) return;
    const double seam = std::abs(std::sin(kPi * phase));  // 0 on the petal seams
    const double shade = (0.7 + 0.3 * std::sqrt(std::max(0.0, 1 - u * u))) * (0.8 + 0.2 * seam) * (0.85 + 0.15 * v);
    cv.blend(x, y, base * shade, alpha);
  });
}

void draw_flower(Canvas& cv, int64_t label, double cx, double cy, double R, double rot, Rng& rng) {
  switch (label) {
    case 0: draw_daisy(cv, cx, cy, R, rot, rng); break;
    case 1: draw_dandelion(cv, cx, cy, R, rot, rng); break;
    case 2: draw_rose(cv, cx, cy, R, rot, rng); break;
    case 3: draw_sunflower(cv, cx, cy, R, rot, rng); break;
    case 4: draw_tulip(cv, cx, cy, R, rot, rng); break;
    default: PETAL_FAIL("render_synthetic_flower: label ", label, " out of range [0, 5)");
  }
}

}  // namespace

const std::vector<std::string>& flower_classes() {
  static const std::vector<std::string> names = {"daisy", "dandelion", "roses", "sunflowers", "tulips"};
  return names;
}

Tensor render_synthetic_flower(int64_t label, int64_t size, Rng& rng) {
  PETAL_CHECK(label >= 0 && label < 5, "render_synthetic_flower: label ", label, " out of range [0, 5)");
  PETAL_CHECK(size >= 8 && size <= 4096, "render_synthetic_flower: size must be in [8, 4096], got ", size);
  Canvas cv(size);
  const double S = static_cast<double>(size);
  draw_background(cv, rng);
  const int64_t leaves = rng.randint(0, 3);
  for (int64_t i = 0; i < leaves; ++i)
    draw_leaf(cv, rng.uniform(0, S), rng.uniform(0, S), S * rng.uniform(0.2, 0.45), rng.uniform(0, 2 * kPi), rng);
  // Sometimes a second, smaller flower of the same class behind the main one.
  if (rng.uniform() < 0.3) {
    const double R2 = S * rng.uniform(0.12, 0.22);
    draw_flower(cv, label, rng.uniform(0, S), rng.uniform(0, S), R2, rng.uniform(0, 2 * kPi), rng);
  }
  const double R = S * rng.uniform(0.22, 0.42);
  const double cx = S * rng.uniform(0.3, 0.7), cy = S * rng.uniform(0.3, 0.7);
  draw_flower(cv, label, cx, cy, R, rng.uniform(0, 2 * kPi), rng);
  // Camera: brightness/contrast jitter, a colour cast and sensor noise.
  const double gain = rng.uniform(0.8, 1.15), offset = rng.uniform(-0.06, 0.06);
  const Rgb cast{rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)};
  const double sigma = rng.uniform(0.01, 0.05);
  Tensor out = empty({size, size, 3}, TensorOptions(DType::u8));
  uint8_t* d = out.data<uint8_t>();
  const double casts[3] = {cast.r, cast.g, cast.b};
  for (size_t i = 0; i < cv.px.size(); ++i) {
    const double v = cv.px[i] * gain + offset + casts[i % 3] + sigma * rng.normal();
    d[i] = static_cast<uint8_t>(std::nearbyint(std::clamp(v, 0.0, 1.0) * 255.0));
  }
  return out;
}

int64_t make_synthetic_flowers(const std::string& root, const SyntheticFlowersOptions& o) {
  PETAL_CHECK(o.per_class > 0, "make_synthetic_flowers: per_class must be positive, got ", o.per_class);
  PETAL_CHECK(o.format == "jpg" || o.format == "png", "make_synthetic_flowers: format must be \"jpg\" or \"png\", got \"",
              o.format, "\"");
  const auto& classes = flower_classes();
  std::error_code ec;
  for (const auto& c : classes) {
    std::filesystem::create_directories(std::filesystem::path(root) / c, ec);
    PETAL_CHECK(!ec, "make_synthetic_flowers: cannot create '", (std::filesystem::path(root) / c).string(), "': ",
                ec.message());
  }
  const int64_t total = o.per_class * static_cast<int64_t>(classes.size());
  int threads = o.num_threads > 0 ? o.num_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, total));
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto work = [&](int t) {
    try {
      for (int64_t j; (j = next.fetch_add(1)) < total;) {
        const int64_t label = j / o.per_class, index = j % o.per_class;
        Rng rng = Rng::derive(o.seed, static_cast<uint64_t>(label), static_cast<uint64_t>(index));
        Tensor img = render_synthetic_flower(label, o.size, rng);
        char name[64];
        std::snprintf(name, sizeof(name), "%s_%05lld.%s", classes[static_cast<size_t>(label)].c_str(),
                      static_cast<long long>(index), o.format.c_str());
        write_image((std::filesystem::path(root) / classes[static_cast<size_t>(label)] / name).string(), img,
                    o.jpeg_quality);
      }
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
      next.store(total);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return total;
}

int64_t make_synthetic_flowers(const std::string& root, int64_t per_class, int64_t size, uint64_t seed) {
  SyntheticFlowersOptions o;
  o.per_class = per_class;
  o.size = size;
  o.seed = seed;
  return make_synthetic_flowers(root, o);
}

}  // namespace petal::data
