// cp.async.cg.shared.global (16 bytes) with commit_group / wait_group / wait_all in the
// simulator: the destination is poison (0xFF bytes, NaN as f32) from the issue until a wait
// completes the copy's group, so a kernel that reads it early, or never waits, reads NaN and
// fails its test; wait_group<N> completes exactly the groups older than the newest N; wait_all
// includes copies not yet committed; the source is read at issue. Misaligned addresses are errors.
#include "testing.h"

#include "kernels/cuda/ptx.cuh"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

using petal::sim::launch;
namespace ptx = petal::kernels::ptx;

std::vector<float> ramp(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + 0.25f * static_cast<float>(i);
  return v;
}

bool is_poison(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits == 0xFFFFFFFFu && std::isnan(x);
}

// Each lane copies src[4 l .. 4 l + 3] into shared memory and reads it back before and after
// the wait (before: a bug a kernel can make; the sim shows it as NaN).
__global__ void read_before_and_after_wait(const float* src, float* before, float* after) {
  PETAL_DYNAMIC_SHARED(float, s);
  const int l = static_cast<int>(threadIdx.x);
  ptx::cp_async_cg_16(s + 4 * l, src + 4 * l);
  ptx::cp_async_commit_group();
  for (int i = 0; i < 4; ++i) before[4 * l + i] = s[4 * l + i];
  ptx::cp_async_wait_group<0>();
  for (int i = 0; i < 4; ++i) after[4 * l + i] = s[4 * l + i];
}

// Missing wait: every thread issues and commits, then the block synchronizes and each thread
// reads its neighbour's chunk.
__global__ void never_waits(const float* src, float* out) {
  PETAL_DYNAMIC_SHARED(float, s);
  const int l = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  ptx::cp_async_cg_16(s + 4 * l, src + 4 * l);
  ptx::cp_async_commit_group();
  __syncthreads();
  const int peer = (l + 1) % n;
  for (int i = 0; i < 4; ++i) out[4 * l + i] = s[4 * peer + i];
}

// Three groups (chunks 0; 1 and 2; 3) and one uncommitted copy (chunk 4): out holds, after
// wait_group<2>, <1>, <0> and wait_all, the five chunks (20 floats per step).
__global__ void group_order(const float* src, float* out) {
  PETAL_DYNAMIC_SHARED(float, s);
  ptx::cp_async_cg_16(s + 0, src + 0);
  ptx::cp_async_commit_group();
  ptx::cp_async_cg_16(s + 4, src + 4);
  ptx::cp_async_cg_16(s + 8, src + 8);
  ptx::cp_async_commit_group();
  ptx::cp_async_cg_16(s + 12, src + 12);
  ptx::cp_async_commit_group();
  ptx::cp_async_cg_16(s + 16, src + 16);
  auto dump = [&](int step) {
    for (int i = 0; i < 20; ++i) out[20 * step + i] = s[i];
  };
  ptx::cp_async_wait_group<2>();
  dump(0);
  ptx::cp_async_wait_group<1>();
  dump(1);
  ptx::cp_async_wait_group<0>();
  dump(2);
  ptx::cp_async_wait_all();
  dump(3);
}

// The source changes after the issue: the copy delivers what it was at the issue.
__global__ void source_read_at_issue(float* src, float* out) {
  PETAL_DYNAMIC_SHARED(float, s);
  ptx::cp_async_cg_16(s, src);
  ptx::cp_async_commit_group();
  src[0] = -1.0f;
  ptx::cp_async_wait_all();
  for (int i = 0; i < 4; ++i) out[i] = s[i];
}

__global__ void misaligned_source(const float* src, float* out) {
  PETAL_DYNAMIC_SHARED(float, s);
  ptx::cp_async_cg_16(s, src + 1);
  ptx::cp_async_wait_all();
  out[0] = s[0];
}

__global__ void misaligned_destination(const float* src, float* out) {
  PETAL_DYNAMIC_SHARED(float, s);
  ptx::cp_async_cg_16(s + 2, src);
  ptx::cp_async_wait_all();
  out[0] = s[2];
}

std::string launch_message(void (*kernel)(const float*, float*), const char* name) {
  std::vector<float> src = ramp(16, 1.0f), out(4, 0.0f);
  try {
    launch(name, kernel, dim3(1), dim3(1), 64, static_cast<const float*>(src.data()), out.data());
  } catch (const petal::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sim ptx: a cp.async destination read before wait_group is NaN, after it the data", "[sim][ptx]") {
  const uint64_t seed = GENERATE(1u, 2u);
  petal::sim::set_schedule_seed(seed);
  const auto src = ramp(128, 3.0f);
  std::vector<float> before(128, 0.0f), after(128, NAN);
  launch("read_before_and_after_wait", read_before_and_after_wait, dim3(1), dim3(32), 128 * sizeof(float), src.data(),
         before.data(), after.data());
  int poisoned = 0, copied = 0;
  for (int i = 0; i < 128; ++i) {
    poisoned += is_poison(before[i]);
    copied += after[i] == src[i];
  }
  CHECK(poisoned == 128);
  CHECK(copied == 128);
}

TEST_CASE("sim ptx: a kernel that never waits for its cp.async reads poison after __syncthreads", "[sim][ptx]") {
  const auto src = ramp(64 * 4, -2.0f);
  std::vector<float> out(64 * 4, 0.0f);
  launch("never_waits", never_waits, dim3(1), dim3(64), 64 * 4 * sizeof(float), src.data(), out.data());
  int poisoned = 0;
  for (float x : out) poisoned += is_poison(x);
  CHECK(poisoned == 64 * 4);
}

TEST_CASE("sim ptx: wait_group<N> completes all but the newest N groups; wait_all also the open one", "[sim][ptx]") {
  const auto src = ramp(20, 0.5f);
  std::vector<float> out(80, 0.0f);
  launch("group_order", group_order, dim3(1), dim3(1), 20 * sizeof(float), src.data(), out.data());
  // Chunks landed after each step: {0}, {0,1,2}, {0,1,2,3}, {0,...,4}.
  const int landed[4] = {1, 3, 4, 5};
  for (int step = 0; step < 4; ++step)
    for (int i = 0; i < 20; ++i) {
      INFO("step " << step << " element " << i);
      const float x = out[20 * step + i];
      if (i / 4 < landed[step])
        CHECK(x == src[i]);
      else
        CHECK(is_poison(x));
    }
}

TEST_CASE("sim ptx: cp.async reads its source at the issue", "[sim][ptx]") {
  auto src = ramp(4, 7.0f);
  const auto original = src;
  std::vector<float> out(4, NAN);
  launch("source_read_at_issue", source_read_at_issue, dim3(1), dim3(1), 16, src.data(), out.data());
  CHECK(src[0] == -1.0f);
  for (int i = 0; i < 4; ++i) CHECK(out[i] == original[i]);
}

TEST_CASE("sim ptx: cp.async with an address that is not 16-byte aligned is an error", "[sim][ptx]") {
  const std::string src_msg = launch_message(misaligned_source, "misaligned_source");
  INFO(src_msg);
  CHECK(src_msg.find("cp.async.cg.shared.global") != std::string::npos);
  CHECK(src_msg.find("global source") != std::string::npos);
  CHECK(src_msg.find("16-byte aligned") != std::string::npos);
  const std::string dst_msg = launch_message(misaligned_destination, "misaligned_destination");
  INFO(dst_msg);
  CHECK(dst_msg.find("shared destination") != std::string::npos);
  CHECK(dst_msg.find("test_ptx_cp_async.cpp") != std::string::npos);
}
