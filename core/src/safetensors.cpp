// safetensors reading and writing. Layout: u64 little-endian header length N, N bytes of
// JSON ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"k": "v"}}), padded with spaces to a multiple of 8, then the data
// section; offsets are relative to the start of the data section.
//
// Loading parses and validates the whole header (nlohmann::json, with a parser callback
// that catches duplicate keys, which the JSON library would otherwise silently merge)
// against the file size before reading a byte of tensor data: dtype known, shape
// non-negative integers, end - begin == numel * element size, and the byte ranges, sorted,
// tile the data section exactly (no gap, no overlap, nothing past the end). Tensor data is
// then read straight into freshly allocated CPU tensors.
//
// Saving streams the header then each tensor (copied to a contiguous CPU tensor one at a
// time, so peak extra memory is one tensor) through AtomicFile ("<path>.tmp.<pid>", every
// write checked, fsync, rename over <path>); on any failure the temporary is removed and
// <path> keeps its old contents. Assumes a little-endian host (checked at compile time).
#include <petal/serialize.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include <petal/atomic_file.h>
#include <petal/autograd.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace petal {

namespace {

using json = nlohmann::json;

// Headers beyond this are rejected as corrupt (the reference implementation uses the same bound).
constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;
const char* const kMetadataKey = "__metadata__";

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::bf16, "BF16"}, {DType::f16, "F16"},
    {DType::i32, "I32"}, {DType::i64, "I64"}, {DType::u8, "U8"},     {DType::b8, "BOOL"},
};

