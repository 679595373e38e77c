// layer_norm against plain float64 references (forward and the dx/dweight/dbias of
// sum(y * dy)) on every backend: dtypes, odd sizes, non-contiguous inputs, with and
// without affine parameters, the kernels called directly on poisoned outputs (including
// rows too long to stage in shared memory), error messages, and float64 gradchecks. The cpu
// cases run under each CPU ISA variant (kernels/cpu/isa.h). Autocast's mixed form (f32
// parameters, f32 or 16-bit x, 16-bit y) through the op and through the kernels directly.
#include <cmath>

#include <petal/autocast.h>

#include "kernels/backend.h"
#include "device_variants.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::DeviceVariant;
using petal::testing::device_variants;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::normalized_error;
using petal::testing::tolerance_for;
using petal::testing::random_input;

namespace {

struct LayerNormRef {
  Tensor y, mean, rstd, dx, dweight, dbias;
};

// Float64 reference of y = (x - mean) / sqrt(var + eps) * w + b over the last dim, and
// the gradients of sum(y * dy) written out from the definition of each quantity.
LayerNormRef ref_layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Tensor& dy_in,
                            double eps) {
  Tensor x = x_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t D = x.size(-1), rows = x.numel() / D;
  Tensor w = w_in.defined() ? w_in.detach().to(kCPU, DType::f64).contiguous() : ones({D}, DType::f64);
  Tensor b = b_in.defined() ? b_in.detach().to(kCPU, DType::f64).contiguous() : zeros({D}, DType::f64);
  Tensor dy = dy_in.detach().to(kCPU, DType::f64).contiguous();
  LayerNormRef r;
  r.y = zeros(x.shape(), DType::f64);
  r.dx = zeros(x.shape(), DType::f64);
  r.mean = zeros({rows}, DType::f64);
  r.rstd = zeros({rows}, DType::f64);
  r.dweight = zeros({D}, DType::f64);
  r.dbias = zeros({D}, DType::f64);
  const double *px = x.data<double>(), *pw = w.data<double>(), *pb = b.data<double>(), *pdy = dy.data<double>();
  double *py = r.y.data<double>(), *pdx = r.dx.data<double>();
  for (int64_t row = 0; row < rows; ++row) {
    const double* xr = px + row * D;
    const double* g = pdy + row * D;
    double mu = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) mu += xr[i] / D;
    for (int64_t i = 0; i < D; ++i) var += (xr[i] - mu) * (xr[i] - mu) / D;
    const double rs = 1 / std::sqrt(var + eps);
    r.mean.data<double>()[row] = mu;
    r.rstd.data<double>()[row] = rs;
    // dL/dxhat_i = g_i w_i; dxhat_i/dx_j = rs (delta_ij - 1/D - xhat_i xhat_j / D).
    for (int64_t j = 0; j < D; ++j) {
      double acc = 0;
      for (int64_t i = 0; i < D; ++i) {
        const double xhi = (xr[i] - mu) * rs, xhj = (xr[j] - mu) * rs;
        acc += g[i] * pw[i] * rs * ((i == j ? 1.0 : 0.0) - 1.0 / D - xhi * xhj / D);
      }
      pdx[row * D + j] = acc;
    }
    for (int64_t i = 0; i < D; ++i) {
      const double xh = (xr[i] - mu) * rs;
      py[row * D + i] = xh * pw[i] + pb[i];
      r.dweight.data<double>()[i] += g[i] * xh;
      r.dbias.data<double>()[i] += g[i];
    }
  }
  return r;
}

// t rounded to dtype and back to f64 on the CPU (what a kernel of that dtype reads).
Tensor rounded(const Tensor& t, DType dtype) { return t.detach().to(dtype).to(kCPU, DType::f64); }

}  // namespace

