// predict's line, folder CSV (see predict.h).
#include "predict.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <ostream>

namespace vit_flowers {

std::string prediction_title(const std::string& name, double probability) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f%%", probability * 100.0);
  return name + ": " + buf;
}

std::vector<std::string> list_images(const std::string& dir) {
  namespace fs = std::filesystem;
  PETAL_CHECK(fs::is_directory(dir), "vit_flowers predict: '", dir, "' is not a folder");
  std::vector<std::string> files;
  const auto& exts = petal::data::image_extensions();
  for (const auto& entry : fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  PETAL_CHECK(!files.empty(), "vit_flowers predict: no image files in '", dir, "'");
  return files;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

int64_t predict_folder(const Predictor& predictor, const std::string& dir, const std::string& csv_path, int64_t top_k,
                       std::ostream& log) {
  const std::vector<std::string> files = list_images(dir);
  std::string csv = "path,class,confidence,top_k\n";
  int64_t done = 0;
  for (const std::string& f : files) {
    try {
      const auto ranked = predictor.classify_file(f, top_k);
      std::string top;
      char buf[32];
      for (const auto& [name, p] : ranked) {
        std::snprintf(buf, sizeof(buf), "%.6f", p);
        top += (top.empty() ? "" : ";") + name + ":" + buf;
      }
      std::snprintf(buf, sizeof(buf), "%.6f", ranked.front().second);
      csv += csv_field(f) + "," + csv_field(ranked.front().first) + "," + buf + "," + csv_field(top) + "\n";
      log << f << ": " << prediction_title(ranked.front().first, ranked.front().second) << "\n";
      ++done;
    } catch (const petal::Error& e) {
      csv += csv_field(f) + ",error,," + csv_field(e.what()) + "\n";
      log << f << ": error: " << e.what() << "\n";
    }
  }
  petal::write_file_atomic(csv_path, csv);
  return done;
}

}  // namespace vit_flowers
