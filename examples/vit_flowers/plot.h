// Pictures vit_flowers writes: the training curves (curves.png: loss and accuracy per epoch,
// train and val, redrawn after every epoch) and predict's annotated image (the image with
// "daisy: 97.31%" as its title). Drawing is on an RGB canvas; text is rendered by
// stb_truetype from a TrueType font of Debian's fonts-dejavu-core (DejaVuSans.ttf), found
// at run time ($PETAL_FONT, then the usual font folders). Without a font the pictures are
// drawn without text and a warning says so.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <petal/petal.h>

#include "trainer.h"

namespace vit_flowers {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

/// A TrueType font (the file's bytes and stb_truetype's state).
class Font {
 public:
  /// Loads a .ttf file; throws petal::Error naming it when it is unreadable or not a font.
  explicit Font(const std::string& path);
  ~Font();
  Font(const Font&) = delete;
  Font& operator=(const Font&) = delete;
  const std::string& path() const { return path_; }
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

/// The path of the font pictures use: $PETAL_FONT when set (an error if it does not exist),
/// else the first DejaVuSans.ttf found in the usual folders; "" when there is none.
std::string find_font();
/// The font pictures use, loaded once; nullptr (after one warning on stderr naming the
/// package to install) when find_font() finds none.
const Font* default_font();

class Canvas {
 public:
  Canvas(int64_t width, int64_t height, Rgb background = {255, 255, 255});
  /// From a uint8 [H, W, 3] tensor.
  static Canvas from_image(const petal::Tensor& hwc_u8);
  int64_t width() const { return w_; }
  int64_t height() const { return h_; }
  /// Blends colour into pixel (x, y) with coverage alpha in [0, 1]; outside is ignored.
  void blend(int64_t x, int64_t y, Rgb c, double alpha);
  void fill_rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, Rgb c);
  /// An antialiased line of the given width (pixel centres at integer + 0.5).
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 2.0);
  void disc(double cx, double cy, double radius, Rgb c);
  /// Text with its baseline-left at (x, y) and the given pixel height; returns the advance
  /// width. With font == nullptr nothing is drawn and 0 is returned.
  double text(const Font* font, double x, double y, const std::string& s, double pixel_height, Rgb c);
  /// The width text() would advance.
  static double text_width(const Font* font, const std::string& s, double pixel_height);
  /// Pastes a uint8 [H, W, 3] image with its top-left at (x, y).
  void paste(const petal::Tensor& hwc_u8, int64_t x, int64_t y);
  /// The canvas as a uint8 [H, W, 3] tensor.
  petal::Tensor tensor() const;
  /// Writes a PNG (data::write_image: temporary + rename).
  void save(const std::string& path) const;

 private:
  int64_t w_, h_;
  std::vector<uint8_t> px_;
};

/// The size of curves.png.
constexpr int64_t kCurvesWidth = 1000, kCurvesHeight = 400;
/// Draws loss (left) and accuracy (right) per epoch, train and val, to path (a PNG of
/// kCurvesWidth x kCurvesHeight). Rows with NaN values leave gaps in that curve.
void plot_curves(const std::vector<EpochStats>& rows, const std::string& path, const Font* font);

/// The annotated prediction picture: the image scaled so its longer side is
/// kPredictionSide pixels, under a kTitleHeight-pixel white band with the title centred.
constexpr int64_t kPredictionSide = 448, kTitleHeight = 40;
/// Size of that picture for an image of w x h pixels: {width, height}.
std::pair<int64_t, int64_t> prediction_image_size(int64_t w, int64_t h);
void write_prediction_image(const petal::Tensor& hwc_u8, const std::string& title, const std::string& path,
                            const Font* font);

}  // namespace vit_flowers
