// libFuzzer target: petal's image decoding (libjpeg-turbo for JPEG, stb_image for the rest)
// on arbitrary bytes. Any outcome but a clean petal::Error or a well-formed image is a bug:
// a crash, a sanitizer report, or an image whose shape disagrees with its header. The pixel
// limit is small so that header-declared bombs are refused rather than allocated.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <petal/data/image.h>
#include <petal/error.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr int64_t kMaxPixels = 1 << 20;
  petal::data::ImageInfo info;
  try {
    info = petal::data::decode_image_info(data, size, "fuzz input");
  } catch (const petal::Error&) {
    info.width = -1;
  }
  for (int channels : {3, 0}) {
    try {
      petal::Tensor img = petal::data::decode_image(data, size, "fuzz input", channels, kMaxPixels);
      // A decoded image matches what its header said and has the channels asked for.
      if (img.dim() != 3 || img.size(0) <= 0 || img.size(1) <= 0 || img.size(0) * img.size(1) > kMaxPixels) std::abort();
      if (channels != 0 && img.size(2) != channels) std::abort();
      if (info.width >= 0 && (img.size(1) != info.width || img.size(0) != info.height)) std::abort();
    } catch (const petal::Error&) {
    }
  }
  return 0;
}
