// predict's outputs: the "daisy: 97.31%" line (and picture title, plot.h), and the CSV of a
// folder of images: path,class,confidence,top_k, where top_k lists "name:probability" pairs
// separated by ';', best first.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer.h"

namespace vit_flowers {

/// "daisy: 97.31%" (the seed's demo.py title).
std::string prediction_title(const std::string& name, double probability);

/// The image files below dir (ImageFolder's extensions, case-insensitive), sorted by path.
/// Throws petal::Error naming dir when it is not a folder or holds no image.
std::vector<std::string> list_images(const std::string& dir);

/// One CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
std::string csv_field(const std::string& s);

/// Classifies every image below dir and writes csv_path atomically. An image that cannot be
/// read is a row with class "error" and the reason in top_k (the others still count).
/// Returns the number of images classified.
int64_t predict_folder(const Predictor& predictor, const std::string& dir, const std::string& csv_path, int64_t top_k,
                       std::ostream& log);

}  // namespace vit_flowers
