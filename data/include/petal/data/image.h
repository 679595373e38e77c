// Image files <-> tensors: JPEG is decoded by libjpeg-turbo (TurboJPEG API), the other
// formats by stb_image; files are written by stb_image_write.
// Decoded images are uint8 tensors [H, W, C] (HWC, row-major, as the file stores them);
// the float form used by models is [C, H, W] in [0, 1] (see to_float_chw). Errors name
// the file and the reason (missing, unreadable, not an image, corrupt, too large).
// Decompression bombs: the dimensions are read from the header first, and an image of more
// than max_pixels pixels is refused before any pixel is decoded.
#pragma once
#include <cstdint>
#include <string>

#include <petal/tensor.h>

namespace petal::data {

/// The default limit on width * height of a decoded image: PIL's MAX_IMAGE_PIXELS
/// (1024 * 1024 * 1024 / 4 / 3, about 89.5 M pixels, 268 MB as RGB).
constexpr int64_t kDefaultMaxImagePixels = int64_t(1024) * 1024 * 1024 / 4 / 3;

/// What an image header says, read without decoding the pixels.
struct ImageInfo {
  std::string format;  ///< "JPEG", "PNG", "BMP", ... ("image" when stb does not say)
  int64_t width = 0, height = 0;
  int channels = 0;    ///< channels stored in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)
};

/// Reads format and size from the header of an encoded image; throws petal::Error naming
/// `name` when it is not an image petal can decode.
ImageInfo decode_image_info(const void* bytes, size_t nbytes, const std::string& name);

/// decode_image_info of a file.
ImageInfo read_image_info(const std::string& path);

/// Decodes an image file (JPEG, PNG, BMP, TGA, GIF, PNM, PSD, HDR as 8-bit) into a uint8
/// [H, W, channels] tensor; channels = 3 converts gray/alpha images to RGB, 0 keeps the
/// file's own channel count. Images of more than max_pixels pixels (width * height, from the
/// header) are refused before decoding; max_pixels <= 0 lifts the limit. A JPEG that
/// libjpeg-turbo flags as corrupt (error or warning) is refused, the same on every run.
/// Throws petal::Error naming the path and the reason.
Tensor read_image(const std::string& path, int channels = 3, int64_t max_pixels = kDefaultMaxImagePixels);

/// Decodes an in-memory encoded image; `name` is used in error messages.
Tensor decode_image(const void* bytes, size_t nbytes, const std::string& name, int channels = 3,
                    int64_t max_pixels = kDefaultMaxImagePixels);

/// read_image then to_float_chw: a float32 [C, H, W] tensor with values in [0, 1].
Tensor read_image_float(const std::string& path, int64_t max_pixels = kDefaultMaxImagePixels);

/// uint8 [H, W, C] -> float32 [C, H, W] scaled to [0, 1] (torchvision's ToTensor).
Tensor to_float_chw(const Tensor& hwc_u8);

/// float [C, H, W] in [0, 1] -> uint8 [H, W, C] (clamped, rounded to nearest).
Tensor to_uint8_hwc(const Tensor& chw_float);

/// Writes an image file; the format follows the extension (.png, .jpg/.jpeg, .bmp, .tga).
/// Accepts uint8 [H, W, C] or float [C, H, W] in [0, 1] with C in {1, 3, 4}. The file is
/// written to a temporary name and renamed, so a reader never sees a partial image.
void write_image(const std::string& path, const Tensor& image, int jpeg_quality = 92);

}  // namespace petal::data
