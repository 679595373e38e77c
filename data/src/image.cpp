// Image decode/encode through stb_image and stb_image_write (Debian's libstb-dev headers;
// the implementations are compiled here, file-local, so they do not clash with another
// copy of stb in a program that links petal).
#include <petal/data/image.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <petal/error.h>

namespace petal::data {
namespace {

std::string lower_extension(const std::string& path) {
  auto slash = path.find_last_of('/');
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

}  // namespace

Tensor decode_image(const void* bytes, size_t nbytes, const std::string& name, int channels) {
  PETAL_CHECK(channels >= 0 && channels <= 4, "read_image: channels must be 0..4, got ", channels);
  PETAL_CHECK(nbytes > 0, "read_image: '", name, "' is empty (0 bytes), not an image");
  PETAL_CHECK(nbytes <= static_cast<size_t>(INT32_MAX), "read_image: '", name, "' is too large (", nbytes, " bytes)");
  const auto* buf = static_cast<const stbi_uc*>(bytes);
  int w = 0, h = 0, file_channels = 0;
  if (!stbi_info_from_memory(buf, static_cast<int>(nbytes), &w, &h, &file_channels)) {
    PETAL_FAIL("read_image: '", name, "' is not an image in a supported format (JPEG, PNG, BMP, TGA, GIF, PNM, PSD, HDR): ",
               stbi_failure_reason());
  }
  int got = 0;
  stbi_uc* pixels = stbi_load_from_memory(buf, static_cast<int>(nbytes), &w, &h, &got, channels);
  if (pixels == nullptr) {
    PETAL_FAIL("read_image: '", name, "' is corrupt or truncated (", w, "x", h, " image): ", stbi_failure_reason());
  }
  const int c = channels == 0 ? got : channels;
  Tensor out = empty({h, w, c}, TensorOptions(DType::u8));
  std::memcpy(out.data_ptr(), pixels, static_cast<size_t>(h) * w * c);
  stbi_image_free(pixels);
  return out;
}

Tensor read_image(const std::string& path, int channels) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    PETAL_FAIL("read_image: cannot open '", path, "': ", std::strerror(errno));
  }
  PETAL_CHECK(!S_ISDIR(st.st_mode), "read_image: '", path, "' is a directory, not an image file");
  std::ifstream in(path, std::ios::binary);
  PETAL_CHECK(in.good(), "read_image: cannot open '", path, "' for reading: ", std::strerror(errno));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  PETAL_CHECK(!in.bad(), "read_image: error reading '", path, "'");
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

Tensor to_float_chw(const Tensor& hwc_u8) {
  PETAL_CHECK(hwc_u8.defined(), "to_float_chw: undefined tensor");
  PETAL_CHECK(hwc_u8.dtype() == DType::u8 && hwc_u8.dim() == 3,
              "to_float_chw: expected a uint8 [H, W, C] image, got ", dtype_name(hwc_u8.dtype()), " ",
              shape_str(hwc_u8.shape()));
  Tensor src = hwc_u8.cpu().contiguous();
  const int64_t H = src.size(0), W = src.size(1), C = src.size(2);
  Tensor out = empty({C, H, W});
  const uint8_t* s = src.data<uint8_t>();
  float* d = out.data<float>();
  const int64_t plane = H * W;
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < C; ++c) d[c * plane + p] = static_cast<float>(s[p * C + c]) / 255.0f;
  return out;
}

Tensor to_uint8_hwc(const Tensor& chw_float) {
  PETAL_CHECK(chw_float.defined(), "to_uint8_hwc: undefined tensor");
  PETAL_CHECK(chw_float.is_floating_point() && chw_float.dim() == 3,
              "to_uint8_hwc: expected a float [C, H, W] image, got ", dtype_name(chw_float.dtype()), " ",
              shape_str(chw_float.shape()));
  Tensor src = chw_float.cpu().to(DType::f32).contiguous();
  const int64_t C = src.size(0), H = src.size(1), W = src.size(2);
  Tensor out = empty({H, W, C}, TensorOptions(DType::u8));
  const float* s = src.data<float>();
  uint8_t* d = out.data<uint8_t>();
  const int64_t plane = H * W;
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < C; ++c) {
      float v = std::nearbyint(std::clamp(s[c * plane + p], 0.0f, 1.0f) * 255.0f);
      d[p * C + c] = static_cast<uint8_t>(v);
    }
  return out;
}

Tensor read_image_float(const std::string& path) { return to_float_chw(read_image(path, 3)); }

void write_image(const std::string& path, const Tensor& image, int jpeg_quality) {
  PETAL_CHECK(image.defined(), "write_image: undefined tensor for '", path, "'");
  Tensor hwc;
  if (image.dtype() == DType::u8) {
    PETAL_CHECK(image.dim() == 3, "write_image: '", path, "': expected uint8 [H, W, C], got ", shape_str(image.shape()));
    hwc = image.cpu().contiguous();
  } else {
    hwc = to_uint8_hwc(image);
  }
  const int H = static_cast<int>(hwc.size(0)), W = static_cast<int>(hwc.size(1)), C = static_cast<int>(hwc.size(2));
  PETAL_CHECK(C == 1 || C == 3 || C == 4, "write_image: '", path, "': channels must be 1, 3 or 4, got ", C);
  PETAL_CHECK(H > 0 && W > 0, "write_image: '", path, "': empty image ", shape_str(hwc.shape()));
  const std::string ext = lower_extension(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const auto* px = hwc.data<uint8_t>();
  int ok = 0;
  if (ext == ".png") {
    ok = stbi_write_png(tmp.c_str(), W, H, C, px, W * C);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    ok = stbi_write_jpg(tmp.c_str(), W, H, C, px, std::clamp(jpeg_quality, 1, 100));
  } else if (ext == ".bmp") {
    ok = stbi_write_bmp(tmp.c_str(), W, H, C, px);
  } else if (ext == ".tga") {
    ok = stbi_write_tga(tmp.c_str(), W, H, C, px);
  } else {
    PETAL_FAIL("write_image: '", path, "': unknown image extension '", ext, "' (use .png, .jpg, .jpeg, .bmp or .tga)");
  }
  if (!ok) {
    std::remove(tmp.c_str());
    PETAL_FAIL("write_image: cannot write '", path, "' (", std::strerror(errno), ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    PETAL_FAIL("write_image: cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
}

}  // namespace petal::data
