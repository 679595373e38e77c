// data/: image decode (files written here with stb_image_write), transforms against
// float64 references computed here, RandomResizedCrop determinism, ImageFolder scanning
// and errors (and its options: the pixel limit, the class minimum), the stratified split,
// DataLoader coverage/determinism for any worker count, and the synthetic flower generator.
// The bad-input corpus has its own file, test_bad_inputs.cpp.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <petal/data.h>

#include "testing.h"

namespace fs = std::filesystem;
using namespace petal;
using namespace petal::data;

namespace {

/// A fresh empty directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("petal_test_data_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// Seeded random uint8 HWC pixels.
std::vector<uint8_t> random_pixels(int h, int w, int c, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(h * w * c));
  for (auto& p : px) p = static_cast<uint8_t>(rng.randint(0, 256));
  return px;
}

/// A random float CHW image in [0, 1) as float32, and the same values in float64.
Tensor random_chw(int64_t c, int64_t h, int64_t w, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(c * h * w));
  for (auto& x : v) x = static_cast<float>(rng.uniform());
  return tensor(v, {c, h, w});
}

double at(const Tensor& t, int64_t c, int64_t y, int64_t x) {
  const float* p = t.data<float>();
  return p[(c * t.size(1) + y) * t.size(2) + x];
}

void touch(const std::string& path, const std::string& contents = "x") {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << contents;
}

void write_png(const std::string& path, int h, int w, int c, uint64_t seed) {
  fs::create_directories(fs::path(path).parent_path());
  auto px = random_pixels(h, w, c, seed);
  REQUIRE(stbi_write_png(path.c_str(), w, h, c, px.data(), w * c) != 0);
}

}  // namespace

// ---------------------------------------------------------------- decode

TEST_CASE("read_image decodes a PNG exactly and a JPEG approximately", "[data]") {
  TempDir dir("decode");
  const int H = 13, W = 17;
  auto px = random_pixels(H, W, 3, 11);
  const std::string png = dir / "img.png";
  REQUIRE(stbi_write_png(png.c_str(), W, H, 3, px.data(), W * 3) != 0);
  Tensor img = read_image(png);
  REQUIRE(img.dtype() == DType::u8);
  REQUIRE(img.shape() == Shape{H, W, 3});
  const uint8_t* d = img.data<uint8_t>();
  for (size_t i = 0; i < px.size(); ++i) REQUIRE(d[i] == px[i]);

  // Float CHW form: value / 255, channel planes.
  Tensor f = read_image_float(png);
  REQUIRE(f.shape() == Shape{3, H, W});
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < H; y += 5)
      for (int x = 0; x < W; x += 3) REQUIRE(at(f, c, y, x) == Approx(px[(y * W + x) * 3 + c] / 255.0).margin(1e-7));

  // JPEG: a 12x8 smooth gradient, pixel (x, y, c) = 40 + 8x + 5y + 30c, encoded once by
  // stb_image_write at quality 95 (the bytes are embedded because stb's JPEG encoder
  // left-shifts negative ints, which the UBSan build of the tests rejects).
  static const unsigned char kGradientJpeg[] = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x84,
    0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04,
    0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08,
    0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x05, 0x03, 0x03, 0x05, 0x0a, 0x07, 0x06, 0x07, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x0c, 0x03, 0x01, 0x11, 0x00, 0x02,
    0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x01, 0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05,
    0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
    0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17,
    0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
    0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
    0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5,
    0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9,
    0xfa, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
    0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02, 0x77, 0x00,
    0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1,
    0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27,
    0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
    0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
    0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5,
    0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00,
    0x02, 0x11, 0x03, 0x11, 0x00, 0x3f, 0x00, 0xf3, 0x7f, 0xd9, 0xb7, 0xe1, 0x27, 0xfc, 0x7b, 0xff, 0x00, 0xa2, 0xfa, 0x76, 0xaf, 0xd4, 0x0f, 0xce,
    0x4f, 0xb6, 0x3c, 0x0b, 0xf0, 0x93, 0xfe, 0x29, 0xb8, 0x7f, 0xd1, 0x7f, 0x4f, 0x61, 0x40, 0x1f, 0xff, 0xd9,
  };
  const std::string jpg = dir / "img.jpg";
  touch(jpg, std::string(reinterpret_cast<const char*>(kGradientJpeg), sizeof(kGradientJpeg)));
  for (const Tensor& j : {read_image(jpg), decode_image(kGradientJpeg, sizeof(kGradientJpeg), "gradient")}) {
    REQUIRE(j.shape() == Shape{8, 12, 3});
    double err = 0;
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 12; ++x)
        for (int c = 0; c < 3; ++c) err += std::abs(double(j.data<uint8_t>()[(y * 12 + x) * 3 + c]) - (40 + 8 * x + 5 * y + 30 * c));
    CHECK(err / (8 * 12 * 3) < 4.0);
  }
}

