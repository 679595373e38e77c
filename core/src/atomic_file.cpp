// AtomicFile: write to "<path>.tmp.<pid>", check each write, fsync, rename (see atomic_file.h).
// The temporary sits in the target's directory so the rename never crosses file systems.
// Stale temporaries are recognized by name (a decimal pid after ".tmp.") and by kill(pid, 0)
// reporting ESRCH: a pid reused by another live process keeps its file, which is the safe side.
#include <petal/atomic_file.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <petal/error.h>

namespace petal {

namespace {
std::string errno_str(int err) { return std::strerror(err); }
}  // namespace

std::string atomic_temp_path(const std::string& path) {
  return path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temp_(atomic_temp_path(path_)) {
  PETAL_CHECK(!path_.empty(), "write: empty file name");
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PETAL_CHECK(fd_ >= 0, "cannot write '", path_, "': cannot create temporary file '", temp_, "': ", errno_str(errno));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t len) {
  PETAL_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file is already closed");
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd_, p, std::min<size_t>(len, size_t(1) << 30));
    if (n < 0 && errno == EINTR) continue;
    PETAL_CHECK(n > 0, "cannot write '", path_, "': write to '", temp_, "' failed: ",
                n < 0 ? errno_str(errno) : std::string("no progress"));
    p += n;
    len -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  PETAL_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file is already closed");
  PETAL_CHECK(::fsync(fd_) == 0, "cannot write '", path_, "': fsync of '", temp_, "' failed: ", errno_str(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  PETAL_CHECK(rc == 0, "cannot write '", path_, "': closing '", temp_, "' failed: ", errno_str(errno));
  PETAL_CHECK(::rename(temp_.c_str(), path_.c_str()) == 0, "cannot write '", path_, "': renaming '", temp_,
              "' failed: ", errno_str(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return removed;
  const pid_t self = ::getpid();
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  for (const std::string& name : names) {
    const auto pos = name.rfind(".tmp.");
    if (pos == std::string::npos || pos == 0) continue;
    const std::string digits = name.substr(pos + 5);
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == self) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to signal): keep
    const std::string full = dir + "/" + name;
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::unlink(full.c_str()) == 0) removed.push_back(full);
  }
  return removed;
}

}  // namespace petal
