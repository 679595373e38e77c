// Warp intrinsics in the simulator: shuffles (idx/up/down/xor, sub-warp widths, 32- and 64-bit
// operands) give bit-for-bit what a GPU computes (the host references below replay the same
// float operations in the same order), votes and warp reductions see exactly the lanes in
// their mask, and lanes that break the mask rules are reported with the kernel named.
#include "testing.h"

#include "kernels/sim/sim_cuda.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace {

using petal::sim::launch;

constexpr unsigned kFull = 0xffffffffu;

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<double>(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
  }
  return v;
}

__global__ void warp_sum_down(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = in[i];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kFull, v, offset);
  if (threadIdx.x % 32 == 0) out[i / 32] = v;
}

__global__ void warp_sum_xor(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = in[i];
  for (int mask = 16; mask > 0; mask /= 2) v += __shfl_xor_sync(kFull, v, mask);
  out[i] = v;  // every lane holds the butterfly sum
}

// Inclusive scan within segments of 16 lanes (width = 16).
__global__ void segment_scan_up(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned lane = threadIdx.x % 32;
  float v = in[i];
  for (unsigned d = 1; d < 16; d *= 2) {
    const float t = __shfl_up_sync(kFull, v, d, 16);
    if (lane % 16 >= d) v += t;
  }
  out[i] = v;
}

// Broadcast of lane 3 (given as 11: taken modulo the width) within segments of 8 lanes, and
// 64-bit operands.
__global__ void broadcast_and_wide(const float* in, float* out, double* out_d, long long* out_ll) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = __shfl_sync(kFull, in[i], 11, 8);
  out_d[i] = __shfl_xor_sync(kFull, static_cast<double>(in[i]) * 3.0, 1);
  out_ll[i] = __shfl_down_sync(kFull, static_cast<long long>(i) * 10000000000ll, 2);
}

__global__ void votes(const int* pred, unsigned* ballot, int* any, int* all, unsigned* active) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned w = i / 32;
  // Converged code: every lane of the warp that exists is active. (Inside a divergent branch
  // a GPU would report fewer lanes; the simulator reports the lanes that have not exited.)
  const unsigned act = __activemask();
  const unsigned b = __ballot_sync(kFull, pred[i]);
  const int a = __any_sync(kFull, pred[i]);
  const int l = __all_sync(kFull, pred[i]);
  if (threadIdx.x % 32 == 0) {
    ballot[w] = b;
    any[w] = a;
    all[w] = l;
    active[w] = act;
  }
}

// Two disjoint groups of lanes in divergent branches, each with its own mask.
__global__ void split_groups(const int* in, int* out) {
  const unsigned lane = threadIdx.x % 32;
  int v = in[threadIdx.x];
  if (lane < 16) {
    for (int m = 8; m > 0; m /= 2) v += __shfl_xor_sync(0x0000ffffu, v, m);
  } else {
    v = __reduce_max_sync(0xffff0000u, v);
  }
  out[threadIdx.x] = v;
}

__global__ void warp_reduce_and_match(const int* in, int* sum, unsigned* match) {
  const int v = in[threadIdx.x];
  const int s = __reduce_add_sync(kFull, v);
  const unsigned m = __match_any_sync(kFull, v % 4);
  sum[threadIdx.x] = s;
  match[threadIdx.x] = m;
}

__global__ void partial_warp_read(float* out) {
  // blockDim 48: lanes 0..15 of warp 1 read lanes 16..31, which do not exist.
  out[threadIdx.x] = __shfl_down_sync(kFull, 1.0f, 16);
}

__global__ void not_in_own_mask(float* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, out[threadIdx.x], 0);
}

__global__ void mismatched_masks(float* out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = lane == 5 ? 0x3fu : kFull;
  out[threadIdx.x] = __shfl_xor_sync(mask, out[threadIdx.x], 1);
}

