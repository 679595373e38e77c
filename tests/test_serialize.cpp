// safetensors: bit-exact round trips of every dtype and odd shapes (files and in-memory
// images, non-contiguous views, tensors on other devices), the on-disk layout, every
// malformed-file case (crafted byte by byte here) giving an error that names the file,
// the key and the problem, and atomic writes leaving an existing file intact on failure.
#include <petal/serialize.h>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "testing.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using namespace petal;

namespace {

// A fresh scratch directory per test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("petal_test_serialize_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Tensor of dtype whose bytes are seeded random bit patterns (bool: 0/1), so a round trip
// is checked on every bit, NaN payloads and subnormals included.
Tensor random_bits(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor t = empty(shape, TensorOptions(dtype, kCPU));
  std::mt19937 rng(seed);
  auto* p = static_cast<unsigned char*>(t.data_ptr());
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(dtype == DType::b8 ? rng() & 1u : rng() & 0xffu);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor ca = a.cpu().contiguous(), cb = b.cpu().contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors image from a header text and a data section (header length little-endian).
std::string craft(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::vector<std::string> leftover_temporaries(const TempDir& dir) {
  std::vector<std::string> r;
  for (const auto& e : fs::directory_iterator(dir.path))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) r.push_back(e.path().string());
  return r;
}

const DType kAllDTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                            DType::i32, DType::i64, DType::u8,   DType::b8};

}  // namespace

TEST_CASE("safetensors round trip of every dtype and odd shapes", "[serialize]") {
  TempDir dir;
  const std::vector<Shape> shapes = {{}, {1}, {7}, {0}, {3, 0, 2}, {3, 5, 2}, {1, 197, 3}, {2, 1, 1, 5}};
  TensorMap tensors;
  uint32_t seed = 1;
  for (DType dt : kAllDTypes) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      tensors[std::string(dtype_name(dt)) + ".s" + std::to_string(i)] = random_bits(shapes[i], dt, seed++);
    }
  }
  SafetensorsMetadata meta{{"format", "pt"}, {"note", "unicode \xc3\xa9 and \"quotes\""}, {"epoch", "7"}};
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors, meta);

  SafetensorsContents back = load_safetensors_contents(path);
  REQUIRE(back.tensors.size() == tensors.size());
  for (const auto& kv : tensors) {
    INFO("tensor " << kv.first);
    REQUIRE(back.tensors.count(kv.first) == 1);
    const Tensor& t = back.tensors.at(kv.first);
    CHECK(t.device() == kCPU);
    CHECK((t.numel() == 0 || t.is_contiguous()));
    CHECK(same_bytes(t, kv.second));
  }
  CHECK(back.metadata == meta);
  CHECK(load_safetensors_metadata(path) == meta);
  CHECK(load_safetensors(path).size() == tensors.size());

  // The in-memory image is exactly the file.
  const std::string bytes = safetensors_to_bytes(tensors, meta);
  CHECK(bytes == read_all(path));
  SafetensorsContents from_mem = safetensors_from_bytes(bytes);
  for (const auto& kv : tensors) CHECK(same_bytes(from_mem.tensors.at(kv.first), kv.second));
}

