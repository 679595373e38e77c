// ImageFolder scanning, the image dataset, and the seed's stratified train/val split.
#include <petal/data/dataset.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include <petal/data/image.h>
#include <petal/error.h>

namespace fs = std::filesystem;

namespace petal::data {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_image_file(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  const auto& exts = image_extensions();
  return std::find(exts.begin(), exts.end(), ext) != exts.end();
}

Example load_example(const Sample& s, const TransformPtr& transform, Rng& rng) {
  Tensor img = read_image(s.path, 3);
  Tensor out;
  try {
    out = transform ? transform->apply(img, rng) : to_float_chw(img);
  } catch (const Error& e) {
    PETAL_FAIL("while transforming '", s.path, "': ", e.what());
  }
  return {out, s.label};
}

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".pnm"};
  return exts;
}

ImageDataset::ImageDataset(std::vector<Sample> samples, TransformPtr transform)
    : samples_(std::move(samples)), transform_(std::move(transform)) {}

Example ImageDataset::get(size_t index, Rng& rng) const {
  PETAL_CHECK(index < samples_.size(), "ImageDataset: index ", index, " out of range for ", samples_.size(), " samples");
  return load_example(samples_[index], transform_, rng);
}

ImageFolder::ImageFolder(const std::string& root, TransformPtr transform) : root_(root), transform_(std::move(transform)) {
  std::error_code ec;
  PETAL_CHECK(fs::exists(root, ec), "ImageFolder: root '", root, "' does not exist");
  PETAL_CHECK(fs::is_directory(root, ec), "ImageFolder: root '", root, "' is not a directory");
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (entry.is_directory(ec)) classes_.push_back(name);
  }
  PETAL_CHECK(!ec, "ImageFolder: cannot list '", root, "': ", ec.message());
  PETAL_CHECK(!classes_.empty(), "ImageFolder: root '", root,
              "' has no class folders (expected root/<class>/<image files>)");
  std::sort(classes_.begin(), classes_.end());
  for (size_t c = 0; c < classes_.size(); ++c) {
    const fs::path dir = fs::path(root) / classes_[c];
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec) && is_image_file(it->path())) files.push_back(it->path().string());
    }
    PETAL_CHECK(!ec, "ImageFolder: cannot list '", dir.string(), "': ", ec.message());
    PETAL_CHECK(!files.empty(), "ImageFolder: class folder '", dir.string(),
                "' has no image files (extensions .jpg .jpeg .png .bmp .tga .gif .ppm .pgm .pnm)");
    std::sort(files.begin(), files.end());
    for (auto& f : files) samples_.push_back({std::move(f), static_cast<int64_t>(c)});
  }
}

Example ImageFolder::get(size_t index, Rng& rng) const {
  PETAL_CHECK(index < samples_.size(), "ImageFolder: index ", index, " out of range for ", samples_.size(),
              " samples in '", root_, "'");
  return load_example(samples_[index], transform_, rng);
}

std::map<std::string, int64_t> ImageFolder::class_to_idx() const {
  std::map<std::string, int64_t> m;
  for (size_t c = 0; c < classes_.size(); ++c) m[classes_[c]] = static_cast<int64_t>(c);
  return m;
}

std::vector<int64_t> ImageFolder::class_counts() const {
  std::vector<int64_t> counts(classes_.size(), 0);
  for (const auto& s : samples_) ++counts[static_cast<size_t>(s.label)];
  return counts;
}

Split split_samples(const std::vector<Sample>& samples, double val_ratio, uint64_t seed) {
  PETAL_CHECK(val_ratio >= 0.0 && val_ratio < 1.0, "split_samples: val_ratio must be in [0, 1), got ", val_ratio);
  std::map<int64_t, std::vector<size_t>> by_class;
  for (size_t i = 0; i < samples.size(); ++i) by_class[samples[i].label].push_back(i);
  std::vector<bool> is_val(samples.size(), false);
  for (auto& [label, idx] : by_class) {
    const size_t k = static_cast<size_t>(static_cast<double>(idx.size()) * val_ratio);
    // Partial Fisher-Yates: the first k positions become a uniform random k-subset.
    Rng rng = Rng::derive(seed, static_cast<uint64_t>(label));
    for (size_t i = 0; i < k; ++i) {
      size_t j = static_cast<size_t>(rng.randint(static_cast<int64_t>(i), static_cast<int64_t>(idx.size())));
      std::swap(idx[i], idx[j]);
      is_val[idx[i]] = true;
    }
  }
  Split split;
  for (size_t i = 0; i < samples.size(); ++i) (is_val[i] ? split.val : split.train).push_back(samples[i]);
  return split;
}

}  // namespace petal::data