TEST_CASE("read_image converts gray to RGB and keeps channels on request", "[data]") {
  TempDir dir("gray");
  const int H = 5, W = 7;
  auto px = random_pixels(H, W, 1, 3);
  const std::string png = dir / "gray.png";
  REQUIRE(stbi_write_png(png.c_str(), W, H, 1, px.data(), W) != 0);
  Tensor rgb = read_image(png);
  REQUIRE(rgb.shape() == Shape{H, W, 3});
  for (int i = 0; i < H * W; ++i)
    for (int c = 0; c < 3; ++c) REQUIRE(rgb.data<uint8_t>()[i * 3 + c] == px[i]);
  Tensor own = read_image(png, 0);
  REQUIRE(own.shape() == Shape{H, W, 1});
}

TEST_CASE("read_image errors name the file and the reason", "[data]") {
  TempDir dir("errors");
  auto message = [](const std::string& path) {
    try {
      read_image(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string missing = dir / "missing.jpg";
  std::string m = message(missing);
  CHECK(m.find(missing) != std::string::npos);
  CHECK(m.find("No such file") != std::string::npos);

  const std::string text = dir / "notes.png";
  touch(text, "this is not an image at all");
  m = message(text);
  CHECK(m.find(text) != std::string::npos);
  CHECK(m.find("not an image") != std::string::npos);

  const std::string empty_file = dir / "empty.jpg";
  touch(empty_file, "");
  m = message(empty_file);
  CHECK(m.find(empty_file) != std::string::npos);
  CHECK(m.find("empty") != std::string::npos);

  // A PNG cut in half: the header is valid, the pixel data is not.
  const std::string full = dir / "full.png";
  write_png(full, 32, 32, 3, 5);
  std::ifstream in(full, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = dir / "cut.png";
  touch(cut, bytes.substr(0, bytes.size() / 2));
  m = message(cut);
  CHECK(m.find(cut) != std::string::npos);
  CHECK(m.find("corrupt") != std::string::npos);

  CHECK(message(dir.path.string()).find("directory") != std::string::npos);
}

TEST_CASE("write_image round-trips PNG and rejects unknown extensions", "[data]") {
  TempDir dir("write");
  Tensor chw = random_chw(3, 9, 11, 21);
  const std::string png = dir / "out.png";
  write_image(png, chw);
  Tensor back = read_image_float(png);
  REQUIRE(back.shape() == chw.shape());
  // 8-bit quantisation: within half a step.
  testing::check_close(back, chw.to(DType::f64), 0.5 / 255 + 1e-6, "png round trip");
  CHECK_THROWS_WITH(write_image(dir / "out.xyz", chw), Catch::Contains("out.xyz") && Catch::Contains("extension"));
}

// ---------------------------------------------------------------- transforms

TEST_CASE("resize: 2x enlargement equals torch bilinear (align_corners=False)", "[data]") {
  Tensor x = tensor({0.f, 1.f, 2.f, 3.f}, {1, 2, 2});
  Tensor y = resize(x, 4, 4);
  // torch.nn.functional.interpolate(x, size=4, mode="bilinear", align_corners=False)
  const double expected[16] = {0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0};
  REQUIRE(y.shape() == Shape{1, 4, 4});
  for (int i = 0; i < 16; ++i) CHECK(y.data<float>()[i] == Approx(expected[i]).margin(1e-6));
}

TEST_CASE("resize matches a direct float64 triangle-filter reference", "[data]") {
  // Reference: out(c, i, j) = sum_{y,x} w_h(i, y) w_w(j, x) in(c, y, x), each axis weight
  // the normalised triangle max(0, 1 - |p + 0.5 - centre| / support) over all pixels.
  auto axis_weights = [](int64_t in, int64_t out, bool antialias) {
    const double scale = double(in) / out, support = antialias ? std::max(scale, 1.0) : 1.0;
    std::vector<std::vector<double>> w(out, std::vector<double>(in, 0.0));
    for (int64_t i = 0; i < out; ++i) {
      const double centre = (i + 0.5) * scale;
      double total = 0;
      for (int64_t p = 0; p < in; ++p) total += w[i][p] = std::max(0.0, 1.0 - std::abs(p + 0.5 - centre) / support);
      for (int64_t p = 0; p < in; ++p) w[i][p] /= total;
    }
    return w;
  };
  struct Case {
    int64_t c, h, w, oh, ow;
    bool antialias;
  };
  for (Case k : {Case{3, 7, 5, 3, 4, true}, Case{1, 11, 13, 19, 6, true}, Case{2, 9, 9, 4, 17, false},
                 Case{3, 1, 7, 5, 2, true}}) {
    Tensor x = random_chw(k.c, k.h, k.w, 100 + k.h);
    Tensor y = resize(x, k.oh, k.ow, k.antialias);
    REQUIRE(y.shape() == Shape{k.c, k.oh, k.ow});
    auto wh = axis_weights(k.h, k.oh, k.antialias), ww = axis_weights(k.w, k.ow, k.antialias);
    std::vector<double> ref;
    for (int64_t c = 0; c < k.c; ++c)
      for (int64_t i = 0; i < k.oh; ++i)
        for (int64_t j = 0; j < k.ow; ++j) {
          double acc = 0;
          for (int64_t yy = 0; yy < k.h; ++yy)
            for (int64_t xx = 0; xx < k.w; ++xx) acc += wh[i][yy] * ww[j][xx] * at(x, c, yy, xx);
          ref.push_back(acc);
        }
    testing::check_close(y, tensor(ref, {k.c, k.oh, k.ow}, DType::f64), -1.0, "resize");
  }
  // Non-contiguous input (a transposed view) gives the same result as its contiguous copy.
  Tensor x = random_chw(2, 6, 8, 7);
  Tensor xt = x.transpose(1, 2).contiguous().transpose(1, 2);
  REQUIRE_FALSE(xt.is_contiguous());
  testing::check_close(resize(xt, 5, 3), resize(x, 5, 3).to(DType::f64), 0.0, "strided input");
}

TEST_CASE("resize keeps constants and shorter-side sizes follow torchvision", "[data]") {
  Tensor x = full({3, 10, 15}, 0.3);
  Tensor y = resize(x, 4, 7);
  testing::check_close(y, full({3, 4, 7}, 0.3, DType::f64), -1.0, "constant");
  CHECK(resize_shorter(random_chw(3, 30, 20, 1), 10).shape() == Shape{3, 15, 10});
  CHECK(resize_shorter(random_chw(3, 20, 33, 1), 10).shape() == Shape{3, 10, 16});  // int(10*33/20) = 16
  CHECK(Resize(10)(random_chw(1, 21, 21, 1)).shape() == Shape{1, 10, 10});
  CHECK(Resize(ImageSize{5, 9})(random_chw(1, 21, 21, 1)).shape() == Shape{1, 5, 9});
  CHECK_THROWS_WITH(resize(x, 0, 3), Catch::Contains("resize"));
}

TEST_CASE("center_crop uses Python rounding and pads small images", "[data]") {
  Tensor x = random_chw(3, 7, 6, 9);
  // top = round((7 - 4) / 2) = round(1.5) = 2, left = round((6 - 3) / 2) = round(1.5) = 2
  Tensor y = center_crop(x, 4, 3);
  REQUIRE(y.shape() == Shape{3, 4, 3});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 3; ++j) REQUIRE(at(y, c, i, j) == at(x, c, i + 2, j + 2));
  // round(0.5) = 0: (5 - 4) / 2
  Tensor z = center_crop(random_chw(1, 5, 5, 2), 4, 4);
  CHECK(at(z, 0, 0, 0) == at(random_chw(1, 5, 5, 2), 0, 0, 0));
  // Larger than the image: zero border around the original.
  Tensor p = center_crop(x, 9, 8);
  REQUIRE(p.shape() == Shape{3, 9, 8});
  CHECK(at(p, 0, 0, 0) == 0.0);
  CHECK(at(p, 1, 1, 1) == at(x, 1, 0, 0));
  CHECK(at(p, 2, 7, 6) == at(x, 2, 6, 5));
  CHECK(at(p, 2, 8, 7) == 0.0);
}

TEST_CASE("horizontal_flip, normalize and ToTensor against references", "[data]") {
  Tensor x = random_chw(3, 5, 9, 4);
  Tensor f = horizontal_flip(x);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 9; ++j) REQUIRE(at(f, c, i, j) == at(x, c, i, 8 - j));

  const std::vector<double> mean = {0.485, 0.456, 0.406}, stdv = {0.229, 0.224, 0.225};
  Tensor n = Normalize(mean, stdv)(x);
  std::vector<double> ref;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 9; ++j) ref.push_back((at(x, c, i, j) - mean[c]) / stdv[c]);
  testing::check_close(n, tensor(ref, {3, 5, 9}, DType::f64), -1.0, "normalize");
  CHECK_THROWS_WITH(normalize(x, {0.5}, {0.5}), Catch::Contains("3 channels"));

  auto px = random_pixels(4, 6, 3, 8);
  Tensor u8 = empty({4, 6, 3}, DType::u8);
  std::copy(px.begin(), px.end(), u8.data<uint8_t>());
  Tensor t = ToTensor()(u8);
  REQUIRE(t.shape() == Shape{3, 4, 6});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 6; ++j) REQUIRE(at(t, c, i, j) == Approx(px[(i * 6 + j) * 3 + c] / 255.0).margin(1e-7));
  // Geometric transforms accept the uint8 image directly.
  testing::check_close(horizontal_flip(u8), horizontal_flip(t).to(DType::f64), 0.0, "flip of uint8");
}