TEST_CASE("layer_norm matches float64 references, forward and backward", "[layernorm]") {
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const std::string& dev = variant.dev;
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto affine = GENERATE(true, false);
  auto noncontig = GENERATE(false, true);
  const std::vector<Shape> shapes = {{1}, {7}, {5, 33}, {3, 4, 97}, {13, 1}, {2, 3, 65}};
  uint64_t seed = 100;
  for (const Shape& shape : shapes) {
    const int64_t D = shape.back();
    const Device d(dev);
    Tensor x = add(mul(random_input(shape, seed++, dt, d), 2.0), 0.5);
    if (noncontig) x = non_contiguous_copy(x);
    Tensor w, b;
    if (affine) {
      w = random_input({D}, seed++, dt, d).requires_grad_();
      b = random_input({D}, seed++, dt, d).requires_grad_();
    }
    x.requires_grad_();
    Tensor dy = random_input(shape, seed++, dt, d);
    INFO("shape " << shape_str(shape) << " dtype " << dtype_name(dt) << " on " << variant.name
                  << (affine ? " affine" : "")
                  << (noncontig ? " non-contiguous" : ""));
    const LayerNormRef ref = ref_layer_norm(x, w, b, dy, 1e-5);
    Tensor y = layer_norm(x, w, b, 1e-5);
    CHECK(y.dtype() == dt);
    CHECK(y.shape() == shape);
    CHECK(y.device() == d);
    check_close(y, ref.y, -1, "y");
    y.backward(dy);
    check_close(x.grad(), ref.dx, -1, "dx");
    if (affine) {
      check_close(w.grad(), ref.dweight, -1, "dweight");
      check_close(b.grad(), ref.dbias, -1, "dbias");
    }
  }
}

TEST_CASE("layer_norm kernels write every element", "[layernorm]") {
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const std::string& dev = variant.dev;
  auto dt = GENERATE(DType::f32, DType::f64);
  const Device d(dev);
  const DType st = dt == DType::f64 ? DType::f64 : DType::f32;
  // 9000 columns do not fit the CUDA kernel's shared-memory stage: the unstaged path.
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{11, 37}, {3, 9000}, {1, 1}};
  for (const auto& [rows, cols] : sizes) {
    INFO(rows << "x" << cols << " " << dtype_name(dt) << " on " << variant.name);
    Tensor x = random_input({rows, cols}, 7, dt, d), w = random_input({cols}, 8, dt, d);
    Tensor b = random_input({cols}, 9, dt, d), dy = random_input({rows, cols}, 10, dt, d);
    const LayerNormRef ref = ref_layer_norm(x, w, b, dy, 1e-3);
    Tensor y = empty({rows, cols}, TensorOptions(dt, d)), mean = empty({rows}, TensorOptions(st, d));
    Tensor rstd = empty({rows}, TensorOptions(st, d));
    for (Tensor* t : {&y, &mean, &rstd}) petal::testing::poison(*t);
    auto& be = kernels::backend_for(d);
    be.layer_norm_forward(y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr(),
                          dt, rows, cols, 1e-3);
    check_close(y, ref.y, -1, "y");
    check_close(mean, ref.mean, -1, "mean");
    check_close(rstd, ref.rstd, -1, "rstd");
    Tensor dx = empty({rows, cols}, TensorOptions(dt, d)), dw = empty({cols}, TensorOptions(dt, d));
    Tensor db = empty({cols}, TensorOptions(dt, d));
    for (Tensor* t : {&dx, &dw, &db}) petal::testing::poison(*t);
    be.layer_norm_backward(dx.data_ptr(), dw.data_ptr(), db.data_ptr(), dy.data_ptr(), x.data_ptr(), mean.data_ptr(),
                           rstd.data_ptr(), w.data_ptr(), dt, rows, cols);
    check_close(dx, ref.dx, -1, "dx");
    check_close(dw, ref.dweight, -1, "dweight");
    check_close(db, ref.dbias, -1, "dbias");
    // Without weight: the same dx as weight = 1; parameter gradients may be skipped.
    petal::testing::poison(dx);
    be.layer_norm_backward(dx.data_ptr(), nullptr, nullptr, dy.data_ptr(), x.data_ptr(), mean.data_ptr(),
                           rstd.data_ptr(), nullptr, dt, rows, cols);
    check_close(dx, ref_layer_norm(x, Tensor(), Tensor(), dy, 1e-3).dx, -1, "dx without weight");
  }
}

