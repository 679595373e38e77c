// Image decode/encode. JPEG goes to libjpeg-turbo's TurboJPEG API (fuzzed upstream and
// deterministic on corrupt input, unlike stb's JPEG decoder, which reads uninitialised memory
// on some corrupt files); every other format goes to stb_image. Encoding uses
// stb_image_write. The stb implementations are compiled here, file-local, so they do not
// clash with another copy of stb in a program that links petal.
//
// Decoding reads the dimensions from the header first (TurboJPEG's header parse, or
// stb_image's info call, plus our own look at a PNG's IHDR so that a size stb itself refuses
// can be reported as such) and refuses an image over the pixel limit before allocating.
// libjpeg-turbo warnings (a truncated scan, bad Huffman data) are errors here
// (TJFLAG_STOPONWARNING), and progressive files with absurd scan counts are refused
// (TJFLAG_LIMITSCANS), so a corrupt JPEG fails the same way on every run.
#include <petal/data/image.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <turbojpeg.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
// stb never sees a JPEG: its decoder would otherwise take files that merely look like one
// (fill bytes before SOI) and run its buggy Huffman decoder on them.
#define STBI_NO_JPEG
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

#include <petal/atomic_file.h>
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

bool is_jpeg(const unsigned char* b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

bool is_png(const unsigned char* b, size_t n) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return n >= 8 && std::memcmp(b, sig, 8) == 0;
}

// Width and height from a PNG's IHDR chunk (the first chunk), or false.
bool png_ihdr_size(const unsigned char* b, size_t n, int64_t* w, int64_t* h) {
  if (!is_png(b, n) || n < 24 || std::memcmp(b + 12, "IHDR", 4) != 0) return false;
  auto be32 = [](const unsigned char* p) {
    return (int64_t(p[0]) << 24) | (int64_t(p[1]) << 16) | (int64_t(p[2]) << 8) | int64_t(p[3]);
  };
  *w = be32(b + 16);
  *h = be32(b + 20);
  return true;
}

// Whether stb_image's PNG header checks refuse this size: a side over 2^24, or more than
// 2^30 bytes of decoded pixels (4 bytes a pixel counted for palette images), as in
// stbi__parse_png_file. (stbi_info's own reason is overwritten by the other formats it tries.)
bool png_over_stb_limit(const unsigned char* b, size_t n, int64_t w, int64_t h) {
  if (w <= 0 || h <= 0) return false;
  if (w > (1 << 24) || h > (1 << 24)) return true;
  const int color = n > 25 ? b[25] : 2;
  const int64_t bytes_per_pixel = color == 3 ? 4 : (color & 2 ? 3 : 1) + (color & 4 ? 1 : 0);
  return (int64_t(1) << 30) / w / bytes_per_pixel < h;
}

std::string stb_format_name(const unsigned char* b, size_t n) {
  if (is_png(b, n)) return "PNG";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  if (n >= 4 && std::memcmp(b, "GIF8", 4) == 0) return "GIF";
  if (n >= 4 && std::memcmp(b, "8BPS", 4) == 0) return "PSD";
  if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') return "PNM";
  if (n >= 2 && b[0] == '#' && b[1] == '?') return "HDR";
  return "image";
}

void check_pixel_limit(const std::string& name, const ImageInfo& info, int64_t max_pixels) {
  if (max_pixels <= 0) return;
  const int64_t pixels = info.width * info.height;
  PETAL_CHECK(pixels <= max_pixels, "read_image: '", name, "' is a ", info.width, "x", info.height, " ", info.format,
              " (", pixels, " pixels), over the limit of ", max_pixels,
              " pixels (a decompression bomb?); raise the limit (max_pixels, --max-image-pixels) to decode it");
}

// A TurboJPEG decompressor, destroyed at scope exit. One per call: handles are not
// thread-safe, and DataLoader workers decode concurrently.
struct TurboDecoder {
  tjhandle handle = tjInitDecompress();
  TurboDecoder() { PETAL_CHECK(handle != nullptr, "read_image: cannot create a libjpeg-turbo decompressor: ", tjGetErrorStr2(nullptr)); }
  ~TurboDecoder() { tjDestroy(handle); }
  TurboDecoder(const TurboDecoder&) = delete;
  TurboDecoder& operator=(const TurboDecoder&) = delete;
  std::string error() const {
    const char* kind = tjGetErrorCode(handle) == TJERR_WARNING ? "libjpeg-turbo warning, treated as an error: " : "";
    return std::string(kind) + tjGetErrorStr2(handle);
  }
};