TEST_CASE("RandomResizedCrop is deterministic for a seed and stays in range", "[data]") {
  RandomResizedCrop rrc(12);
  Tensor x = random_chw(3, 31, 23, 5);
  Rng a(42), b(42), c(43);
  Tensor ya = rrc(x, a), yb = rrc(x, b), yc = rrc(x, c);
  REQUIRE(ya.shape() == Shape{3, 12, 12});
  testing::check_close(ya, yb.to(DType::f64), 0.0, "same seed");
  CHECK(testing::normalized_error(ya, yc.to(DType::f64)) > 1e-3);

  Rng r(7);
  int fallback = 0;
  for (int i = 0; i < 300; ++i) {
    CropBox box = rrc.get_params(31, 23, r);
    REQUIRE(box.top >= 0);
    REQUIRE(box.left >= 0);
    REQUIRE(box.top + box.height <= 31);
    REQUIRE(box.left + box.width <= 23);
    const double frac = double(box.height) * box.width / (31.0 * 23.0);
    const double ratio = double(box.width) / box.height;
    if (box.height == 31 || box.width == 23) ++fallback;
    // Rounding to whole pixels widens the ranges a little.
    CHECK(frac >= 0.03);
    CHECK(ratio >= 0.5);
    CHECK(ratio <= 2.0);
  }
  CHECK(fallback < 150);

  // The crop is the resize of the chosen window.
  Rng p1(9), p2(9);
  CropBox box = rrc.get_params(31, 23, p1);
  Tensor expect = resize(crop(x, box.top, box.left, box.height, box.width), 12, 12);
  testing::check_close(rrc(x, p2), expect.to(DType::f64), 0.0, "crop then resize");
}

