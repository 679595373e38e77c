// Image files <-> tensors, through stb_image / stb_image_write.
// Decoded images are uint8 tensors [H, W, C] (HWC, row-major, as the file stores them);
// the float form used by models is [C, H, W] in [0, 1] (see to_float_chw). Errors name
// the file and the reason (missing, unreadable, not an image, corrupt).
#pragma once
#include <cstdint>
#include <string>

#include <petal/tensor.h>

namespace petal::data {

/// Decodes an image file (JPEG, PNG, BMP, TGA, GIF, PNM, PSD, HDR as 8-bit) into a uint8
/// [H, W, channels] tensor; channels = 3 converts gray/alpha images to RGB, 0 keeps the
/// file's own channel count. Throws petal::Error naming the path and the reason.
Tensor read_image(const std::string& path, int channels = 3);

/// Decodes an in-memory encoded image; `name` is used in error messages.
Tensor decode_image(const void* bytes, size_t nbytes, const std::string& name, int channels = 3);

/// read_image then to_float_chw: a float32 [C, H, W] tensor with values in [0, 1].
Tensor read_image_float(const std::string& path);

/// uint8 [H, W, C] -> float32 [C, H, W] scaled to [0, 1] (torchvision's ToTensor).
Tensor to_float_chw(const Tensor& hwc_u8);

/// float [C, H, W] in [0, 1] -> uint8 [H, W, C] (clamped, rounded to nearest).
Tensor to_uint8_hwc(const Tensor& chw_float);

/// Writes an image file; the format follows the extension (.png, .jpg/.jpeg, .bmp, .tga).
/// Accepts uint8 [H, W, C] or float [C, H, W] in [0, 1] with C in {1, 3, 4}. The file is
/// written to a temporary name and renamed, so a reader never sees a partial image.
void write_image(const std::string& path, const Tensor& image, int jpeg_quality = 92);

}  // namespace petal::data
