// Joining and indexing ops (cat, stack, index_select, gather, scatter_add, one_hot)
// against float64 references on every backend: odd sizes, repeated indices,
// non-contiguous inputs, dtype promotion, the kernels called directly on poisoned
// outputs, error messages naming the op and the bad index, and gradchecks.
#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

Tensor f64(const Tensor& t) { return t.detach().to(kCPU, DType::f64).contiguous(); }

// Row-major multi-index of linear index lin in shape.
std::vector<int64_t> unravel(int64_t lin, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = lin % shape[d];
    lin /= shape[d];
  }
  return idx;
}
int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t lin = 0;
  for (size_t d = 0; d < shape.size(); ++d) lin = lin * shape[d] + idx[d];
  return lin;
}

// References written element by element.
Tensor ref_cat(const std::vector<Tensor>& ts, int64_t dim) {
  Shape s = ts[0].shape();
  s[dim] = 0;
  for (const auto& t : ts) s[dim] += t.shape()[dim];
  Tensor out = zeros(s, TensorOptions(DType::f64));
  int64_t off = 0;
  for (const auto& t : ts) {
    Tensor c = f64(t);
    for (int64_t i = 0; i < c.numel(); ++i) {
      auto idx = unravel(i, c.shape());
      idx[dim] += off;
      out.data<double>()[ravel(idx, s)] = c.data<double>()[i];
    }
    off += t.shape()[dim];
  }
  return out;
}

Tensor ref_index_select(const Tensor& x, int64_t dim, const std::vector<int64_t>& index) {
  Tensor c = f64(x);
  Shape s = c.shape();
  s[dim] = static_cast<int64_t>(index.size());
  Tensor out = zeros(s, TensorOptions(DType::f64));
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, s);
    idx[dim] = index[idx[dim]];
    out.data<double>()[i] = c.data<double>()[ravel(idx, c.shape())];
  }
  return out;
}

Tensor ref_gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor c = f64(x);
  Tensor ix = index.to(kCPU).contiguous();
  Tensor out = zeros(index.shape(), TensorOptions(DType::f64));
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, index.shape());
    idx[dim] = ix.data<int64_t>()[i];
    out.data<double>()[i] = c.data<double>()[ravel(idx, c.shape())];
  }
  return out;
}

Tensor ref_scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = f64(self).clone();
  Tensor s = f64(src);
  Tensor ix = index.to(kCPU).contiguous();
  for (int64_t i = 0; i < ix.numel(); ++i) {
    auto idx = unravel(i, index.shape());
    double v = s.data<double>()[ravel(idx, src.shape())];
    idx[dim] = ix.data<int64_t>()[i];
    out.data<double>()[ravel(idx, self.shape())] += v;
  }
  return out;
}

// Seeded indices in [0, size) with repeats.
Tensor random_index(const Shape& shape, int64_t size, uint64_t seed, Device d) {
  manual_seed(seed);
  return randint(0, size, shape, TensorOptions(DType::i64, d));
}

}  // namespace

TEST_CASE("cat and stack match element-wise references", "[index]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  Tensor a = random_input({3, 7, 5}, 1, dt, d), b = random_input({3, 2, 5}, 2, dt, d),
         c = non_contiguous_copy(random_input({3, 1, 5}, 3, dt, d));
  check_close(cat({a, b, c}, 1), ref_cat({a, b, c}, 1), 0.0, "cat dim 1");
  Tensor e = random_input({4, 7, 5}, 4, dt, d);
  check_close(cat({a, e}, 0), ref_cat({a, e}, 0), 0.0, "cat dim 0");
  Tensor f = random_input({3, 7, 33}, 5, dt, d).transpose(0, 1).transpose(0, 1);
  check_close(cat({a, f}, -1), ref_cat({a, f}, 2), 0.0, "cat dim -1");
  check_close(cat({a}, 0), f64(a), 0.0, "cat one");
  Tensor zero_len = empty({3, 0, 5}, TensorOptions(dt, d));
  check_close(cat({zero_len, b}, 1), f64(b), 0.0, "cat zero-length");
  check_close(cat({empty({0}, TensorOptions(dt, d)), b}, 1), f64(b), 0.0, "cat skips 1-D empty");
  // stack = cat of unsqueezed tensors.
  Tensor s0 = random_input({4, 3}, 6, dt, d), s1 = random_input({4, 3}, 7, dt, d);
  Tensor st = stack({s0, s1, non_contiguous_copy(s0)}, 1);
  CHECK(st.shape() == Shape{4, 3, 3});
  check_close(st, ref_cat({s0.unsqueeze(1), s1.unsqueeze(1), s0.unsqueeze(1)}, 1), 0.0, "stack dim 1");
  check_close(stack({s0, s1}, -1), ref_cat({s0.unsqueeze(2), s1.unsqueeze(2)}, 2), 0.0, "stack dim -1");
}