TEST_CASE("RandomHorizontalFlip and the seed pipelines", "[data]") {
  Tensor x = random_chw(3, 8, 10, 6);
  Rng r(1);
  testing::check_close(RandomHorizontalFlip(1.0)(x, r), horizontal_flip(x).to(DType::f64), 0.0, "p=1");
  testing::check_close(RandomHorizontalFlip(0.0)(x, r), x.to(DType::f64), 0.0, "p=0");
  int flips = 0;
  for (int i = 0; i < 200; ++i) {
    Tensor y = RandomHorizontalFlip(0.5)(x, r);
    flips += at(y, 0, 0, 0) != at(x, 0, 0, 0);
  }
  CHECK(flips > 60);
  CHECK(flips < 140);

  auto px = random_pixels(20, 27, 3, 8);
  Tensor u8 = empty({20, 27, 3}, DType::u8);
  std::copy(px.begin(), px.end(), u8.data<uint8_t>());
  Rng s(3);
  Tensor t = train_transform(16)->apply(u8, s);
  REQUIRE(t.shape() == Shape{3, 16, 16});
  Tensor v = (*val_transform(16))(u8);  // Resize(18) then CenterCrop(16)
  REQUIRE(v.shape() == Shape{3, 16, 16});
  Tensor ref = normalize(center_crop(resize_shorter(to_float_chw(u8), 18), 16, 16), {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});
  testing::check_close(v, ref.to(DType::f64), 0.0, "val pipeline");
  CHECK(max(v).item() <= 1.0 + 1e-6);
  CHECK(min(v).item() >= -1.0 - 1e-6);
  CHECK(val_transform(224)->repr().find("Resize(size=256)") != std::string::npos);
}