struct JpegHeader {
  ImageInfo info;
  int colorspace = 0;
};

JpegHeader jpeg_header(TurboDecoder& dec, const unsigned char* buf, size_t nbytes, const std::string& name) {
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(dec.handle, buf, static_cast<unsigned long>(nbytes), &w, &h, &subsamp, &colorspace) != 0) {
    PETAL_FAIL("read_image: '", name, "' is a corrupt JPEG (bad header): ", dec.error());
  }
  PETAL_CHECK(w > 0 && h > 0, "read_image: '", name, "' is a corrupt JPEG: header says ", w, "x", h);
  JpegHeader out;
  out.info.format = "JPEG";
  out.info.width = w;
  out.info.height = h;
  out.info.channels = colorspace == TJCS_GRAY ? 1 : (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) ? 4 : 3;
  out.colorspace = colorspace;
  return out;
}

Tensor decode_jpeg(const unsigned char* buf, size_t nbytes, const std::string& name, int channels, int64_t max_pixels) {
  TurboDecoder dec;
  const JpegHeader hdr = jpeg_header(dec, buf, nbytes, name);
  check_pixel_limit(name, hdr.info, max_pixels);
  const int64_t W = hdr.info.width, H = hdr.info.height;
  const bool cmyk = hdr.colorspace == TJCS_CMYK || hdr.colorspace == TJCS_YCCK;
  const bool gray = hdr.colorspace == TJCS_GRAY;
  const int c = channels == 0 ? (gray ? 1 : 3) : channels;
  // Decode as gray (for 1 and 2 channels), RGB, or CMYK (converted below; TurboJPEG cannot
  // convert CMYK to RGB itself).
  const int pf = cmyk ? TJPF_CMYK : (c <= 2 ? TJPF_GRAY : TJPF_RGB);
  const int pf_channels = tjPixelSize[pf];
  Tensor out = empty({H, W, c}, TensorOptions(DType::u8));
  uint8_t* d = out.data<uint8_t>();
  // RGB and gray outputs are decoded straight into the tensor; the rest through a buffer.
  const bool direct = !cmyk && pf_channels == c;
  std::vector<unsigned char> px(direct ? 0 : static_cast<size_t>(W * H * pf_channels));
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS | TJFLAG_ACCURATEDCT;
  if (tjDecompress2(dec.handle, buf, static_cast<unsigned long>(nbytes), direct ? d : px.data(), static_cast<int>(W), 0,
                    static_cast<int>(H), pf, flags) != 0) {
    PETAL_FAIL("read_image: '", name, "' is a corrupt or truncated JPEG (", W, "x", H, "): ", dec.error());
  }
  if (direct) return out;
  const int64_t n = W * H;
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* s = px.data() + i * pf_channels;
    uint8_t rgb[3], luma;
    if (cmyk) {
      // Adobe CMYK JPEGs store inverted ink values: channel * K / 255 gives RGB directly.
      for (int k = 0; k < 3; ++k) rgb[k] = static_cast<uint8_t>((s[k] * s[3] + 127) / 255);
      luma = static_cast<uint8_t>((rgb[0] * 77 + rgb[1] * 150 + rgb[2] * 29) >> 8);
    } else if (pf == TJPF_GRAY) {
      rgb[0] = rgb[1] = rgb[2] = luma = s[0];
    } else {
      rgb[0] = s[0];
      rgb[1] = s[1];
      rgb[2] = s[2];
      luma = static_cast<uint8_t>((rgb[0] * 77 + rgb[1] * 150 + rgb[2] * 29) >> 8);
    }
    uint8_t* o = d + i * c;
    switch (c) {
      case 1: o[0] = luma; break;
      case 2: o[0] = luma; o[1] = 255; break;
      case 3: o[0] = rgb[0]; o[1] = rgb[1]; o[2] = rgb[2]; break;
      default: o[0] = rgb[0]; o[1] = rgb[1]; o[2] = rgb[2]; o[3] = 255; break;
    }
  }
  return out;
}

