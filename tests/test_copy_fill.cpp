// The backends' copy (with dtype conversion, any strides) and fill, bit for bit: bf16 <-> f32
// (round to nearest even, ties, NaN, inf, -0, subnormals) contiguous and strided against the
// scalar definition in petal/dtype.h, same-dtype copies of 1/2/4/8-byte elements through
// transposed and sliced views (bits unchanged, NaN payloads included), sizes that split over
// threads, fill with byte-uniform and other patterns on strided views. The cpu runs under
// each CPU ISA variant (kernels/cpu/isa.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "device_variants.h"
#include "testing.h"

using namespace petal;
using petal::testing::DeviceVariant;
using petal::testing::device_variants;

namespace {

// Raw element bits of t (any device), copied to the host.
template <typename U>
std::vector<U> bits_of(const Tensor& t) {
  const Tensor c = t.to(kCPU).contiguous();
  REQUIRE(dtype_size(c.dtype()) == sizeof(U));
  std::vector<U> out(static_cast<size_t>(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(U));
  return out;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// f32 values covering every rounding case of the narrowing: random normals at several scales,
// exact ties (even and odd), values just above/below ties, +-0, +-inf, quiet and signaling
// NaNs with payloads, subnormals, the largest finite float (rounds to inf in bf16).
std::vector<float> tricky_floats(int64_t n, uint64_t seed) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f,
                          from_bits(0x3f808000u),  // 1 + 2^-8: tie, rounds down to even
                          from_bits(0x3f818000u),  // 1 + 3 * 2^-8: tie, rounds up to even
                          from_bits(0x3f808001u),  // just above a tie: up
                          from_bits(0x3f807fffu),  // just below a tie: down
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          from_bits(0x7fc00001u), from_bits(0xffc12345u),  // quiet NaNs with payloads
                          from_bits(0x7f800001u), from_bits(0x7fbfffffu),  // signaling NaNs
                          from_bits(0x00000001u), from_bits(0x00408000u),  // subnormals (a tie)
                          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          from_bits(0x7f7f8000u)};  // rounds to inf
  const Tensor r = petal::testing::random_input({n}, seed, DType::f64);
  const double* rv = r.data<double>();
  for (int64_t i = 0; static_cast<int64_t>(v.size()) < n; ++i)
    v.push_back(static_cast<float>(rv[i] * std::pow(10.0, static_cast<double>(i % 13) - 6.0)));
  v.resize(static_cast<size_t>(n));
  return v;
}

// The cpu keeps a NaN's sign and payload (quieted, as float_to_bf16_bits); CUDA's conversion
// (cuda and sim) returns its canonical NaN: there any bf16 NaN is right.
bool bf16_matches(uint16_t got, float v, bool exact_nan) {
  if (std::isnan(v) && !exact_nan) return (got & 0x7f80u) == 0x7f80u && (got & 0x7fu) != 0;
  return got == float_to_bf16_bits(v);
}

}  // namespace

