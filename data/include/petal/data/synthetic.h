// Synthetic flower photos: a procedural stand-in for the flower_photos dataset (5 classes:
// daisy, dandelion, roses, sunflowers, tulips) for machines without the real data. Each
// class has its own structure, not just its own colour: daisies have many long thin white
// petals around a yellow disc; dandelions a dense puff of very many short fine yellow
// rays; roses concentric rings of broad overlapping petals in red/pink/white; sunflowers a
// large dark disc with a ring of pointed yellow-orange petals; tulips a closed cup of a
// few broad petals on a stem, seen from the side, in several colours. Colours overlap
// between classes (yellow tulips, yellow dandelions and sunflowers; white roses and
// daisies), and every image has a random background (sky, grass, soil; gradient and
// blotches), position, size, rotation, petal count, colour jitter, pixel noise and
// sometimes a second flower, so the classes are learnable but not trivially.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <petal/data/rng.h>
#include <petal/tensor.h>

namespace petal::data {

/// The five flower_photos class names, in ImageFolder (sorted) order.
const std::vector<std::string>& flower_classes();

/// Renders one size x size RGB image of class `label` (index into flower_classes()) as a
/// uint8 [size, size, 3] tensor; the same rng state gives the same image.
Tensor render_synthetic_flower(int64_t label, int64_t size, Rng& rng);

struct SyntheticFlowersOptions {
  int64_t per_class = 100;
  int64_t size = 64;
  uint64_t seed = 0;
  std::string format = "jpg";  ///< "jpg" or "png"
  int jpeg_quality = 92;
  int num_threads = 0;         ///< 0: hardware concurrency
};

/// Writes root/<class>/<class>_<index>.<format> for every class (the folders are created,
/// existing files are overwritten). Image (class c, index i) depends only on (seed, c, i).
/// Returns the number of files written.
int64_t make_synthetic_flowers(const std::string& root, const SyntheticFlowersOptions& options);
/// Shorthand with the defaults for the rest.
int64_t make_synthetic_flowers(const std::string& root, int64_t per_class, int64_t size, uint64_t seed);

}  // namespace petal::data