TEST_CASE("layer_norm: 16-byte vector rows and their misaligned / ragged fallbacks", "[layernorm]") {
  // (cpu: under its default ISA only; the vector paths are the cuda/sim kernels')
  // On cuda/sim, aligned rows whose width is a multiple of 8 bf16/f16 (4 f32) elements move in
  // 16-byte vectors, forward and backward; a view offset by one element (misaligned x, y / dx,
  // weight, bias or dy) or a ragged width takes the elementwise loops. The simulator checks
  // every vector access's alignment.
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::bf16, DType::f16, DType::f32);
  const Device d(dev);
  const TensorOptions opts(dt, d);
  uint64_t seed = 500;
  for (int64_t cols : {8, 64, 200, 36}) {
    for (int misaligned = 0; misaligned < 6; ++misaligned) {  // 0: none; 1 x, 2 y and dx, 3 weight, 4 bias, 5 dy
      const int64_t rows = 5;
      INFO(rows << "x" << cols << " " << dtype_name(dt) << " on " << dev << " misaligned operand " << misaligned);
      // An offset of one element in a larger buffer: the same values at a 2- (or 4-) byte offset.
      auto view = [&](const Shape& shape, bool shift, uint64_t sd) {
        int64_t n = 1;
        for (int64_t e : shape) n *= e;
        Tensor flat = random_input({n + 1}, sd, dt, d);
        return flat.narrow(0, shift ? 1 : 0, n).reshape(shape);
      };
      Tensor x = view({rows, cols}, misaligned == 1, seed++);
      Tensor w = view({cols}, misaligned == 3, seed++), b = view({cols}, misaligned == 4, seed++);
      Tensor y_buffer = empty({rows * cols + 1}, opts);
      petal::testing::poison(y_buffer);
      Tensor y = y_buffer.narrow(0, misaligned == 2 ? 1 : 0, rows * cols).reshape({rows, cols});
      Tensor mean = empty({rows}, TensorOptions(DType::f32, d)), rstd = empty({rows}, TensorOptions(DType::f32, d));
      kernels::backend_for(d).layer_norm_forward(y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), x.data_ptr(),
                                                 w.data_ptr(), b.data_ptr(), dt, rows, cols, 1e-5);
      const LayerNormRef ref = ref_layer_norm(x, w, b, zeros({rows, cols}, DType::f64), 1e-5);
      check_close(y, ref.y, -1, "y");
      check_close(mean, ref.mean, -1, "mean");
      check_close(rstd, ref.rstd, -1, "rstd");
      // The element outside the view is untouched (still the poison).
      const Tensor outside = y_buffer.narrow(0, misaligned == 2 ? 0 : rows * cols, 1).to(kCPU, DType::f64);
      CHECK(std::isnan(outside.item()));
      // Backward into a poisoned (possibly misaligned) dx, with parameter gradients.
      Tensor dy = view({rows, cols}, misaligned == 5, seed++);
      const LayerNormRef gref = ref_layer_norm(x, w, b, dy, 1e-5);
      petal::testing::poison(y_buffer);
      Tensor dx = y;  // same placement as y
      Tensor dw = empty({cols}, opts), db = empty({cols}, opts);
      petal::testing::poison(dw);
      petal::testing::poison(db);
      kernels::backend_for(d).layer_norm_backward(dx.data_ptr(), dw.data_ptr(), db.data_ptr(), dy.data_ptr(),
                                                  x.data_ptr(), mean.data_ptr(), rstd.data_ptr(), w.data_ptr(), dt,
                                                  rows, cols);
      check_close(dx, gref.dx, -1, "dx");
      check_close(dw, gref.dweight, -1, "dweight");
      check_close(db, gref.dbias, -1, "dbias");
    }
  }
}