TEST_CASE("copy f32 -> bf16 -> f32 bit for bit, contiguous and strided", "[copy]") {
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  const bool exact_nan = variant.dev == "cpu";
  // 70001 elements split over threads on the cpu; 37 and 19 stay in one row.
  for (int64_t n : {19, 37, 70001}) {
    INFO(n << " elements on " << variant.name);
    const std::vector<float> vals = tricky_floats(n, 40 + static_cast<uint64_t>(n));
    const Tensor f = tensor(vals, {n}).to(d);
    const Tensor b = f.to(DType::bf16);
    const std::vector<uint16_t> got = bits_of<uint16_t>(b);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!bf16_matches(got[i], vals[i], exact_nan) && ++bad <= 5)
        FAIL_CHECK("f32 -> bf16 element " << i << ": " << vals[i] << " gave 0x" << std::hex << got[i]
                                          << " expected 0x" << float_to_bf16_bits(vals[i]));
    CHECK(bad == 0);
    // Known answers of the rounding (independent of dtype.h).
    if (n == 19) {
      CHECK(got[4] == 0x3f80u);  // tie to even, down
      CHECK(got[5] == 0x3f82u);  // tie to even, up
      CHECK(got[6] == 0x3f81u);
      CHECK(got[7] == 0x3f80u);
      CHECK(got[1] == 0x8000u);  // -0
      CHECK(got[8] == 0x7f80u);
      CHECK((got[12] & 0x7fc0u) == 0x7fc0u);  // a signaling NaN becomes a quiet NaN, not inf
      CHECK(got[18] == 0x7f80u);
    }
    // Back to f32: exact (a 16-bit shift).
    const std::vector<uint32_t> back = bits_of<uint32_t>(b.to(DType::f32));
    bad = 0;
    for (int64_t i = 0; i < n; ++i)
      if (back[i] != static_cast<uint32_t>(got[i]) << 16 && ++bad <= 5)
        FAIL_CHECK("bf16 -> f32 element " << i);
    CHECK(bad == 0);
  }
  // Strided both ways: a transposed [61, 33] f32 view into bf16 and back into a transposed view.
  const int64_t rows = 61, cols = 33;
  const std::vector<float> vals = tricky_floats(rows * cols, 7);
  const Tensor f = tensor(vals, {rows, cols}).to(d);
  Tensor bt = empty({cols, rows}, TensorOptions(DType::bf16, d));
  bt.copy_(f.t());
  const std::vector<uint16_t> got = bits_of<uint16_t>(bt);
  int bad = 0;
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r)
      if (!bf16_matches(got[c * rows + r], vals[r * cols + c], exact_nan)) ++bad;
  CHECK(bad == 0);
  Tensor f2 = empty({rows, cols}, TensorOptions(DType::f32, d));
  Tensor f2t = f2.t();
  f2t.copy_(bt);  // strided destination
  const std::vector<uint32_t> back = bits_of<uint32_t>(f2);
  bad = 0;
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r)
      if (back[r * cols + c] != static_cast<uint32_t>(got[c * rows + r]) << 16) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("same-dtype copies through strided views keep every bit", "[copy]") {
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  auto dt = GENERATE(DType::u8, DType::bf16, DType::f16, DType::f32, DType::i32, DType::f64, DType::i64);
  INFO(dtype_name(dt) << " on " << variant.name);
  // Random bytes (NaN payloads and all) reinterpreted as dt: [5, 7, 300] -> permuted and sliced.
  const int64_t n = 5 * 7 * 300;
  const size_t es = dtype_size(dt);
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * es);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (uint8_t& b : bytes) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    b = static_cast<uint8_t>(state >> 56);
  }
  Tensor host = empty({5, 7, 300}, TensorOptions(dt));
  std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
  const Tensor src = host.to(d);
  // A permuted view (inner stride 1 after coalescing: rows of 300), a transposed one (inner
  // stride 300) and a stepped slice (inner stride 2).
  const std::vector<Tensor> views = {src.permute({1, 0, 2}), src.transpose(1, 2), src.slice(2, 1, 300, 2)};
  for (size_t k = 0; k < views.size(); ++k) {
    INFO("view " << k);
    const Tensor out = views[k].contiguous();
    REQUIRE(out.is_contiguous());
    const Tensor expect = views[k].to(kCPU).contiguous();  // host reference: bytes moved on the cpu
    // Reference by index arithmetic on the original bytes.
    const Tensor c = out.to(kCPU);
    const uint8_t* got = static_cast<const uint8_t*>(c.data_ptr());
    const auto& shp = views[k].shape();
    const auto& str = views[k].strides();
    const int64_t off = views[k].storage_offset();
    int64_t idx[3] = {0, 0, 0};
    int bad = 0;
    for (int64_t i = 0; i < c.numel(); ++i) {
      const int64_t e = off + idx[0] * str[0] + idx[1] * str[1] + idx[2] * str[2];
      if (std::memcmp(got + i * es, bytes.data() + e * es, es) != 0) ++bad;
      for (int dd = 2; dd >= 0; --dd) {
        if (++idx[dd] < shp[dd]) break;
        idx[dd] = 0;
      }
    }
    CHECK(bad == 0);
    CHECK(std::memcmp(expect.data_ptr(), got, static_cast<size_t>(c.numel()) * es) == 0);
  }
}

TEST_CASE("fill writes the value's bits on contiguous and strided views", "[copy]") {
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  auto dt = GENERATE(DType::bf16, DType::f32, DType::f64, DType::i64, DType::u8, DType::b8);
  for (double value : {0.0, -0.0, 1.5, -3.0, 257.0}) {
    INFO(dtype_name(dt) << " value " << value << " on " << variant.name);
    const int64_t n = 70003;  // splits over threads
    Tensor t = empty({n}, TensorOptions(dt, d));
    t.fill_(value);
    const Tensor expect = full({n}, value, TensorOptions(dt, kCPU));
    const Tensor got = t.to(kCPU);
    CHECK(std::memcmp(got.data_ptr(), expect.data_ptr(), static_cast<size_t>(n) * dtype_size(dt)) == 0);
    if (dt == DType::bf16 || dt == DType::f32 || dt == DType::f64)  // the sign of -0 is kept
      CHECK(std::signbit(got.to(DType::f64).data<double>()[7]) == std::signbit(value));
    // Every other element of a [40, 9] view: the others stay as they were.
    Tensor base = full({40, 18}, 7.0, TensorOptions(dt, d));
    base.slice(1, 0, 18, 2).fill_(value);
    const Tensor b = base.to(kCPU, DType::f64);
    const double written = full({1}, value, TensorOptions(dt)).to(DType::f64).data<double>()[0];
    const double kept = full({1}, 7.0, TensorOptions(dt)).to(DType::f64).data<double>()[0];
    int bad = 0;
    for (int64_t i = 0; i < 40 * 18; ++i)
      if (b.data<double>()[i] != (i % 2 == 0 ? written : kept)) ++bad;
    CHECK(bad == 0);
  }
}