// stb_image (2.27) reads a binary PNM's width, height and maxval into an int without an
// overflow check (undefined behaviour on hostile input), and overruns a buffer on 16-bit
// samples: refuse numbers longer than 9 digits and maximum values over 255 before stb sees
// the file. The grammar is stb's: whitespace and '#' comments between the numbers.
void check_pnm_header(const unsigned char* b, size_t n, const std::string& name) {
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return;
  size_t i = 2;
  for (const char* field : {"width", "height", "maximum value"}) {
    for (;;) {
      while (i < n && std::isspace(b[i])) ++i;
      if (i < n && b[i] == '#') {
        while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
        continue;
      }
      break;
    }
    size_t digits = 0;
    int64_t value = 0;
    while (i < n && b[i] >= '0' && b[i] <= '9') {
      if (digits < 10) value = value * 10 + (b[i] - '0');
      ++i, ++digits;
    }
    PETAL_CHECK(digits <= 9, "read_image: '", name, "' is a corrupt PNM: its ", field, " has ", digits,
                " digits");
    // stb 2.27 overruns its buffer converting 16-bit PNM samples: only 8-bit PNM is read.
    if (std::strcmp(field, "maximum value") == 0)
      PETAL_CHECK(value >= 1 && value <= 255, "read_image: '", name, "' is a PNM with maximum sample value ", value,
                  ": petal reads 8-bit PNM only (maximum value 1..255)");
  }
}

// stb_image sizes its IDAT buffer from each chunk's length field before reading the chunk,
// so a 200-byte PNG whose IDAT claims 2 GB allocates 2 GB. Every chunk must fit in the file.
void check_png_chunks(const unsigned char* b, size_t n, const std::string& name) {
  if (!is_png(b, n)) return;
  size_t pos = 8;
  while (pos + 8 <= n) {
    const uint64_t len = (uint64_t(b[pos]) << 24) | (uint64_t(b[pos + 1]) << 16) | (uint64_t(b[pos + 2]) << 8) | b[pos + 3];
    const std::string type(reinterpret_cast<const char*>(b + pos + 4), 4);
    const size_t after_header = n - pos - 8;  // the chunk's data and CRC must fit in these
    PETAL_CHECK(len + 4 <= after_header, "read_image: '", name, "' is a corrupt or truncated PNG: chunk '", type,
                "' at byte ", pos, " claims ", len, " bytes of data, only ", after_header, " bytes follow it");
    if (type == "IEND") return;
    pos += static_cast<size_t>(len) + 12;
  }
}

// stb_image's info for a non-JPEG image; a failure says whether stb refused the size.
ImageInfo stb_info(const unsigned char* buf, size_t nbytes, const std::string& name) {
  check_pnm_header(buf, nbytes, name);
  check_png_chunks(buf, nbytes, name);
  ImageInfo info;
  info.format = stb_format_name(buf, nbytes);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(buf, static_cast<int>(nbytes), &w, &h, &comp)) {
    const std::string reason = stbi_failure_reason() ? stbi_failure_reason() : "unknown reason";
    int64_t pw = 0, ph = 0;
    const bool has_size = png_ihdr_size(buf, nbytes, &pw, &ph);
    const bool too_large = reason.find("too large") != std::string::npos || reason.find("Very large") != std::string::npos ||
                           (has_size && png_over_stb_limit(buf, nbytes, pw, ph));
    if (too_large) {
      PETAL_FAIL("read_image: '", name, "'", has_size ? detail::str_cat(" is a ", pw, "x", ph, " ", info.format) : std::string(),
                 ", larger than stb_image (petal's decoder for ", info.format,
                 ") can decode: it refuses more than 2^24 pixels a side or 1 GiB of pixels (", reason, ")");
    }
    if (info.format != "image") PETAL_FAIL("read_image: '", name, "' is a corrupt ", info.format, " (bad header): ", reason);
    PETAL_FAIL("read_image: '", name, "' is not an image in a supported format (JPEG, PNG, BMP, TGA, GIF, PNM, PSD, HDR): ",
               reason);
  }
  // stb's PNM reader accepts a zero height or width; an empty image is corrupt here.
  PETAL_CHECK(w > 0 && h > 0, "read_image: '", name, "' is a corrupt ", info.format, ": header says ", w, "x", h);
  info.width = w;
  info.height = h;
  info.channels = comp;
  return info;
}

std::vector<char> read_file_bytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    PETAL_FAIL("read_image: cannot open '", path, "': ", std::strerror(errno));
  }
  PETAL_CHECK(!S_ISDIR(st.st_mode), "read_image: '", path, "' is a directory, not an image file");
  std::ifstream in(path, std::ios::binary);
  PETAL_CHECK(in.good(), "read_image: cannot open '", path, "' for reading: ", std::strerror(errno));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  PETAL_CHECK(!in.bad(), "read_image: error reading '", path, "'");
  return bytes;
}

