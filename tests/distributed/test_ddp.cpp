// DistributedDataParallel across the ranks of mpirun. The central check is equivalence:
// N optimizer steps of a tiny ViT on W processes with per-rank batch b (DistributedSampler
// shards) must give the weights of one process taking batch W*b in the same data order;
// every rank computes that single-process reference itself (no communication) and compares.
// Also: parameters broadcast from rank 0, bucket order, no_sync accumulation, unused
// parameters reported (or counted as zero).
#include <catch2/catch.hpp>

#include <petal/petal.h>

#include <cmath>
#include <string>
#include <vector>

using namespace petal;
namespace dist = petal::distributed;

namespace {

nn::ViTConfig tiny_vit() {
  nn::ViTConfig c;
  c.img_size = 8;
  c.patch_size = 4;
  c.in_chans = 3;
  c.width = 16;
  c.depth = 2;
  c.heads = 2;
  c.num_classes = 5;
  return c;
}

std::shared_ptr<nn::ViT> make_vit(uint64_t seed) {
  manual_seed(seed);
  return std::make_shared<nn::ViT>(tiny_vit());
}

// The largest elementwise |a - b| / (1 + |b|) over all parameters of two modules.
double max_param_diff(nn::Module& a, nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    auto x = pa[i].second.to(kCPU, DType::f64).contiguous().tolist<double>();
    auto y = pb[i].second.to(kCPU, DType::f64).contiguous().tolist<double>();
    REQUIRE(x.size() == y.size());
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(x[k] - y[k]) / (1.0 + std::abs(y[k])));
  }
  return worst;
}

double max_abs(const Tensor& t) { return max(abs(t)).item(); }

// Rows `idx` of a dataset held as one tensor.
Tensor rows(const Tensor& all, const std::vector<int64_t>& idx) { return index_select(all, 0, tensor(idx, {static_cast<int64_t>(idx.size())})); }

// A module with one parameter that forward never uses.
class WithUnused : public nn::Module {
 public:
  WithUnused() : Module("WithUnused") {
    used = register_module("used", std::make_shared<nn::Linear>(4, 3));
    unused = register_module("unused", std::make_shared<nn::Linear>(4, 3));
  }
  Tensor forward(const Tensor& x) override { return used->forward(x); }
  std::shared_ptr<nn::Linear> used, unused;
};

}  // namespace

TEST_CASE("DDP broadcasts rank 0's parameters", "[ddp]") {
  auto model = make_vit(100 + static_cast<uint64_t>(dist::rank()));  // different on every rank
  auto reference = make_vit(100);                                      // rank 0's
  nn::DistributedDataParallel ddp(model);
  REQUIRE(max_param_diff(*model, *reference) == 0.0);
}

TEST_CASE("DDP buckets follow reverse registration order within the cap", "[ddp]") {
  auto model = make_vit(1);
  nn::DDPOptions opt;
  opt.bucket_cap_mb = 2.0 / 1024.0;  // 2 KiB: several buckets for this tiny model
  nn::DistributedDataParallel ddp(model, opt);
  auto buckets = ddp.bucket_parameter_names();
  REQUIRE(buckets.size() > 2);
  std::vector<std::string> flat;
  for (auto& b : buckets)
    for (auto& n : b) flat.push_back(n);
  std::vector<std::string> expected;
  for (auto& [name, p] : model->named_parameters()) expected.insert(expected.begin(), name);
  REQUIRE(flat == expected);
  for (auto& b : buckets) {
    int64_t bytes = 0;
    for (auto& n : b) bytes += model->get_tensor(n).numel() * 4;
    if (b.size() > 1) REQUIRE(bytes <= 2048);
  }
}