// ---------------------------------------------------------------- ImageFolder and split

TEST_CASE("ImageFolder sorts classes and files and labels them", "[data]") {
  TempDir dir("folder");
  write_png(dir / "tulips/b.png", 4, 5, 3, 1);
  write_png(dir / "tulips/a.PNG", 4, 5, 3, 2);
  write_png(dir / "daisy/sub/z.png", 4, 5, 3, 3);
  write_png(dir / "daisy/c.png", 4, 5, 3, 4);
  write_png(dir / "daisy/d.png", 4, 5, 3, 5);
  write_png(dir / "roses/x.png", 4, 5, 3, 6);
  touch(dir / "roses/readme.txt");
  touch(dir / "LICENSE.txt");
  write_png(dir / ".hidden/h.png", 4, 5, 3, 7);

  ImageFolder folder(dir.path.string());
  REQUIRE(folder.classes() == std::vector<std::string>{"daisy", "roses", "tulips"});
  REQUIRE(folder.size() == 6);
  CHECK(folder.class_counts() == std::vector<int64_t>{3, 1, 2});
  CHECK(folder.class_to_idx().at("tulips") == 2);
  const auto& s = folder.samples();
  CHECK(fs::path(s[0].path).filename() == "c.png");
  CHECK(fs::path(s[2].path).filename() == "z.png");
  CHECK(s[2].label == 0);
  CHECK(s[3].label == 1);
  CHECK(fs::path(s[4].path).filename() == "a.PNG");
  CHECK(s[5].label == 2);
  Rng r(0);
  Example ex = folder.get(3, r);
  CHECK(ex.label == 1);
  CHECK(ex.image.shape() == Shape{3, 4, 5});
}

