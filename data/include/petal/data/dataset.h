// Datasets of labelled images: the Dataset interface the DataLoader reads, ImageFolder
// (torchvision's: one sub-folder per class, classes sorted by name), and the seed's
// stratified train/val split.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <petal/data/image.h>
#include <petal/data/rng.h>
#include <petal/data/transforms.h>
#include <petal/tensor.h>

namespace petal::data {

/// One image file and its class index.
struct Sample {
  std::string path;
  int64_t label = 0;
};

/// One loaded example: the transformed image and its label.
struct Example {
  Tensor image;
  int64_t label = 0;
};

/// Random-access dataset. get() must be safe to call from several threads at once.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  /// Loads example `index`; random transforms draw from rng.
  virtual Example get(size_t index, Rng& rng) const = 0;
};

/// Image files with labels, decoded and transformed on access (the seed's MyDataSet).
/// Images of more than max_image_pixels pixels are refused (read_image's bomb limit).
class ImageDataset : public Dataset {
 public:
  ImageDataset(std::vector<Sample> samples, TransformPtr transform, int64_t max_image_pixels = kDefaultMaxImagePixels);
  size_t size() const override { return samples_.size(); }
  Example get(size_t index, Rng& rng) const override;
  const std::vector<Sample>& samples() const { return samples_; }

 private:
  std::vector<Sample> samples_;
  TransformPtr transform_;
  int64_t max_image_pixels_;
};

/// File extensions ImageFolder accepts (lower case, with the dot).
const std::vector<std::string>& image_extensions();

/// A folder of class folders: root/<class>/**/<image>. Classes are the sorted names of the
/// sub-folders of root (hidden ones skipped); samples are every image file (by extension,
/// case-insensitive) below each class folder, sorted by path, labelled by class index.
/// Throws petal::Error naming the path when root is missing or not a folder (or a symlink
/// loop), has fewer than options.min_classes class folders, or a class folder has no images.
///
/// Symbolic links are followed, but every directory and file is identified by device and
/// inode: a link back to a folder being scanned (`daisy/loop -> ..`, `daisy/self -> .`) or to
/// a folder already scanned is skipped, a file reached twice in one class is counted once
/// (each skip is listed in warnings()), and one file reached from two classes is an error.
struct ImageFolderOptions {
  /// Fewer classes is an error: a one-class "classifier" trains to loss 0 and learns nothing.
  size_t min_classes = 2;
  /// read_image's decompression-bomb limit for every sample (<= 0: no limit).
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

class ImageFolder : public Dataset {
 public:
  explicit ImageFolder(const std::string& root, TransformPtr transform = nullptr, const ImageFolderOptions& options = {});
  size_t size() const override { return samples_.size(); }
  Example get(size_t index, Rng& rng) const override;

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  std::map<std::string, int64_t> class_to_idx() const;
  const std::vector<Sample>& samples() const { return samples_; }
  /// Number of samples of each class, in class order.
  std::vector<int64_t> class_counts() const;
  /// What the scan skipped and why (symlink cycles, files reached twice, dangling links).
  const std::vector<std::string>& warnings() const { return warnings_; }
  const ImageFolderOptions& options() const { return options_; }

 private:
  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::vector<Sample> samples_;
  std::vector<std::string> warnings_;
  TransformPtr transform_;
};

struct Split {
  std::vector<Sample> train;
  std::vector<Sample> val;
};

/// The seed's read_split_data: for each class, int(count * val_ratio) of its samples,
/// drawn at random with the given seed, go to val and the rest to train; both lists keep
/// the input order. Throws when val_ratio is outside [0, 1).
Split split_samples(const std::vector<Sample>& samples, double val_ratio, uint64_t seed);

}  // namespace petal::data
