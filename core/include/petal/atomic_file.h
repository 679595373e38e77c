// Checked, atomic file writes: every file petal writes (safetensors, checkpoints, images,
// JSON) goes through AtomicFile, which writes "<path>.tmp.<pid>", checks every write, fsyncs,
// and renames it over <path> only once complete. A failure (full disk, I/O error, a crash)
// leaves <path> with its previous contents; an uncommitted temporary is removed, and those
// left by killed processes are removed by remove_stale_temporaries.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace petal {

/// A file being written atomically; commit() publishes it, destruction without commit()
/// discards it. Every method throws petal::Error naming the file on failure.
class AtomicFile {
 public:
  /// Creates the temporary "<path>.tmp.<pid>" (truncating a leftover of this process).
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends len bytes (retrying short writes; ENOSPC and other errors throw).
  void write(const void* data, size_t len);
  void write(const std::string& text) { write(text.data(), text.size()); }
  /// fsync, close and rename over the target path.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

/// The temporary name AtomicFile uses for path in this process: "<path>.tmp.<pid>".
std::string atomic_temp_path(const std::string& path);

/// Writes contents to path atomically (AtomicFile, write, commit).
void write_file_atomic(const std::string& path, const std::string& contents);

/// Removes the "<name>.tmp.<pid>" files directly in dir whose process <pid> no longer runs
/// (left by a killed writer); temporaries of live processes are kept. Returns the paths
/// removed. A missing dir is not an error.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

}  // namespace petal