TEST_CASE("ImageFolder errors name the path", "[data]") {
  TempDir dir("folder_err");
  const std::string missing = dir / "nope";
  CHECK_THROWS_WITH(ImageFolder(missing), Catch::Contains(missing) && Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(ImageFolder(dir.path.string()), Catch::Contains(dir.path.string()) && Catch::Contains("no class folders"));
  touch(dir / "file.txt");
  CHECK_THROWS_WITH(ImageFolder(dir / "file.txt"), Catch::Contains("not a directory"));
  write_png(dir / "a/1.png", 3, 3, 3, 1);
  fs::create_directories(dir.path / "b");
  touch(dir / "b/notes.txt");
  CHECK_THROWS_WITH(ImageFolder(dir.path.string()), Catch::Contains((dir.path / "b").string()) && Catch::Contains("no image files"));
}

TEST_CASE("split_samples is stratified, disjoint and seeded", "[data]") {
  std::vector<Sample> samples;
  const int counts[3] = {10, 7, 23};
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < counts[c]; ++i) samples.push_back({"c" + std::to_string(c) + "_" + std::to_string(i), c});
  Split a = split_samples(samples, 0.2, 0), b = split_samples(samples, 0.2, 0), c = split_samples(samples, 0.2, 1);
  REQUIRE(a.val.size() == 2 + 1 + 4);  // int(n * 0.2) per class
  REQUIRE(a.train.size() + a.val.size() == samples.size());
  std::set<std::string> seen;
  for (auto& s : a.train) seen.insert(s.path);
  for (auto& s : a.val) CHECK(seen.insert(s.path).second);
  CHECK(seen.size() == samples.size());
  int per_class[3] = {0, 0, 0};
  for (auto& s : a.val) ++per_class[s.label];
  CHECK(per_class[0] == 2);
  CHECK(per_class[1] == 1);
  CHECK(per_class[2] == 4);
  auto paths = [](const std::vector<Sample>& v) {
    std::vector<std::string> p;
    for (auto& s : v) p.push_back(s.path);
    return p;
  };
  CHECK(paths(a.val) == paths(b.val));
  CHECK(paths(a.val) != paths(c.val));
  CHECK(split_samples(samples, 0.0, 0).val.empty());
  CHECK_THROWS_WITH(split_samples(samples, 1.0, 0), Catch::Contains("val_ratio"));
}

// ---------------------------------------------------------------- DataLoader

namespace {

/// Example i is a [2, 3, 3] image: channel 0 holds i, channel 1 a draw from the sample's
/// generator (so the per-sample random stream is visible); label i % 5. Index `bad`
/// throws.
class IndexDataset : public Dataset {
 public:
  IndexDataset(size_t n, int64_t bad = -1) : n_(n), bad_(bad) {}
  size_t size() const override { return n_; }
  Example get(size_t index, Rng& rng) const override {
    PETAL_CHECK(static_cast<int64_t>(index) != bad_, "IndexDataset: sample ", index, " is broken");
    Tensor img = empty({2, 3, 3});
    float* p = img.data<float>();
    for (int k = 0; k < 9; ++k) p[k] = static_cast<float>(index);
    for (int k = 9; k < 18; ++k) p[k] = static_cast<float>(rng.uniform());
    return {img, static_cast<int64_t>(index % 5)};
  }

 private:
  size_t n_;
  int64_t bad_;
};

std::vector<Batch> all_batches(const DataLoader& loader, int64_t epoch) {
  std::vector<Batch> out;
  auto ep = loader.epoch(epoch);
  while (auto b = ep.next()) out.push_back(std::move(*b));
  return out;
}

}  // namespace