void check_buffer(const std::string& name, size_t nbytes) {
  PETAL_CHECK(nbytes > 0, "read_image: '", name, "' is empty (0 bytes), not an image");
  PETAL_CHECK(nbytes <= static_cast<size_t>(INT32_MAX), "read_image: '", name, "' is too large (", nbytes, " bytes)");
}

}  // namespace

ImageInfo decode_image_info(const void* bytes, size_t nbytes, const std::string& name) {
  check_buffer(name, nbytes);
  const auto* buf = static_cast<const unsigned char*>(bytes);
  if (is_jpeg(buf, nbytes)) {
    TurboDecoder dec;
    return jpeg_header(dec, buf, nbytes, name).info;
  }
  return stb_info(buf, nbytes, name);
}

ImageInfo read_image_info(const std::string& path) {
  std::vector<char> bytes = read_file_bytes(path);
  return decode_image_info(bytes.data(), bytes.size(), path);
}

Tensor decode_image(const void* bytes, size_t nbytes, const std::string& name, int channels, int64_t max_pixels) {
  PETAL_CHECK(channels >= 0 && channels <= 4, "read_image: channels must be 0..4, got ", channels);
  check_buffer(name, nbytes);
  const auto* buf = static_cast<const stbi_uc*>(bytes);
  if (is_jpeg(buf, nbytes)) return decode_jpeg(buf, nbytes, name, channels, max_pixels);
  const ImageInfo info = stb_info(buf, nbytes, name);
  check_pixel_limit(name, info, max_pixels);
  int w = 0, h = 0, got = 0;
  stbi_uc* pixels = stbi_load_from_memory(buf, static_cast<int>(nbytes), &w, &h, &got, channels);
  if (pixels == nullptr) {
    const std::string reason = stbi_failure_reason() ? stbi_failure_reason() : "unknown reason";
    if (reason.find("too large") != std::string::npos || reason.find("Very large") != std::string::npos) {
      PETAL_FAIL("read_image: '", name, "' is a ", info.width, "x", info.height, " ", info.format,
                 ", larger than stb_image (petal's decoder for ", info.format, ") can decode (", reason, ")");
    }
    PETAL_FAIL("read_image: '", name, "' is corrupt or truncated (", info.width, "x", info.height, " ", info.format,
               "): ", reason);
  }
  std::unique_ptr<stbi_uc, void (*)(void*)> owned(pixels, stbi_image_free);
  const int c = channels == 0 ? got : channels;
  Tensor out = empty({h, w, c}, TensorOptions(DType::u8));
  std::memcpy(out.data_ptr(), pixels, static_cast<size_t>(h) * w * c);
  return out;
}

Tensor read_image(const std::string& path, int channels, int64_t max_pixels) {
  PETAL_CHECK(channels >= 0 && channels <= 4, "read_image: channels must be 0..4, got ", channels);
  std::vector<char> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, channels, max_pixels);
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

Tensor read_image_float(const std::string& path, int64_t max_pixels) { return to_float_chw(read_image(path, 3, max_pixels)); }

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
  const auto* px = hwc.data<uint8_t>();
  // Encoded in memory, then written through the checked atomic path (stb's own file
  // writer does not report a short write).
  std::string encoded;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  int ok = 0;
  if (ext == ".png") {
    ok = stbi_write_png_to_func(append, &encoded, W, H, C, px, W * C);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    ok = stbi_write_jpg_to_func(append, &encoded, W, H, C, px, std::clamp(jpeg_quality, 1, 100));
  } else if (ext == ".bmp") {
    ok = stbi_write_bmp_to_func(append, &encoded, W, H, C, px);
  } else if (ext == ".tga") {
    ok = stbi_write_tga_to_func(append, &encoded, W, H, C, px);
  } else {
    PETAL_FAIL("write_image: '", path, "': unknown image extension '", ext, "' (use .png, .jpg, .jpeg, .bmp or .tga)");
  }
  PETAL_CHECK(ok, "write_image: cannot encode '", path, "' (", W, "x", H, "x", C, ")");
  try {
    write_file_atomic(path, encoded);
  } catch (const Error& e) {
    PETAL_FAIL("write_image: ", e.what());
  }
}

}  // namespace petal::data