TEST_CASE("layer_norm parameter gradients with more rows than backward blocks", "[layernorm]") {
  // 600 rows exceed the CUDA backward's 512 partial-sum blocks (a block folds several rows).
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  const int64_t rows = 600, cols = 5;
  Tensor x = random_input({rows, cols}, 21, DType::f32, d), dy = random_input({rows, cols}, 22, DType::f32, d);
  Tensor w = random_input({cols}, 23, DType::f32, d).requires_grad_();
  Tensor b = random_input({cols}, 24, DType::f32, d).requires_grad_();
  const LayerNormRef ref = ref_layer_norm(x, w, b, dy, 1e-5);
  layer_norm(x, w, b).backward(dy);
  check_close(w.grad(), ref.dweight, -1, "dweight");
  check_close(b.grad(), ref.dbias, -1, "dbias");
}

TEST_CASE("layer_norm backward: register-tiled partial sums at every width, and wide rows", "[layernorm]") {
  // Widths that take each register tile of the CUDA backward (1, 2, 4, 8 columns per thread)
  // and the global-memory fallback (more than 8 columns per thread of a 256-thread block).
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const std::string& dev = variant.dev;
  const Device d(dev);
  uint64_t seed = 500;
  for (int64_t cols : {200, 300, 700, 1500, 2100}) {
    const int64_t rows = 3;
    INFO("cols " << cols << " on " << variant.name);
    Tensor x = random_input({rows, cols}, seed++, DType::f32, d).requires_grad_();
    Tensor w = random_input({cols}, seed++, DType::f32, d).requires_grad_();
    Tensor b = random_input({cols}, seed++, DType::f32, d).requires_grad_();
    Tensor dy = random_input({rows, cols}, seed++, DType::f32, d);
    const LayerNormRef ref = ref_layer_norm(x, w, b, dy, 1e-5);
    layer_norm(x, w, b).backward(dy);
    check_close(x.grad(), ref.dx, -1, "dx");
    check_close(w.grad(), ref.dweight, -1, "dweight");
    check_close(b.grad(), ref.dbias, -1, "dbias");
  }
}

TEST_CASE("layer_norm errors name the op and shapes", "[layernorm]") {
  Tensor x = random_input({2, 3}, 1, DType::f32);
  CHECK_THROWS_WITH(layer_norm(x, random_input({4}, 2, DType::f32), Tensor()),
                    Catch::Contains("layer_norm") && Catch::Contains("weight") && Catch::Contains("[4]") &&
                        Catch::Contains("[2, 3]"));
  CHECK_THROWS_WITH(layer_norm(x, Tensor(), random_input({3}, 2, DType::f64)),
                    Catch::Contains("layer_norm") && Catch::Contains("bias") && Catch::Contains("float64"));
  CHECK_THROWS_WITH(layer_norm(arange(int64_t(6)).reshape({2, 3}), Tensor(), Tensor()),
                    Catch::Contains("layer_norm") && Catch::Contains("int64"));
}

TEST_CASE("layer_norm gradients", "[layernorm][grad]") {
  using V = std::vector<Tensor>;
  Tensor x = random_input({3, 2, 5}, 60), w = random_input({5}, 61), b = random_input({5}, 62);
  CHECK(gradcheck([](const V& v) { return layer_norm(v[0], v[1], v[2], 1e-5); }, {x, w, b}));
  CHECK(gradcheck([](const V& v) { return layer_norm(v[0], Tensor(), Tensor(), 1e-2); }, {x}));
  CHECK(gradcheck([](const V& v) { return layer_norm(v[0].transpose(0, 2), v[1], Tensor(), 1e-5); },
                  {random_input({4, 2, 3}, 63), random_input({4}, 64)}));
}