TEST_CASE("safetensors layout: padded header and little-endian length and offsets in name order", "[serialize]") {
  Tensor a = tensor({1.5f, -2.0f, 3.25f}, {3});
  Tensor b = tensor(std::vector<int64_t>{7, -9}, {2, 1});
  const std::string bytes = safetensors_to_bytes({{"b", b}, {"a", a}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 12 + 16);
  const std::string header = bytes.substr(8, n);
  CHECK(header.find("\"a\":{\"data_offsets\":[0,12],\"dtype\":\"F32\",\"shape\":[3]}") != std::string::npos);
  CHECK(header.find("\"b\":{\"data_offsets\":[12,28],\"dtype\":\"I64\",\"shape\":[2,1]}") != std::string::npos);
  float a1;
  std::memcpy(&a1, bytes.data() + 8 + n + 4, 4);
  CHECK(a1 == -2.0f);
  int64_t b1;
  std::memcpy(&b1, bytes.data() + 8 + n + 12 + 8, 8);
  CHECK(b1 == -9);
}

TEST_CASE("safetensors saves non-contiguous views and tensors on every device", "[serialize]") {
  TempDir dir;
  auto dev = GENERATE(from_range(testing::test_devices()));
  INFO("device " << dev);
  Tensor base = testing::random_input({5, 7}, 11, DType::f32, Device(dev));
  Tensor strided = testing::non_contiguous_copy(base);  // every other element of a wider row
  Tensor transposed = base.t();
  Tensor sliced = base.slice(0, 1, 5, 2).narrow(1, 2, 3);
  Tensor grad_leaf = base.clone().requires_grad_(true);
  REQUIRE_FALSE(strided.is_contiguous());
  REQUIRE_FALSE(transposed.is_contiguous());
  const std::string path = dir.file("views.safetensors");
  save_safetensors(path, {{"strided", strided}, {"transposed", transposed}, {"sliced", sliced}, {"leaf", grad_leaf}});
  TensorMap back = load_safetensors(path);
  testing::check_close(back.at("strided"), base.to(kCPU, DType::f64), 0.0, "strided");
  testing::check_close(back.at("transposed"), transposed.to(kCPU, DType::f64), 0.0, "transposed");
  testing::check_close(back.at("sliced"), sliced.to(kCPU, DType::f64), 0.0, "sliced");
  testing::check_close(back.at("leaf"), base.to(kCPU, DType::f64), 0.0, "leaf");
  CHECK(back.at("transposed").shape() == Shape{7, 5});
  CHECK_FALSE(back.at("leaf").requires_grad());
}

TEST_CASE("safetensors reads a header with empty metadata and trailing padding", "[serialize]") {
  // Written by hand as another writer might: spaces after the JSON, null-free metadata.
  std::string data(8, '\0');
  double v = 0.125;
  std::memcpy(data.data(), &v, 8);
  auto c = safetensors_from_bytes(
      craft(R"({"__metadata__":{},"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}      )", data));
  REQUIRE(c.tensors.size() == 1);
  CHECK(c.tensors.at("x").dtype() == DType::f64);
  CHECK(c.tensors.at("x").item<double>() == 0.125);
  CHECK(c.metadata.empty());
}

TEST_CASE("safetensors rejects malformed files with errors naming the problem", "[serialize]") {
  TempDir dir;
  const std::string good_header = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                                  R"("b":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}})";
  const std::string data(36, '\x11');
  // The well-formed image loads (so each failure below is due to its one defect).
  REQUIRE(safetensors_from_bytes(craft(good_header, data)).tensors.size() == 2);

  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> message_parts;
  };
  const std::string good = craft(good_header, data);
  std::string huge_len(8, '\0');
  huge_len[0] = '\x40';  // header length 64 with only 3 bytes after it
  std::vector<Case> cases = {
      {"shorter than 8 bytes", std::string("\x05\x00\x00", 3), {"truncated", "too short"}},
      {"empty file", std::string(), {"truncated"}},
      {"header length past the end", huge_len + "{}x", {"truncated", "header length 64", "larger than"}},
      {"header length absurd", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", {"header length", "limit"}},
      {"data section truncated", good.substr(0, good.size() - 5), {"'b'", "past the end", "truncated"}},
      {"bad JSON", craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})", data.substr(0, 24)),
       {"malformed JSON"}},
      {"not JSON at all", craft("hello world!", ""), {"malformed JSON"}},
      {"header not an object", craft("[1,2]", ""), {"malformed JSON"}},
      {"unknown dtype", craft(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", std::string(4, 'a')),
       {"'w'", "unknown or unsupported dtype 'F8_E4M3'"}},
      {"dtype not a string", craft(R"({"w":{"dtype":4,"shape":[4],"data_offsets":[0,4]}})", std::string(4, 'a')),
       {"'w'", "'dtype' must be a string"}},
      {"missing shape", craft(R"({"w":{"dtype":"U8","data_offsets":[0,4]}})", std::string(4, 'a')),
       {"'w'", "missing field 'shape'"}},
      {"negative dimension", craft(R"({"w":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", std::string(4, 'a')),
       {"'w'", "non-negative integers"}},
      {"offsets size mismatch",
       craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]},"b":{"dtype":"F32","shape":[3],)"
             R"("data_offsets":[20,32]}})", data.substr(0, 32)),
       {"'w'", "span 20 bytes", "[2, 3]", "needs 24 bytes"}},
      {"offsets past the data section",
       craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],)"
             R"("data_offsets":[36,48]}})", data),
       {"'b'", "past the end"}},
      {"offsets reversed", craft(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", std::string(4, 'a')),
       {"'w'", "end before begin"}},
      {"offsets malformed", craft(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0]}})", std::string(4, 'a')),
       {"'w'", "'data_offsets' must be [begin, end]"}},
      {"overlapping tensors",
       craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],)"
             R"("data_offsets":[12,24]}})", data.substr(0, 24)),
       {"overlap", "'b'", "'w'"}},
      {"gap between tensors",
       craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],)"
             R"("data_offsets":[28,40]}})", data + "0000"),
       {"gap", "[24, 28)", "'b'"}},
      {"trailing bytes", good + "junk", {"trailing bytes"}},
      {"duplicate key",
       craft(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"w":{"dtype":"F32","shape":[3],)"
             R"("data_offsets":[12,24]}})", data.substr(0, 24)),
       {"duplicate key 'w'"}},
      {"metadata value not a string",
       craft(R"({"__metadata__":{"epoch":3},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
             std::string(4, 'a')),
       {"'__metadata__'", "'epoch'", "must be a string"}},
      {"unknown field", craft(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1}})", std::string(4, 'a')),
       {"'w'", "unknown field 'x'"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO("case: " << c.what);
    const std::string path = dir.file("bad" + std::to_string(i) + ".safetensors");
    write_all(path, c.bytes);
    try {
      load_safetensors(path);
      FAIL("no error for a file with " << c.what);
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO("message: " << msg);
      CHECK(msg.find(path) != std::string::npos);  // names the file
      for (const auto& part : c.message_parts) {
        INFO("expected to contain: " << part);
        CHECK(msg.find(part) != std::string::npos);
      }
    }
    // The metadata-only reader validates the same way.
    CHECK_THROWS_AS(load_safetensors_metadata(path), Error);
  }
  CHECK_THROWS_WITH(load_safetensors(dir.file("missing.safetensors")),
                    Contains("cannot open") && Contains("missing.safetensors"));
  CHECK_THROWS_WITH(load_safetensors(dir.path.string()), Contains("not a regular file"));
}