TEST_CASE("cat promotes dtypes; cat/stack errors name the shapes", "[index]") {
  Tensor a = random_input({2, 3}, 1, DType::f32);
  Tensor i = arange(int64_t(6)).reshape({2, 3});
  Tensor c = cat({a, i}, 0);
  CHECK(c.dtype() == DType::f32);
  check_close(c, ref_cat({a, i}, 0), 0.0);
  CHECK_THROWS_WITH(cat({a, random_input({4, 4}, 2, DType::f32)}, 0),
                    Catch::Contains("cat") && Catch::Contains("[4, 4]") && Catch::Contains("dimension 0"));
  CHECK_THROWS_WITH(cat({}, 0), Catch::Contains("cat") && Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(stack({a, random_input({2, 4}, 3, DType::f32)}, 0),
                    Catch::Contains("stack") && Catch::Contains("[2, 3]") && Catch::Contains("[2, 4]"));
  CHECK_THROWS_WITH(cat({a, a}, 2), Catch::Contains("cat") && Catch::Contains("dimension 2"));
}

TEST_CASE("index_select matches a reference, with repeated indices", "[index]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  Tensor x = random_input({5, 7, 33}, 1, dt, d);
  const std::vector<int64_t> rows = {4, 0, 0, 2, 4, 1, 3};
  for (int64_t dim : {0, 1, 2}) {
    std::vector<int64_t> idx;
    for (int64_t r : rows) idx.push_back(r % x.shape()[dim]);
    Tensor it = tensor(idx).to(d);
    INFO("dim " << dim << " on " << dev);
    check_close(index_select(x, dim, it), ref_index_select(x, dim, idx), 0.0);
    check_close(index_select(non_contiguous_copy(x), dim - 3, it), ref_index_select(x, dim, idx), 0.0,
                "non-contiguous");
  }
  // int32 index and a 197-row embedding table.
  Tensor table = random_input({197, 9}, 2, dt, d);
  Tensor ids = tensor(std::vector<int64_t>{196, 0, 50, 196}).to(d, DType::i32);
  check_close(index_select(table, 0, ids), ref_index_select(table, 0, {196, 0, 50, 196}), 0.0, "int32 index");
}

TEST_CASE("gather and scatter_add match references", "[index]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64);
  Device d(dev);
  Tensor x = random_input({6, 7, 9}, 1, dt, d);
  uint64_t seed = 10;
  for (int64_t dim : {0, 1, 2}) {
    Shape ishape = {5, 4, 7};
    ishape[dim] = 11;  // longer than x along dim: indices repeat
    Tensor idx = random_index(ishape, x.shape()[dim], seed++, d);
    INFO("dim " << dim << " on " << dev);
    check_close(gather(x, dim, idx), ref_gather(x, dim, idx), 0.0, "gather");
    check_close(gather(non_contiguous_copy(x), dim, idx), ref_gather(x, dim, idx), 0.0, "gather non-contiguous");
    Tensor src = random_input({6, 5, 11}, seed++, dt, d);  // larger than index in some dims
    Shape sshape = {6, 5, 11};
    for (int k = 0; k < 3; ++k) sshape[k] = std::max(sshape[k], ishape[k]);
    src = random_input(sshape, seed++, dt, d);
    check_close(scatter_add(x, dim, idx, src), ref_scatter_add(x, dim, idx, src), -1, "scatter_add");
    check_close(scatter_add(non_contiguous_copy(x), dim, idx, non_contiguous_copy(src)),
                ref_scatter_add(x, dim, idx, src), -1, "scatter_add non-contiguous");
  }
}

TEST_CASE("one_hot", "[index]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  Tensor labels = tensor(std::vector<int64_t>{2, 0, 4, 4, 1, 3}, {2, 3}).to(d);
  Tensor oh = one_hot(labels, 5);
  CHECK(oh.dtype() == DType::i64);
  CHECK(oh.shape() == Shape{2, 3, 5});
  std::vector<int64_t> expected(30, 0);
  std::vector<int64_t> lv = {2, 0, 4, 4, 1, 3};
  for (int i = 0; i < 6; ++i) expected[i * 5 + lv[i]] = 1;
  CHECK(oh.tolist<int64_t>() == expected);
  CHECK(one_hot(labels, -1).shape() == Shape{2, 3, 5});
  CHECK_THROWS_WITH(one_hot(labels, 4),
                    Catch::Contains("one_hot") && Catch::Contains("class value 4") && Catch::Contains("num_classes 4"));
  CHECK_THROWS_WITH(one_hot(tensor(std::vector<int64_t>{0, -1}).to(d), 3), Catch::Contains("class value -1"));
  CHECK_THROWS_WITH(one_hot(random_input({3}, 1, DType::f32, d), 3),
                    Catch::Contains("one_hot") && Catch::Contains("float32"));
}

TEST_CASE("index errors name the op, the bad index and the dim size", "[index]") {
  Tensor x = random_input({5, 3}, 1, DType::f32);
  CHECK_THROWS_WITH(index_select(x, 0, tensor(std::vector<int64_t>{1, 7})),
                    Catch::Contains("index_select: index 7 is out of bounds for dim 0 with size 5"));
  CHECK_THROWS_WITH(index_select(x, 1, tensor(std::vector<int64_t>{-1})),
                    Catch::Contains("index_select: index -1 is out of bounds for dim 1 with size 3"));
  CHECK_THROWS_WITH(index_select(x, 0, tensor({1.f})), Catch::Contains("index_select") && Catch::Contains("float32"));
  CHECK_THROWS_WITH(gather(x, 1, tensor(std::vector<int64_t>{0, 3}, {1, 2})),
                    Catch::Contains("gather: index 3 is out of bounds for dim 1 with size 3"));
  CHECK_THROWS_WITH(gather(x, 1, tensor(std::vector<int64_t>{0, 1})),
                    Catch::Contains("gather") && Catch::Contains("[2]") && Catch::Contains("[5, 3]"));
  CHECK_THROWS_WITH(scatter_add(x, 0, tensor(std::vector<int64_t>{9}, {1, 1}), x),
                    Catch::Contains("scatter_add: index 9 is out of bounds for dim 0 with size 5"));
  CHECK_THROWS_WITH(scatter_add(x, 0, tensor(std::vector<int64_t>{0}, {1, 1}), x.to(DType::f64)),
                    Catch::Contains("scatter_add") && Catch::Contains("same dtype"));
}

TEST_CASE("index kernels write every element and accumulate repeats", "[index]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  auto& be = kernels::backend_for(d);
  auto view = [](const Tensor& t) {
    kernels::View v;
    v.data = t.data_ptr();
    v.dtype = t.dtype();
    v.ndim = static_cast<int>(t.dim());
    for (int i = 0; i < v.ndim; ++i) v.shape[i] = t.shape()[i], v.strides[i] = t.strides()[i];
    return v;
  };
  Tensor x = random_input({4, 9, 5}, 1, DType::f32, d);
  Tensor idx = tensor(std::vector<int64_t>{8, 0, 8, 3, 1}).to(d);
  Tensor out = empty({4, 5, 5}, TensorOptions(DType::f32, d));
  petal::testing::poison(out);
  be.index_select(view(out), view(x), 1, view(idx));
  check_close(out, ref_index_select(x, 1, {8, 0, 8, 3, 1}), 0.0, "index_select kernel");
  // index_add: out[:, idx[i], :] += src[:, i, :] with idx repeating 8.
  Tensor acc = random_input({4, 9, 5}, 2, DType::f64, d);
  Tensor src = random_input({4, 5, 5}, 3, DType::f64, d);
  Tensor expected = f64(acc).clone();
  {
    Tensor s = f64(src);
    std::vector<int64_t> iv = {8, 0, 8, 3, 1};
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t c = 0; c < 5; ++c)
          expected.data<double>()[(a * 9 + iv[i]) * 5 + c] += s.data<double>()[(a * 5 + i) * 5 + c];
  }
  be.index_add(view(acc), 1, view(idx), view(src));
  check_close(acc, expected, -1, "index_add kernel");
  Tensor gidx = random_index({4, 6, 5}, 9, 4, d);
  Tensor gout = empty({4, 6, 5}, TensorOptions(DType::f32, d));
  petal::testing::poison(gout);
  be.gather(view(gout), view(x), 1, view(gidx));
  check_close(gout, ref_gather(x, 1, gidx), 0.0, "gather kernel");
  Tensor sacc = random_input({4, 9, 5}, 5, DType::f64, d);
  Tensor ssrc = random_input({4, 6, 5}, 6, DType::f64, d);
  Tensor sexp = ref_scatter_add(sacc, 1, gidx, ssrc);
  be.scatter_add(view(sacc), 1, view(gidx), view(ssrc));
  check_close(sacc, sexp, -1, "scatter_add kernel");
}