TEST_CASE("DataLoader covers every sample once per epoch, deterministically for any worker count", "[data]") {
  auto ds = std::make_shared<IndexDataset>(23);
  for (bool drop_last : {false, true}) {
    DataLoaderOptions o;
    o.batch_size = 4;
    o.shuffle = true;
    o.drop_last = drop_last;
    o.seed = 99;
    o.num_workers = 0;
    const std::vector<Batch> reference = all_batches(DataLoader(ds, o), 3);
    REQUIRE(static_cast<int64_t>(reference.size()) == (drop_last ? 5 : 6));
    std::multiset<int64_t> seen;
    for (const auto& b : reference) {
      REQUIRE(b.images.shape() == Shape{b.size(), 2, 3, 3});
      REQUIRE(b.labels.dtype() == DType::i64);
      for (int64_t k = 0; k < b.size(); ++k) {
        const int64_t idx = static_cast<int64_t>(b.images.data<float>()[k * 18]);
        REQUIRE(idx == b.indices[k]);
        REQUIRE(b.labels.data<int64_t>()[k] == idx % 5);
        seen.insert(idx);
      }
    }
    REQUIRE(seen.size() == (drop_last ? 20u : 23u));
    CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == seen.size());
    if (!drop_last) CHECK(reference.back().size() == 3);

    for (int workers : {1, 2, 3, 7}) {
      o.num_workers = workers;
      o.prefetch = workers == 3 ? 1 : 2;
      const std::vector<Batch> got = all_batches(DataLoader(ds, o), 3);
      REQUIRE(got.size() == reference.size());
      for (size_t i = 0; i < got.size(); ++i) {
        REQUIRE(got[i].indices == reference[i].indices);
        testing::check_close(got[i].images, reference[i].images.to(DType::f64), 0.0, "workers");
      }
    }
  }
  DataLoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  DataLoader loader(ds, o);
  CHECK(loader.epoch_order(0) != loader.epoch_order(1));
  o.shuffle = false;
  CHECK(DataLoader(ds, o).epoch_order(4)[7] == 7);
}

TEST_CASE("DataLoader rethrows a sample's error and stops early cleanly", "[data]") {
  auto ds = std::make_shared<IndexDataset>(30, 13);
  for (int workers : {0, 2}) {
    DataLoaderOptions o;
    o.batch_size = 4;
    o.num_workers = workers;
    auto ep = DataLoader(ds, o).epoch(0);
    for (int k = 0; k < 3; ++k) REQUIRE(ep.next().has_value());
    CHECK_THROWS_WITH(ep.next(), Catch::Contains("sample 13 is broken"));
    REQUIRE(ep.next().has_value());  // later batches still come
  }
  // Abandoning an epoch with workers in flight joins them.
  DataLoaderOptions o;
  o.batch_size = 2;
  o.num_workers = 3;
  auto ok = std::make_shared<IndexDataset>(40);
  {
    auto ep = DataLoader(ok, o).epoch(0);
    REQUIRE(ep.next().has_value());
  }
  CHECK_THROWS_WITH(DataLoader(ok, DataLoaderOptions{0}), Catch::Contains("batch_size"));
}

TEST_CASE("DataLoader batches an ImageFolder with the seed transforms", "[data]") {
  TempDir dir("loader_folder");
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 5; ++i) write_png(dir / ("c" + std::to_string(c) + "/" + std::to_string(i) + ".png"), 9 + i, 12, 3, 10 * c + i);
  auto ds = std::make_shared<ImageFolder>(dir.path.string(), train_transform(8));
  DataLoaderOptions o;
  o.batch_size = 3;
  o.shuffle = true;
  o.num_workers = 2;
  auto batches = all_batches(DataLoader(ds, o), 0);
  REQUIRE(batches.size() == 4);
  CHECK(batches[0].images.shape() == Shape{3, 3, 8, 8});
  // Without a fixed-size transform, mixed sizes cannot be batched: the error says so.
  auto raw = std::make_shared<ImageFolder>(dir.path.string());
  o.num_workers = 0;
  o.shuffle = false;
  CHECK_THROWS_WITH(all_batches(DataLoader(raw, o), 0), Catch::Contains("cannot batch"));
}