TEST_CASE("layer_norm under autocast: f32 parameters, x as it comes, y in the autocast dtype", "[layernorm][autocast]") {
  // The mixed form: x f32 (the residual stream) or 16-bit, weight/bias f32 (the master copy),
  // y in the autocast dtype. Against float64 on the values the kernel reads: y within one
  // rounding to the 16-bit dtype, dx (x's dtype) and dweight/dbias (f32) at f32 accuracy, as
  // the math runs in f32 (a 16-bit computation would be off by ~1e-2).
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  auto low = GENERATE(DType::bf16, DType::f16);
  auto x_dtype = GENERATE(DType::f32, DType::bf16, DType::f16);
  auto affine = GENERATE(true, false);
  uint64_t seed = 900;
  for (const Shape& shape : std::vector<Shape>{{3, 7}, {2, 5, 64}, {4, 200}, {1, 1}}) {
    const int64_t D = shape.back();
    INFO("shape " << shape_str(shape) << " x " << dtype_name(x_dtype) << " autocast " << dtype_name(low) << " on "
                  << variant.name << (affine ? " affine" : ""));
    Tensor x = add(mul(random_input(shape, seed++, x_dtype, d), 2.0), 0.5).requires_grad_();
    Tensor w, b;
    if (affine) {
      w = random_input({D}, seed++, DType::f32, d).requires_grad_();
      b = random_input({D}, seed++, DType::f32, d).requires_grad_();
    }
    Tensor dy = random_input(shape, seed++, low, d);
    Tensor y;
    {
      autocast ac(d, low);
      y = layer_norm(x, w, b, 1e-5);
    }
    CHECK(y.dtype() == low);
    CHECK(y.shape() == shape);
    // A 16-bit x of the other type than the guard's is computed as f32.
    const DType x_read = x_dtype == DType::f32 || x_dtype == low ? x_dtype : DType::f32;
    const LayerNormRef ref = ref_layer_norm(rounded(x, x_read), w, b, dy, 1e-5);
    check_close(y, ref.y, tolerance_for(low), "y");
    // Computed in f32: the error is the final rounding only (half an ulp of the 16-bit type).
    CHECK(normalized_error(y, ref.y) <= (low == DType::bf16 ? 4e-3 : 5e-4) + 1e-5);
    y.backward(dy);
    REQUIRE(x.grad().defined());
    CHECK(x.grad().dtype() == x_dtype);
    check_close(x.grad(), ref.dx, x_dtype == DType::f32 ? 1e-4 : tolerance_for(x_dtype), "dx");
    if (affine) {
      CHECK(w.grad().dtype() == DType::f32);
      CHECK(b.grad().dtype() == DType::f32);
      check_close(w.grad(), ref.dweight, 1e-4, "dweight");
      check_close(b.grad(), ref.dbias, 1e-4, "dbias");
    }
  }
}