__global__ void shuffle_vs_barrier(float* out) {
  float v = out[threadIdx.x];
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(kFull, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const petal::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sim: warp reductions with __shfl_down_sync and __shfl_xor_sync match the GPU bit for bit", "[sim]") {
  const unsigned blocks = 3, threads = 96;
  const auto in = random_floats(blocks * threads, 17);
  const size_t warps = in.size() / 32;

  std::vector<float> down(warps, NAN), xor_out(in.size(), NAN);
  launch("warp_sum_down", warp_sum_down, dim3(blocks), dim3(threads), 0, in.data(), down.data());
  launch("warp_sum_xor", warp_sum_xor, dim3(blocks), dim3(threads), 0, in.data(), xor_out.data());

  for (size_t w = 0; w < warps; ++w) {
    // Replay: all lanes shuffle at once; a lane whose source is out of range reads itself.
    float v[32], d[32];
    for (int l = 0; l < 32; ++l) v[l] = d[l] = in[w * 32 + l];
    for (int offset = 16; offset > 0; offset /= 2) {
      float nd[32], nv[32];
      for (int l = 0; l < 32; ++l) {
        nd[l] = d[l] + (l + offset < 32 ? d[l + offset] : d[l]);
        nv[l] = v[l] + v[l ^ offset];
      }
      std::copy(nd, nd + 32, d);
      std::copy(nv, nv + 32, v);
    }
    CHECK(down[w] == d[0]);
    for (int l = 0; l < 32; ++l) CHECK(xor_out[w * 32 + l] == v[l]);
  }
}

TEST_CASE("sim: __shfl_up_sync scans and __shfl_sync broadcasts within sub-warp segments", "[sim]") {
  const unsigned threads = 64;
  const auto in = random_floats(threads, 23);
  std::vector<float> scan(threads, NAN), bcast(threads, NAN);
  std::vector<double> wide_d(threads, NAN);
  std::vector<long long> wide_ll(threads, -1);
  launch("segment_scan_up", segment_scan_up, dim3(1), dim3(threads), 0, in.data(), scan.data());
  launch("broadcast_and_wide", broadcast_and_wide, dim3(1), dim3(threads), 0, in.data(), bcast.data(),
         wide_d.data(), wide_ll.data());
  for (unsigned seg = 0; seg < threads / 16; ++seg) {
    float x[16];
    for (unsigned l = 0; l < 16; ++l) x[l] = in[seg * 16 + l];
    for (unsigned dlt = 1; dlt < 16; dlt *= 2) {
      float nx[16];
      for (unsigned l = 0; l < 16; ++l) nx[l] = l >= dlt ? x[l] + x[l - dlt] : x[l];
      std::copy(nx, nx + 16, x);
    }
    for (unsigned l = 0; l < 16; ++l) CHECK(scan[seg * 16 + l] == x[l]);
  }
  for (unsigned i = 0; i < threads; ++i) {
    CHECK(bcast[i] == in[i / 8 * 8 + 3]);
    CHECK(wide_d[i] == static_cast<double>(in[i ^ 1u]) * 3.0);
    const unsigned lane = i % 32;
    const unsigned src = lane + 2 < 32 ? i + 2 : i;
    CHECK(wide_ll[i] == static_cast<long long>(src) * 10000000000ll);
  }
}

TEST_CASE("sim: ballot/any/all see exactly the live lanes of the mask", "[sim]") {
  const unsigned threads = 80;  // warps of 32, 32 and 16 lanes
  std::vector<int> pred(threads);
  for (unsigned i = 0; i < threads; ++i) pred[i] = i < 32 ? (i % 3 == 0) : (i < 64 ? 1 : 0);
  std::vector<unsigned> ballot(3, 7), active(3, 7);
  std::vector<int> any(3, 7), all(3, 7);
  launch("votes", votes, dim3(1), dim3(threads), 0, pred.data(), ballot.data(), any.data(), all.data(),
         active.data());
  unsigned expected0 = 0;
  for (unsigned l = 0; l < 32; l += 3) expected0 |= 1u << l;
  CHECK(ballot == std::vector<unsigned>{expected0, kFull, 0u});
  CHECK(any == std::vector<int>{1, 1, 0});
  CHECK(all == std::vector<int>{0, 1, 0});
  CHECK(active == std::vector<unsigned>{kFull, kFull, 0xffffu});
}

TEST_CASE("sim: disjoint lane groups, warp reductions and __match_any_sync", "[sim]") {
  std::vector<int> in(32);
  for (int i = 0; i < 32; ++i) in[i] = (i * 37) % 101 - 50;
  std::vector<int> out(32, 0), sum(32, 0);
  std::vector<unsigned> match(32, 0);
  launch("split_groups", split_groups, dim3(1), dim3(32), 0, in.data(), out.data());
  int low = 0, high = -1000;
  for (int i = 0; i < 16; ++i) low += in[i];
  for (int i = 16; i < 32; ++i) high = std::max(high, in[i]);
  for (int i = 0; i < 32; ++i) CHECK(out[i] == (i < 16 ? low : high));

  launch("warp_reduce_and_match", warp_reduce_and_match, dim3(1), dim3(32), 0, in.data(), sum.data(), match.data());
  int total = 0;
  for (int v : in) total += v;
  for (int i = 0; i < 32; ++i) {
    CHECK(sum[i] == total);
    unsigned m = 0;
    for (int k = 0; k < 32; ++k)
      if (in[k] % 4 == in[i] % 4) m |= 1u << k;
    CHECK(match[i] == m);
  }
}

TEST_CASE("sim: a shuffle from a lane that does not exist reads poison", "[sim]") {
  std::vector<float> out(48, 0.0f);
  launch("partial_warp_read", partial_warp_read, dim3(1), dim3(48), 0, out.data());
  for (int i = 0; i < 16; ++i) CHECK(out[i] == 1.0f);       // sources 16..31 exist
  for (int i = 16; i < 32; ++i) CHECK(out[i] == 1.0f);      // out of range: own value
  for (int i = 32; i < 48; ++i) CHECK(std::isnan(out[i]));  // sources 48..63 do not exist
}

TEST_CASE("sim: warp intrinsics with masks that break the rules are reported", "[sim]") {
  std::vector<float> out(64, 1.0f);
  std::string msg = message_of([&] { launch("not_in_own_mask", not_in_own_mask, dim3(1), dim3(32), 0, out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'not_in_own_mask'") != std::string::npos);
  CHECK(msg.find("does not name its own lane") != std::string::npos);

  msg = message_of([&] { launch("mismatched_masks", mismatched_masks, dim3(1), dim3(32), 0, out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'mismatched_masks'") != std::string::npos);
  CHECK(msg.find("mismatch") != std::string::npos);

  msg = message_of([&] { launch("shuffle_vs_barrier", shuffle_vs_barrier, dim3(1), dim3(64), 0, out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'shuffle_vs_barrier'") != std::string::npos);
  CHECK(msg.find("__shfl_xor_sync") != std::string::npos);
  CHECK(msg.find("deadlock") != std::string::npos);
}
