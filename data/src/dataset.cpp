// ImageFolder scanning, the image dataset, and the seed's stratified train/val split.
// The scan is a depth-first walk that stat()s every entry (following symlinks) and keys
// directories and files by (device, inode): a directory already on the walk's path or
// already scanned is a cycle or a second route and is skipped, so a symlink loop cannot
// multiply a class, and a file is never counted twice.
#include <petal/data/dataset.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

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

using FileId = std::pair<dev_t, ino_t>;

Example load_example(const Sample& s, const TransformPtr& transform, Rng& rng, int64_t max_pixels) {
  Tensor img = read_image(s.path, 3, max_pixels);
  Tensor out;
  try {
    out = transform ? transform->apply(img, rng) : to_float_chw(img);
  } catch (const Error& e) {
    PETAL_FAIL("while transforming '", s.path, "': ", e.what());
  }
  return {out, s.label};
}

// The state of one ImageFolder scan.
struct Scan {
  std::set<FileId> scanned_dirs;                 // every directory entered so far
  std::map<FileId, std::pair<std::string, size_t>> files;  // file -> (first path, class)
  std::vector<std::string>* warnings;

  // Collects the image files under dir (whose id is dir_id) for class c into out.
  void walk(const fs::path& dir, FileId dir_id, size_t c, const std::string& class_name, std::vector<FileId>& stack,
            std::vector<std::string>& out) {
    stack.push_back(dir_id);
    scanned_dirs.insert(dir_id);
    std::error_code ec;
    std::vector<fs::path> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
    PETAL_CHECK(!ec, "ImageFolder: cannot list '", dir.string(), "': ", ec.message());
    std::sort(entries.begin(), entries.end());
    for (const fs::path& p : entries) {
      struct stat st;
      if (::stat(p.c_str(), &st) != 0) {
        const int err = errno;
        if (err == ELOOP) {
          warnings->push_back("skipped '" + p.string() + "': symlink loop (" + std::strerror(err) + ")");
        } else if (is_image_file(p)) {
          warnings->push_back("skipped '" + p.string() + "': " + std::strerror(err) + " (dangling symlink?)");
        }
        continue;
      }
      const FileId id{st.st_dev, st.st_ino};
      if (S_ISDIR(st.st_mode)) {
        if (std::find(stack.begin(), stack.end(), id) != stack.end()) {
          warnings->push_back("skipped '" + p.string() + "': symlink cycle (it leads back to a folder that contains it)");
        } else if (scanned_dirs.count(id)) {
          warnings->push_back("skipped '" + p.string() + "': a second route to a folder already scanned");
        } else {
          walk(p, id, c, class_name, stack, out);
        }
        continue;
      }
      if (!S_ISREG(st.st_mode) || !is_image_file(p)) continue;
      auto [it, fresh] = files.emplace(id, std::make_pair(p.string(), c));
      if (!fresh) {
        PETAL_CHECK(it->second.second == c, "ImageFolder: '", p.string(), "' (class '", class_name,
                    "') is the same file as '", it->second.first, "' of another class; a file cannot have two labels");
        warnings->push_back("skipped '" + p.string() + "': the same file as '" + it->second.first + "' (counted once)");
        continue;
      }
      out.push_back(p.string());
    }
    stack.pop_back();
  }
};

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".pnm"};
  return exts;
}

ImageDataset::ImageDataset(std::vector<Sample> samples, TransformPtr transform, int64_t max_image_pixels)
    : samples_(std::move(samples)), transform_(std::move(transform)), max_image_pixels_(max_image_pixels) {}

Example ImageDataset::get(size_t index, Rng& rng) const {
  PETAL_CHECK(index < samples_.size(), "ImageDataset: index ", index, " out of range for ", samples_.size(), " samples");
  return load_example(samples_[index], transform_, rng, max_image_pixels_);
}

ImageFolder::ImageFolder(const std::string& root, TransformPtr transform, const ImageFolderOptions& options)
    : root_(root), options_(options), transform_(std::move(transform)) {
  struct stat root_st;
  if (::stat(root.c_str(), &root_st) != 0) {
    const int err = errno;
    PETAL_CHECK(err != ENOENT, "ImageFolder: root '", root, "' does not exist");
    PETAL_FAIL("ImageFolder: cannot open root '", root, "': ", std::strerror(err),
               err == ELOOP ? " (a symlink loop)" : "");
  }
  PETAL_CHECK(S_ISDIR(root_st.st_mode), "ImageFolder: root '", root, "' is not a directory");
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    struct stat st;
    if (::stat(it->path().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) classes_.push_back(name);
  }
  PETAL_CHECK(!ec, "ImageFolder: cannot list '", root, "': ", ec.message());
  PETAL_CHECK(!classes_.empty(), "ImageFolder: root '", root,
              "' has no class folders (expected root/<class>/<image files>)");
  std::sort(classes_.begin(), classes_.end());
  PETAL_CHECK(classes_.size() >= options_.min_classes, "ImageFolder: root '", root, "' has ", classes_.size(),
              " class folder", classes_.size() == 1 ? " ('" + classes_[0] + "')" : std::string(), ", need at least ",
              options_.min_classes, " to train a classifier (expected root/<class>/<image files>, one folder per class)");
  Scan scan;
  scan.warnings = &warnings_;
  const FileId root_id{root_st.st_dev, root_st.st_ino};
  for (size_t c = 0; c < classes_.size(); ++c) {
    const fs::path dir = fs::path(root) / classes_[c];
    struct stat st;
    PETAL_CHECK(::stat(dir.c_str(), &st) == 0, "ImageFolder: cannot open class folder '", dir.string(), "': ",
                std::strerror(errno));
    const FileId id{st.st_dev, st.st_ino};
    PETAL_CHECK(!scan.scanned_dirs.count(id) && id != root_id, "ImageFolder: class folder '", dir.string(),
                "' is the same folder as the root or as another class folder (a symlink?)");
    std::vector<FileId> stack = {root_id};
    std::vector<std::string> files;
    scan.walk(dir, id, c, classes_[c], stack, files);
    PETAL_CHECK(!files.empty(), "ImageFolder: class folder '", dir.string(),
                "' has no image files (extensions .jpg .jpeg .png .bmp .tga .gif .ppm .pgm .pnm)");
    std::sort(files.begin(), files.end());
    for (auto& f : files) samples_.push_back({std::move(f), static_cast<int64_t>(c)});
  }
}

Example ImageFolder::get(size_t index, Rng& rng) const {
  PETAL_CHECK(index < samples_.size(), "ImageFolder: index ", index, " out of range for ", samples_.size(),
              " samples in '", root_, "'");
  return load_example(samples_[index], transform_, rng, options_.max_image_pixels);
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
