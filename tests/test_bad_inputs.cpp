// The corpus of bad inputs: tests/bad_inputs/make_corpus.py builds it (at test time, into a
// fresh temporary folder) with a manifest saying what petal must do with every case; this
// test holds the image decoders, ImageFolder and the weight loaders to it. Every refusal must
// name the file. Mutated JPEGs may decode or fail, but identically on every decode (the stb
// decoder used before libjpeg-turbo did not). Also: AtomicFile and stale temporaries.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>
#include <petal/data.h>

#include "testing.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace petal;

namespace {

struct Corpus {
  fs::path dir;
  json cases;
  Corpus() {
    static std::atomic<int> counter{0};
    dir = fs::temp_directory_path() / ("petal_bad_inputs_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    const std::string cmd = "python3 '" + std::string(PETAL_SOURCE_DIR) + "/tests/bad_inputs/make_corpus.py' '" +
                            dir.string() + "' > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream in(dir / "manifest.json");
    REQUIRE(in.good());
    cases = json::parse(in).at("cases");
    REQUIRE(cases.size() > 100);
  }
  ~Corpus() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const json& c) const { return (dir / c.at("file").get<std::string>()).string(); }
};

// The message of the petal::Error that f throws, or "" when it returns.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_contains(const std::string& message, const json& c, const std::string& file) {
  INFO("case " << c.at("file") << " (" << c.at("why") << "): " << message);
  CHECK(!message.empty());
  CHECK(message.find(file) != std::string::npos);
  for (const auto& s : c.value("contains", json::array())) CHECK(message.find(s.get<std::string>()) != std::string::npos);
}

}  // namespace

TEST_CASE("bad images: every case of the corpus gives its documented result", "[data][bad_inputs]") {
  Corpus corpus;
  int images = 0, mutated_ok = 0, mutated_err = 0;
  for (const json& c : corpus.cases) {
    if (c.at("kind") != "image") continue;
    ++images;
    const std::string file = corpus.path(c);
    const int64_t max_pixels = c.value("max_pixels", data::kDefaultMaxImagePixels);
    const std::string expect = c.at("expect");
    INFO("case " << c.at("file") << ": " << c.at("why"));
    if (expect == "ok") {
      Tensor img = data::read_image(file, 3, max_pixels);
      REQUIRE(img.shape() == c.at("shape").get<Shape>());
      const int64_t W = img.size(1), C = img.size(2);
      for (const auto& p : c.at("pixels")) {
        const int64_t y = p[0], x = p[1], ch = p[2];
        CHECK(int(img.data<uint8_t>()[(y * W + x) * C + ch]) == p[3].get<int>());
      }
      const data::ImageInfo info = data::read_image_info(file);
      CHECK(info.width == W);
      CHECK(info.height == img.size(0));
    } else if (expect == "error") {
      check_contains(error_of([&] { data::read_image(file, 3, max_pixels); }), c, file);
    } else {
      REQUIRE(expect == "deterministic");
      // Decoded three times, interleaved with other files, as a DataLoader worker would.
      std::string first_error;
      Tensor first;
      for (int rep = 0; rep < 3; ++rep) {
        Tensor img;
        const std::string err = error_of([&] { img = data::read_image(file); });
        if (rep == 0) {
          first_error = err;
          first = img;
          if (!err.empty()) CHECK(err.find(file) != std::string::npos);
        } else {
          CHECK(err == first_error);
          if (err.empty()) {
            REQUIRE(img.shape() == first.shape());
            CHECK(std::memcmp(img.data_ptr(), first.data_ptr(), static_cast<size_t>(img.numel())) == 0);
          }
        }
        data::read_image(corpus.path(corpus.cases[0]));  // another decode in between
      }
      (first_error.empty() ? mutated_ok : mutated_err)++;
    }
  }
  CHECK(images > 100);
  // The mutations must exercise both outcomes, or they test nothing.
  CHECK(mutated_ok > 0);
  CHECK(mutated_err > 0);
}

TEST_CASE("bad datasets: symlink cycles, shared files, one class, a looping root", "[data][bad_inputs]") {
  Corpus corpus;
  int folders = 0;
  for (const json& c : corpus.cases) {
    if (c.at("kind") != "folder") continue;
    ++folders;
    const std::string root = corpus.path(c);
    INFO("case " << c.at("file") << ": " << c.at("why"));
    if (c.at("expect") == "ok") {
      data::ImageFolder folder(root);
      CHECK(folder.size() == c.at("size").get<size_t>());
      CHECK(folder.classes() == c.at("classes").get<std::vector<std::string>>());
      CHECK(folder.class_counts() == c.at("counts").get<std::vector<int64_t>>());
      std::set<std::string> paths;
      for (const auto& s : folder.samples()) paths.insert(fs::canonical(s.path).string());
      CHECK(paths.size() == folder.size());  // no file counted twice
      bool warned = false;
      for (const auto& w : folder.warnings()) warned |= w.find(c.at("warning").get<std::string>()) != std::string::npos;
      CHECK(warned);
    } else {
      check_contains(error_of([&] { data::ImageFolder f(root); }), c, root);
    }
  }
  CHECK(folders >= 6);
}

TEST_CASE("bad weights: non-finite tensors are refused by name", "[serialize][bad_inputs]") {
  Corpus corpus;
  int n = 0;
  for (const json& c : corpus.cases) {
    if (c.at("kind") != "safetensors") continue;
    ++n;
    const std::string file = corpus.path(c);
    TensorMap t = load_safetensors(file);
    const std::string err = error_of([&] { check_finite(t, "weights '" + file + "'"); });
    if (c.at("expect") == "ok") {
      CHECK(err.empty());
    } else {
      check_contains(err, c, file);
    }
  }
  CHECK(n == 3);
}

TEST_CASE("AtomicFile publishes only complete files and stale temporaries are removed", "[serialize][bad_inputs]") {
  const fs::path dir = fs::temp_directory_path() / ("petal_atomic_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string target = (dir / "class_indices.json").string();
  write_file_atomic(target, "old contents\n");
  {
    AtomicFile f(target);
    f.write("new, never committed");
    CHECK(fs::exists(f.temp_path()));
  }  // destroyed without commit: the old file stays, the temporary is gone
  std::ifstream in(target);
  CHECK(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()) == "old contents\n");
  CHECK(!fs::exists(atomic_temp_path(target)));

  // A write that fails (a full device) throws naming the file and keeps the old contents:
  // the temporary is made a link to /dev/full, where every write fails with ENOSPC.
  if (fs::exists("/dev/full")) {
    fs::create_symlink("/dev/full", atomic_temp_path(target));
    CHECK_THROWS_WITH(write_file_atomic(target, "new contents"),
                      Catch::Contains(target) && Catch::Contains("No space left"));
    std::ifstream again(target);
    CHECK(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()) == "old contents\n");
    CHECK(!fs::exists(atomic_temp_path(target)));
  }

  // Stale temporaries: one of a process that has exited, one of this (live) process.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string dead = (dir / ("checkpoint-last.safetensors.tmp." + std::to_string(child))).string();
  const std::string live = atomic_temp_path((dir / "model-best.safetensors").string());
  const std::string other = (dir / "notes.tmp.txt").string();
  for (const auto& p : {dead, live, other}) write_file_atomic(p, "partial");
  const auto removed = remove_stale_temporaries(dir.string());
  CHECK(removed == std::vector<std::string>{dead});
  CHECK(!fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(other));
  fs::remove_all(dir);
}