TEST_CASE("DDP on W ranks with batch b equals one process with batch W*b", "[ddp]") {
  const int W = dist::world_size(), r = dist::rank();
  const int64_t b = 3, steps = 4, n = W * b * steps - 1;  // odd-sized: the sampler pads
  manual_seed(7);
  Tensor images = randn({n, 3, 8, 8});
  Tensor labels = randint(0, 5, {n});

  data::DistributedSampler sampler(n, W, r, /*shuffle=*/true, /*seed=*/11);
  data::DistributedSampler whole(n, 1, 0, true, 11);  // the same order, padded to W*b*steps below
  REQUIRE(sampler.size() == b * steps);

  auto model = make_vit(3);
  auto reference = make_vit(3);
  nn::DDPOptions opt;
  opt.bucket_cap_mb = 4.0 / 1024.0;  // several buckets, so overlap and ordering are exercised
  auto ddp = std::make_shared<nn::DistributedDataParallel>(model, opt);
  optim::SGDOptions so;
  so.lr = 0.05;
  so.momentum = 0.9;
  optim::SGD opt_ddp(ddp->parameters(), so), opt_ref(reference->parameters(), so);

  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> mine = sampler.indices(epoch);
    // The single process sees the replicas' shards interleaved, i.e. the padded epoch order.
    std::vector<int64_t> order = whole.indices(epoch);
    for (size_t i = 0; order.size() < static_cast<size_t>(W * b * steps); ++i) order.push_back(order[i]);
    for (int64_t s = 0; s < steps; ++s) {
      std::vector<int64_t> bi(mine.begin() + s * b, mine.begin() + (s + 1) * b);
      opt_ddp.zero_grad();
      cross_entropy(ddp->forward(rows(images, bi)), rows(labels, bi)).backward();
      opt_ddp.step();

      std::vector<int64_t> ri(order.begin() + s * W * b, order.begin() + (s + 1) * W * b);
      opt_ref.zero_grad();
      cross_entropy(reference->forward(rows(images, ri)), rows(labels, ri)).backward();
      opt_ref.step();
    }
  }
  const double diff = max_param_diff(*model, *reference);
  INFO("max relative weight difference after " << 2 * steps << " steps on " << W << " ranks: " << diff);
  REQUIRE(std::isfinite(diff));
  REQUIRE(diff < 2e-5);
  // The runs really trained: the weights moved away from the initialisation.
  REQUIRE(max_param_diff(*model, *make_vit(3)) > 1e-3);
}

TEST_CASE("DDP no_sync accumulates locally and the next backward reduces the sum", "[ddp]") {
  const int W = dist::world_size(), r = dist::rank();
  auto model = make_vit(5);
  auto reference = make_vit(5);
  nn::DistributedDataParallel ddp(model);
  manual_seed(50);
  Tensor images = randn({4 * W, 3, 8, 8});
  Tensor labels = randint(0, 5, {4 * W});
  auto mine = [&](int half) {
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < 2; ++k) idx.push_back(half * 2 * W + r * 2 + k);
    return idx;
  };
  {
    auto guard = ddp.no_sync();
    cross_entropy(ddp.forward(rows(images, mine(0))), rows(labels, mine(0))).backward();
  }
  // Inside no_sync nothing was exchanged: the ranks' gradients differ.
  Tensor g_local = model->named_parameters().back().second.grad().clone();
  Tensor gathered = dist::all_gather(g_local);
  if (W > 1) REQUIRE(max_abs(sub(gathered[0], gathered[1])) > 0.0);

  cross_entropy(ddp.forward(rows(images, mine(1))), rows(labels, mine(1))).backward();
  // Reference: mean over ranks of (grad of half 0 + grad of half 1) = grads of both halves of
  // the global batch, each averaged over its 2*W samples.
  for (int half = 0; half < 2; ++half) {
    std::vector<int64_t> all;
    for (int64_t k = 0; k < 2 * W; ++k) all.push_back(half * 2 * W + k);
    cross_entropy(reference->forward(rows(images, all)), rows(labels, all)).backward();
  }
  auto pm = model->named_parameters(), pr = reference->named_parameters();
  double worst = 0;
  for (size_t i = 0; i < pm.size(); ++i) {
    Tensor d = sub(pm[i].second.grad(), pr[i].second.grad());
    worst = std::max(worst, max_abs(d) / (1e-3 + max_abs(pr[i].second.grad())));
  }
  INFO("worst relative gradient difference " << worst);
  REQUIRE(worst < 1e-4);
}

TEST_CASE("DDP reports unused parameters, or counts them as zero", "[ddp]") {
  manual_seed(9);
  Tensor x = randn({2, 4});
  SECTION("default: an error naming the parameter") {
    auto m = std::make_shared<WithUnused>();
    nn::DistributedDataParallel ddp(m);
    REQUIRE_THROWS_WITH(sum(ddp.forward(x)).backward(),
                        Catch::Contains("unused.weight") && Catch::Contains("find_unused_parameters"));
  }
  SECTION("find_unused_parameters: zero gradients, the used ones averaged") {
    auto m = std::make_shared<WithUnused>();
    nn::DDPOptions opt;
    opt.find_unused_parameters = true;
    nn::DistributedDataParallel ddp(m, opt);
    Tensor xr = mul(x, static_cast<double>(dist::rank() + 1));
    sum(ddp.forward(xr)).backward();
    auto unused = ddp.unused_parameters();
    REQUIRE(unused == std::vector<std::string>{"unused.weight", "unused.bias"});
    REQUIRE(max_abs(m->unused->named_parameters()[0].second.grad()) == 0.0);
    // d sum(W x + b) / dW = column sums of x scaled by (rank + 1), averaged over ranks.
    const int W = dist::world_size();
    const double scale = (W + 1) / 2.0;
    Tensor expected = mul(sum(x, {0}).unsqueeze(0).expand({3, 4}), scale);
    Tensor got = m->used->named_parameters()[0].second.grad();
    REQUIRE(max_abs(sub(got, expected)) < 1e-5);
  }
}