TEST_CASE("joining and indexing gradients", "[index][grad]") {
  using V = std::vector<Tensor>;
  Tensor a = random_input({2, 3}, 1), b = random_input({2, 4}, 2), c = random_input({2, 3}, 3);
  CHECK(gradcheck([](const V& v) { return cat({v[0], v[1]}, 1); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return cat({v[0], v[1]}, 0); }, {a, c}));
  CHECK(gradcheck([](const V& v) { return stack({v[0], v[1]}, 1); }, {a, c}));
  Tensor ix = tensor(std::vector<int64_t>{2, 0, 2, 1});
  CHECK(gradcheck([ix](const V& v) { return index_select(v[0], 1, ix); }, {random_input({3, 3}, 4)}));
  CHECK(gradcheck([ix](const V& v) { return index_select(v[0], 0, ix); }, {random_input({3, 2}, 5)}));
  Tensor gi = tensor(std::vector<int64_t>{1, 1, 0, 2, 0, 0}, {2, 3});
  CHECK(gradcheck([gi](const V& v) { return gather(v[0], 1, gi); }, {random_input({2, 3}, 6)}));
  CHECK(gradcheck([gi](const V& v) { return gather(v[0], 0, gi); }, {random_input({3, 4}, 7)}));
  Tensor si = tensor(std::vector<int64_t>{1, 1, 0, 2, 0, 0}, {2, 3});
  CHECK(gradcheck([si](const V& v) { return scatter_add(v[0], 1, si, v[1]); },
                  {random_input({2, 4}, 8), random_input({3, 4}, 9)}));
}