bool dtype_from_name(const std::string& s, DType* out) {
  for (const auto& d : kDTypeNames) {
    if (s == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

std::string errno_str() { return std::strerror(errno); }

// One tensor as described by the header.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

struct Header {
  std::vector<Entry> entries;  // sorted by begin offset
  SafetensorsMetadata metadata;
};

// Parses the JSON header text and checks it against a data section of data_len bytes.
Header parse_header(const std::string& file, const std::string& text, uint64_t data_len) {
  const std::string where = "safetensors file '" + file + "'";
  // Duplicate top-level keys are an error; nlohmann::json would keep only the last one.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, on_event);
  } catch (const json::exception& e) {
    PETAL_FAIL(where, ": malformed JSON header (", e.what(), ")");
  }
  PETAL_CHECK(duplicate.empty(), where, ": duplicate key '", duplicate, "' in the header");
  PETAL_CHECK(header.is_object(), where, ": the header must be a JSON object, got ", header.type_name());

  Header out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == kMetadataKey) {
      PETAL_CHECK(v.is_object() || v.is_null(), where, ": '__metadata__' must be an object of strings, got ",
                  v.type_name());
      if (v.is_null()) continue;
      for (auto m = v.begin(); m != v.end(); ++m) {
        PETAL_CHECK(m.value().is_string(), where, ": '__metadata__' value for key '", m.key(),
                    "' must be a string, got ", m.value().type_name());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = where + ", tensor '" + key + "'";
    PETAL_CHECK(v.is_object(), what, ": entry must be an object, got ", v.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      PETAL_CHECK(v.contains(field), what, ": missing field '", field, "'");
    for (auto f = v.begin(); f != v.end(); ++f)
      PETAL_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", what, ": unknown field '",
                  f.key(), "'");

    Entry e;
    e.name = key;
    const json& dt = v["dtype"];
    PETAL_CHECK(dt.is_string(), what, ": 'dtype' must be a string, got ", dt.type_name());
    PETAL_CHECK(dtype_from_name(dt.get<std::string>(), &e.dtype), what, ": unknown or unsupported dtype '",
                dt.get<std::string>(), "' (petal reads F32, F64, BF16, F16, I32, I64, U8, BOOL)");

    const json& sh = v["shape"];
    PETAL_CHECK(sh.is_array(), what, ": 'shape' must be an array, got ", sh.type_name());
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : sh) {
      PETAL_CHECK(d.is_number_unsigned(), what, ": 'shape' must hold non-negative integers, got ", sh.dump());
      uint64_t s = d.get<uint64_t>();
      PETAL_CHECK(s <= (uint64_t(1) << 62), what, ": dimension ", s, " is too large");
      if (s != 0 && numel > (uint64_t(1) << 62) / s) overflow = true;
      numel *= s;
      e.shape.push_back(static_cast<int64_t>(s));
    }
    PETAL_CHECK(!overflow, what, ": shape ", sh.dump(), " has too many elements");

    const json& off = v["data_offsets"];
    PETAL_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), what,
                ": 'data_offsets' must be [begin, end] with non-negative integers, got ", off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    PETAL_CHECK(e.begin <= e.end, what, ": data_offsets [", e.begin, ", ", e.end, "] has end before begin");
    PETAL_CHECK(e.end <= data_len, what, ": data_offsets [", e.begin, ", ", e.end,
                "] run past the end of the data section (", data_len, " bytes; file truncated?)");
    const uint64_t expected = numel * dtype_size(e.dtype);
    PETAL_CHECK(e.end - e.begin == expected, what, ": data_offsets [", e.begin, ", ", e.end, "] span ",
                e.end - e.begin, " bytes but shape ", shape_str(e.shape), " of ", dt.get<std::string>(), " needs ",
                expected, " bytes");
    out.entries.push_back(std::move(e));
  }

  // The byte ranges, in order, must tile [0, data_len) exactly.
  std::sort(out.entries.begin(), out.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : out.entries) {
    if (e.begin < pos) {
      PETAL_FAIL(where, ": tensor '", e.name, "' data_offsets [", e.begin, ", ", e.end, "] overlap tensor '",
                 prev->name, "' [", prev->begin, ", ", prev->end, "]");
    }
    PETAL_CHECK(e.begin == pos, where, ": gap in the data section: bytes [", pos, ", ", e.begin,
                ") before tensor '", e.name, "' belong to no tensor");
    pos = e.end;
    prev = &e;
  }
  PETAL_CHECK(pos == data_len, where, ": the data section has ", data_len, " bytes but the tensors cover only ", pos,
              " (trailing bytes belong to no tensor)");
  return out;
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads bytes [offset, offset+len) of the source into dst; throws on failure.
using ReadFn = std::function<void(uint64_t offset, uint64_t len, void* dst)>;

// Reads and validates a whole image of `total` bytes through `read`.
SafetensorsContents parse_image(const std::string& name, uint64_t total, const ReadFn& read, bool want_tensors) {
  const std::string where = "safetensors file '" + name + "'";
  PETAL_CHECK(total >= 8, where, ": truncated: ", total, " bytes, too short for the 8-byte header length");
  unsigned char len_bytes[8];
  read(0, 8, len_bytes);
  const uint64_t header_len = read_u64_le(len_bytes);
  PETAL_CHECK(header_len <= kMaxHeaderBytes, where, ": header length ", header_len, " exceeds the ",
              kMaxHeaderBytes, "-byte limit (corrupt file?)");
  PETAL_CHECK(header_len <= total - 8, where, ": truncated: header length ", header_len, " is larger than the ",
              total - 8, " bytes that follow it");
  PETAL_CHECK(header_len >= 2, where, ": header length ", header_len, " is too short for a JSON object");
  std::string text(header_len, '\0');
  read(8, header_len, text.data());
  PETAL_CHECK(text[0] == '{', where, ": malformed JSON header (does not start with '{')");

  const uint64_t data_start = 8 + header_len;
  Header header = parse_header(name, text, total - data_start);
  SafetensorsContents out;
  out.metadata = std::move(header.metadata);
  if (!want_tensors) return out;
  for (const Entry& e : header.entries) {
    Tensor t = empty(e.shape, TensorOptions(e.dtype, kCPU));
    if (e.end > e.begin) read(data_start + e.begin, e.end - e.begin, t.data_ptr());
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

// A file opened for reading, closed on scope exit.
struct ReadFile {
  int fd = -1;
  std::string path;
  explicit ReadFile(const std::string& p) : path(p) {
    fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    PETAL_CHECK(fd >= 0, "safetensors: cannot open '", p, "' for reading: ", errno_str());
  }
  ~ReadFile() {
    if (fd >= 0) ::close(fd);
  }
  uint64_t size() const {
    struct stat st;
    PETAL_CHECK(::fstat(fd, &st) == 0, "safetensors: cannot stat '", path, "': ", errno_str());
    PETAL_CHECK(S_ISREG(st.st_mode), "safetensors: '", path, "' is not a regular file");
    return static_cast<uint64_t>(st.st_size);
  }
  void read(uint64_t offset, uint64_t len, void* dst) const {
    char* p = static_cast<char*>(dst);
    while (len > 0) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(len, uint64_t(1) << 30));
      ssize_t n = ::pread(fd, p, chunk, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      PETAL_CHECK(n >= 0, "safetensors file '", path, "': read error at byte ", offset, ": ", errno_str());
      PETAL_CHECK(n > 0, "safetensors file '", path, "': truncated: unexpected end of file at byte ", offset);
      p += n;
      offset += static_cast<uint64_t>(n);
      len -= static_cast<uint64_t>(n);
    }
  }
};

SafetensorsContents load_file(const std::string& path, bool want_tensors) {
  ReadFile f(path);
  const uint64_t total = f.size();
  return parse_image(path, total, [&](uint64_t o, uint64_t n, void* dst) { f.read(o, n, dst); }, want_tensors);
}

// ---------------------------------------------------------------- writing

// The header text (padded to a multiple of 8) and the CPU tensors to stream after it.
struct Plan {
  std::string header;  // includes the 8-byte length prefix
  std::vector<std::pair<std::string, Tensor>> tensors;
};

Plan make_plan(const std::string& where, const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header[kMetadataKey] = std::move(m);
  }
  Plan plan;
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    const std::string& name = kv.first;
    const Tensor& t = kv.second;
    PETAL_CHECK(name != kMetadataKey, where, ": '__metadata__' is reserved and cannot name a tensor");
    PETAL_CHECK(!name.empty(), where, ": tensor names must not be empty");
    PETAL_CHECK(t.defined(), where, ": tensor '", name, "' is undefined");
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    json shape = json::array();
    for (int64_t s : t.shape()) shape.push_back(static_cast<uint64_t>(s));
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", std::move(shape)},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    plan.tensors.emplace_back(name, t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  plan.header.resize(8);
  for (int i = 0; i < 8; ++i) plan.header[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  plan.header += text;
  return plan;
}

// Contiguous CPU copy of t (t itself when it already is one), without autograd history.
Tensor host_contiguous(const Tensor& t) {
  NoGradGuard ng;
  return t.detach().to(kCPU).contiguous();
}

// Streams a plan to `write` (called with consecutive chunks).
void write_plan(const Plan& plan, const std::function<void(const void*, size_t)>& write) {
  write(plan.header.data(), plan.header.size());
  for (const auto& nt : plan.tensors) {
    Tensor h = host_contiguous(nt.second);
    const size_t nbytes = static_cast<size_t>(h.numel()) * h.element_size();
    if (nbytes) write(h.data_ptr(), nbytes);
  }
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  for (const auto& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  PETAL_FAIL("safetensors: dtype ", dtype_name(dtype), " has no safetensors name");
}

std::string safetensors_to_bytes(const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  Plan plan = make_plan("safetensors_to_bytes", tensors, metadata);
  std::string out;
  write_plan(plan, [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

SafetensorsContents safetensors_from_bytes(const std::string& bytes, const std::string& name) {
  return parse_image(name, bytes.size(), [&](uint64_t o, uint64_t n, void* dst) {
    std::memcpy(dst, bytes.data() + o, static_cast<size_t>(n));
  }, true);
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  const std::string where = "save_safetensors('" + path + "')";
  Plan plan = make_plan(where, tensors, metadata);  // validates before touching the disk

  AtomicFile file(path);  // removes its temporary when anything below throws
  try {
    write_plan(plan, [&](const void* data, size_t len) { file.write(data, len); });
    file.commit();
  } catch (const Error& e) {
    PETAL_FAIL(where, ": ", e.what());
  }
}

void check_finite(const TensorMap& tensors, const std::string& where) {
  for (const auto& kv : tensors) {
    const std::string& name = kv.first;
    const Tensor& t = kv.second;
    if (!t.defined() || !t.is_floating_point() || t.numel() == 0) continue;
    Tensor h = host_contiguous(t);
    if (h.dtype() != DType::f32 && h.dtype() != DType::f64) h = h.to(DType::f64);
    const int64_t n = h.numel();
    auto report = [&](int64_t i, double v) {
      PETAL_FAIL(where, ": tensor '", name, "' ", shape_str(t.shape()), " holds non-finite values (", v,
                 " at flat index ", i, "); the weights are corrupt or come from a diverged run");
    };
    if (h.dtype() == DType::f32) {
      const float* p = h.data<float>();
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) report(i, p[i]);
    } else {
      const double* p = h.data<double>();
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) report(i, p[i]);
    }
  }
}

TensorMap load_safetensors(const std::string& path) { return load_file(path, true).tensors; }

SafetensorsContents load_safetensors_contents(const std::string& path) { return load_file(path, true); }

SafetensorsMetadata load_safetensors_metadata(const std::string& path) { return load_file(path, false).metadata; }

}  // namespace petal