TEST_CASE("layer_norm mixed-dtype kernels: every element, vector groups, misaligned and ragged rows", "[layernorm]") {
  // The kernels called directly with f32 parameters, 16-bit y/dy and f32 or 16-bit x/dx, on
  // poisoned outputs. On cuda/sim widths that are multiples of 8 move in vector groups (two
  // 16-byte f32 vectors per 8 columns of x); an offset of one element in x, y/dx, weight or dy
  // or a ragged width takes the elementwise loops.
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  auto low = GENERATE(DType::bf16, DType::f16);
  auto x_dtype = GENERATE(DType::f32, DType::bf16);
  const DType xt = x_dtype == DType::f32 ? DType::f32 : low;
  const kernels::LayerNormDTypes dtypes(xt, low, DType::f32);
  uint64_t seed = 1300;
  for (int64_t cols : {8, 64, 200, 36, 1500}) {
    for (int misaligned = 0; misaligned < 5; ++misaligned) {  // 0: none; 1 x, 2 y and dx, 3 weight, 4 dy
      const int64_t rows = 6;
      INFO(rows << "x" << cols << " x " << dtype_name(xt) << " y " << dtype_name(low) << " on " << variant.name
                << " misaligned operand " << misaligned);
      auto view = [&](const Shape& shape, bool shift, uint64_t sd, DType dt) {
        int64_t n = 1;
        for (int64_t e : shape) n *= e;
        Tensor flat = random_input({n + 1}, sd, dt, d);
        return flat.narrow(0, shift ? 1 : 0, n).reshape(shape);
      };
      Tensor x = view({rows, cols}, misaligned == 1, seed++, xt);
      Tensor w = view({cols}, misaligned == 3, seed++, DType::f32), b = view({cols}, false, seed++, DType::f32);
      Tensor dy = view({rows, cols}, misaligned == 4, seed++, low);
      const LayerNormRef ref = ref_layer_norm(x, w, b, dy, 1e-5);
      Tensor y_buffer = empty({rows * cols + 1}, TensorOptions(low, d));
      petal::testing::poison(y_buffer);
      Tensor y = y_buffer.narrow(0, misaligned == 2 ? 1 : 0, rows * cols).reshape({rows, cols});
      Tensor mean = empty({rows}, TensorOptions(DType::f32, d)), rstd = empty({rows}, TensorOptions(DType::f32, d));
      petal::testing::poison(mean);
      petal::testing::poison(rstd);
      auto& be = kernels::backend_for(d);
      be.layer_norm_forward(y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr(),
                            dtypes, rows, cols, 1e-5);
      check_close(y, ref.y, -1, "y");
      check_close(mean, ref.mean, 1e-5, "mean");
      check_close(rstd, ref.rstd, 1e-5, "rstd");
      const Tensor outside = y_buffer.narrow(0, misaligned == 2 ? 0 : rows * cols, 1).to(kCPU, DType::f64);
      CHECK(std::isnan(outside.item()));
      Tensor dx_buffer = empty({rows * cols + 1}, TensorOptions(xt, d));
      petal::testing::poison(dx_buffer);
      Tensor dx = dx_buffer.narrow(0, misaligned == 2 ? 1 : 0, rows * cols).reshape({rows, cols});
      Tensor dw = empty({cols}, TensorOptions(DType::f32, d)), db = empty({cols}, TensorOptions(DType::f32, d));
      petal::testing::poison(dw);
      petal::testing::poison(db);
      be.layer_norm_backward(dx.data_ptr(), dw.data_ptr(), db.data_ptr(), dy.data_ptr(), x.data_ptr(), mean.data_ptr(),
                             rstd.data_ptr(), w.data_ptr(), dtypes, rows, cols);
      check_close(dx, ref.dx, xt == DType::f32 ? 1e-4 : -1.0, "dx");
      check_close(dw, ref.dweight, 1e-4, "dweight");
      check_close(db, ref.dbias, 1e-4, "dbias");
      // Without weight and parameter gradients.
      petal::testing::poison(dx_buffer);
      be.layer_norm_backward(dx.data_ptr(), nullptr, nullptr, dy.data_ptr(), x.data_ptr(), mean.data_ptr(),
                             rstd.data_ptr(), nullptr, dtypes, rows, cols);
      check_close(dx, ref_layer_norm(x, Tensor(), Tensor(), dy, 1e-5).dx, xt == DType::f32 ? 1e-4 : -1.0,
                  "dx without weight");
    }
  }
}

TEST_CASE("layer_norm under autocast: the mixed gradients equal the uniform f32 path's", "[layernorm][grad]") {
  // Finite differences cannot run through the mixed path (autocast never casts f64, so f64
  // takes the uniform path, gradchecked in "layer_norm gradients"); the mixed gradients equal
  // the uniform f32 ones on the same values within f32 accuracy.
  const DeviceVariant variant(GENERATE(from_range(device_variants())));
  const Device d(variant.dev);
  Tensor x = random_input({4, 33}, 77, DType::f32, d).requires_grad_();
  Tensor w = random_input({33}, 78, DType::f32, d).requires_grad_();
  Tensor b = random_input({33}, 79, DType::f32, d).requires_grad_();
  Tensor dy = random_input({4, 33}, 80, DType::bf16, d);
  {
    autocast ac(d, DType::bf16);
    Tensor y = layer_norm(x, w, b);
    REQUIRE(y.dtype() == DType::bf16);
    y.backward(dy);
  }
  Tensor x2 = x.detach().clone().requires_grad_(), w2 = w.detach().clone().requires_grad_();
  Tensor b2 = b.detach().clone().requires_grad_();
  layer_norm(x2, w2, b2).backward(dy.to(DType::f32));
  check_close(x.grad(), x2.grad().to(kCPU, DType::f64), 1e-5, "dx");
  check_close(w.grad(), w2.grad().to(kCPU, DType::f64), 1e-5, "dweight");
  check_close(b.grad(), b2.grad().to(kCPU, DType::f64), 1e-5, "dbias");
}