// ---------------------------------------------------------------- synthetic flowers

TEST_CASE("make_synthetic_flowers writes a seeded 5-class ImageFolder", "[data]") {
  TempDir dir("synthetic");
  SyntheticFlowersOptions o;
  o.per_class = 3;
  o.size = 24;
  o.seed = 5;
  o.num_threads = 2;
  o.format = "png";  // stb's JPEG encoder trips UBSan (see the decode test)
  REQUIRE(make_synthetic_flowers(dir.path.string(), o) == 15);
  ImageFolder folder(dir.path.string());
  CHECK(folder.classes() == flower_classes());
  CHECK(folder.class_counts() == std::vector<int64_t>{3, 3, 3, 3, 3});
  CHECK(fs::path(folder.samples()[4].path).filename() == "dandelion_00001.png");
  Tensor img = read_image(folder.samples()[4].path);
  CHECK(img.shape() == Shape{24, 24, 3});

  // Same (seed, class, index) -> same pixels; PNG output is lossless.
  TempDir png("synthetic_png");
  o.per_class = 1;
  make_synthetic_flowers(png.path.string(), o);
  Rng r = Rng::derive(5, 2, 0);
  Tensor expect = render_synthetic_flower(2, 24, r);
  Tensor got = read_image(png / "roses/roses_00000.png");
  for (int64_t i = 0; i < expect.numel(); ++i) REQUIRE(got.data<uint8_t>()[i] == expect.data<uint8_t>()[i]);
  Rng r2 = Rng::derive(6, 2, 0);
  Tensor other = render_synthetic_flower(2, 24, r2);
  int diff = 0;
  for (int64_t i = 0; i < expect.numel(); ++i) diff += other.data<uint8_t>()[i] != expect.data<uint8_t>()[i];
  CHECK(diff > expect.numel() / 2);
  CHECK_THROWS_WITH(render_synthetic_flower(5, 24, r), Catch::Contains("label 5"));
}

TEST_CASE("ImageFolder options: the pixel limit reaches every sample, and the class minimum", "[data]") {
  TempDir dir("folder_options");
  write_png(dir / "a/1.png", 6, 5, 3, 1);
  write_png(dir / "b/2.png", 4, 4, 3, 2);
  ImageFolderOptions o;
  o.max_image_pixels = 20;  // 5 wide x 6 high = 30 pixels is over, 4x4 = 16 is not
  ImageFolder limited(dir.path.string(), nullptr, o);
  Rng r(0);
  CHECK_THROWS_WITH(limited.get(0, r), Catch::Contains(dir / "a/1.png") && Catch::Contains("5x6 PNG") &&
                                           Catch::Contains("over the limit of 20 pixels"));
  CHECK(limited.get(1, r).image.shape() == Shape{3, 4, 4});
  ImageDataset ds(limited.samples(), nullptr, 20);
  CHECK_THROWS_WITH(ds.get(0, r), Catch::Contains("over the limit"));
  CHECK(ImageDataset(limited.samples(), nullptr).get(0, r).image.shape() == Shape{3, 6, 5});

  const ImageInfo info = read_image_info(dir / "a/1.png");
  CHECK(info.format == "PNG");
  CHECK(info.width == 5);
  CHECK(info.height == 6);
  CHECK(info.channels == 3);

  fs::remove_all(dir.path / "b");
  CHECK_THROWS_WITH(ImageFolder(dir.path.string()), Catch::Contains("1 class folder ('a')") && Catch::Contains("at least 2"));
  ImageFolderOptions one;
  one.min_classes = 1;
  CHECK(ImageFolder(dir.path.string(), nullptr, one).size() == 1);
}