TEST_CASE("safetensors save rejects bad input before touching the file", "[serialize]") {
  TempDir dir;
  const std::string path = dir.file("keep.safetensors");
  save_safetensors(path, {{"x", tensor({1.0f, 2.0f})}});
  const std::string before = read_all(path);
  CHECK_THROWS_WITH(save_safetensors(path, {{"x", tensor({3.0f})}, {"y", Tensor()}}),
                    Contains("'y'") && Contains("undefined") && Contains(path));
  CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", tensor({3.0f})}}), Contains("reserved"));
  CHECK(read_all(path) == before);
  CHECK(leftover_temporaries(dir).empty());
}

TEST_CASE("safetensors write is atomic: a failed write leaves the old file intact", "[serialize]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  Tensor old_value = testing::random_input({4, 3}, 5, DType::f32);
  save_safetensors(path, {{"w", old_value}}, {{"version", "old"}});
  const std::string before = read_all(path);

  SECTION("the disk fills up in the middle of the data") {
    // Limit the size of files this process may write: the write of the 64 KB tensor fails
    // with EFBIG partway through (SIGXFSZ ignored so the write returns an error instead).
    struct rlimit saved;
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limited = saved;
    limited.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    bool threw = false;
    std::string msg;
    try {
      save_safetensors(path, {{"w", testing::random_input({128, 128}, 6, DType::f32)}}, {{"version", "new"}});
    } catch (const Error& e) {
      threw = true;
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    INFO("message: " << msg);
    CHECK(threw);
    CHECK(msg.find("write to") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
  }
  SECTION("the final rename fails") {
    // A directory where the temporary's rename target would be: make the destination a
    // non-empty directory (the old file moves inside it, to check it is untouched).
    const std::string blocked = dir.file("blocked");
    fs::create_directories(blocked);
    write_all(blocked + "/inner", "x");
    CHECK_THROWS_WITH(save_safetensors(blocked, {{"w", tensor({1.0f})}}), Contains("renaming") && Contains(blocked));
    CHECK(fs::is_directory(blocked));
    CHECK(read_all(blocked + "/inner") == "x");
  }
  // The old file is byte-for-byte what it was, still loads, and no temporary is left.
  CHECK(read_all(path) == before);
  auto back = load_safetensors_contents(path);
  CHECK(back.metadata.at("version") == "old");
  CHECK(same_bytes(back.tensors.at("w"), old_value));
  CHECK(leftover_temporaries(dir).empty());

  // A successful save replaces the file.
  save_safetensors(path, {{"w", tensor({9.0f})}}, {{"version", "new"}});
  CHECK(load_safetensors_metadata(path).at("version") == "new");
  CHECK(leftover_temporaries(dir).empty());
}
