// The SIMT simulator engine: runs a CUDA grid on the CPU with CUDA semantics.
// - Each block runs on one host thread; its simulated threads are Boost.Context fibers
//   (small pooled stacks, kFiberStackBytes) scheduled cooperatively by that host thread.
//   Blocks of a launch are spread over a pool of host threads (one at a time in ASan builds,
//   whose __shared__ variables are plain statics; see sim.h).
// - A fiber runs until it blocks: at __syncthreads (waits for the whole block), at a warp
//   intrinsic (waits for the lanes named in its mask), or when it returns. The scheduler
//   then picks the next runnable fiber at random (seeded), so the order in which threads run
//   between barriers changes with the seed and a missing barrier shows up as a wrong result.
// - When no fiber can run, the scheduler either releases a barrier (every live thread waits
//   at the same __syncthreads call site) or reports the bug it sees: a thread that returned
//   while others wait at a barrier, threads waiting at different barriers, warp intrinsics
//   whose lanes never all arrive or arrive with different masks. Errors are petal::Error
//   naming the kernel, block, thread and source location; the other fibers are unwound first.
// - A barrier is identified by its call site (file:line) and by the chain of return addresses
//   above the function that calls it (frame pointers, within the fiber's stack), so the same
//   __syncthreads reached through a helper from two different places is a divergent barrier.
// - Race detection (PETAL_SIM_TSAN, the ThreadSanitizer build): every simulated thread is a
//   TSan fiber, and fiber switches carry no ordering; only what orders threads on a GPU does:
//   block start (release by the scheduler, acquire by each thread), __syncthreads (release on
//   arrival, acquire after the release), warp rendezvous among the lanes that take part, block
//   end (each thread's exit synchronizes with the scheduler), and atomics (TSan sees the real
//   atomic instructions). This file is compiled without TSan instrumentation, so the engine's
//   own bookkeeping is not tracked. Blocks run one after another on the launching thread.
// - Progress: atomics and __nanosleep are scheduling points; a block that goes
//   kHangEvents scheduling points without progress (a barrier release, a warp rendezvous, a
//   thread exit, an atomic that changed memory) is reported as a hang.
// - Launch limits of the target GPUs (sm_80 by default, the smaller of petal's targets):
//   grid and block dimensions, __launch_bounds__ (passed through launch_bounded), and dynamic
//   shared memory over 48 KiB only after opt_in_dynamic_shared_memory.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/context/fiber.hpp>
#include <petal/error.h>

#include "kernels/sim/sim_cuda.h"
#include "kernels/sim/worker_pool.h"

#ifdef PETAL_SIM_STATIC_SHARED
#include <sanitizer/asan_interface.h>
#define PETAL_SIM_ASAN 1
#endif

#ifdef PETAL_SIM_TSAN
// ThreadSanitizer's fiber and annotation API (libtsan; this file is not instrumented itself).
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_set_fiber_name(void* fiber, const char* name);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
namespace {
constexpr unsigned kTsanNoSync = 1;  // __tsan_switch_to_fiber_no_sync
}
#define PETAL_TSAN(...) __VA_ARGS__
#else
#define PETAL_TSAN(...) ((void)0)
#endif

#include <sanitizer/common_interface_defs.h>

namespace ctx = boost::context;

namespace petal::sim {
namespace detail {
__thread ThreadView* current_thread = nullptr;
}  // namespace detail

namespace {

using detail::BarrierKind;
using detail::ThreadView;
using detail::WarpOp;

// ------------------------------------------------------------------ settings

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

int default_host_threads() {
  uint64_t n = env_u64("PETAL_SIM_THREADS", 0);
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::min<uint64_t>(n, 256));
}

size_t default_stack_bytes() {
#ifdef PETAL_SIM_ASAN
  const uint64_t kb = env_u64("PETAL_SIM_STACK_KB", 256);  // ASan frames carry redzones
#else
  const uint64_t kb = env_u64("PETAL_SIM_STACK_KB", 64);
#endif
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t bytes = static_cast<size_t>(std::max<uint64_t>(kb, 16)) * 1024;
  return (bytes + page - 1) / page * page;
}

struct Settings {
  std::atomic<uint64_t> seed{env_u64("PETAL_SIM_SEED", 1)};
  std::atomic<uint64_t> launch_counter{0};
  std::atomic<int> host_threads{default_host_threads()};
  size_t stack_bytes = default_stack_bytes();
  std::atomic<uint64_t> launches{0}, blocks{0}, threads{0}, switches{0};
  std::atomic<int> target_arch{static_cast<int>(env_u64("PETAL_SIM_ARCH", 80))};
  std::atomic<uint64_t> hang_events{env_u64("PETAL_SIM_HANG_EVENTS", 1u << 22)};
  std::mutex opt_in_mutex;
  std::vector<std::pair<const void*, size_t>> opt_ins;  // kernel -> opted-in dynamic shared bytes
};
Settings& settings() {
  static Settings s;
  return s;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// Strips the directory part before the project's own folders, for shorter messages.
std::string short_path(const char* file) {
  if (file == nullptr) return "?";
  std::string f(file);
  for (const char* root : {"/kernels/", "/tests/"}) {
    size_t p = f.rfind(root);
    if (p != std::string::npos) return f.substr(p + 1);
  }
  return f;
}

// ------------------------------------------------------------------ fiber stacks

/// Per-host-thread cache of fiber stacks: mmap'd once with a guard page below (a stack
/// overflow faults instead of corrupting a neighbour), then reused by every block.
class StackCache {
 public:
  ~StackCache() {
    for (void* base : free_) munmap(base, mapping_bytes());
  }
  void* take() {
    if (!free_.empty()) {
      void* base = free_.back();
      free_.pop_back();
      return base;
    }
    void* base = mmap(nullptr, mapping_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    mprotect(base, page(), PROT_NONE);
    return base;
  }
  void give(void* base) { free_.push_back(base); }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  static size_t mapping_bytes() { return settings().stack_bytes + page(); }

 private:
  std::vector<void*> free_;
};
thread_local StackCache tls_stacks;

// ------------------------------------------------------------------ block state

enum class State : uint8_t { Runnable, Running, AtBarrier, AtWarpOp, Exited };

struct Block;

/// Thrown inside a fiber (at its next suspension point) to unwind it when its block fails.
struct AbortFiber {};

struct Thread : ThreadView {
  Block* block = nullptr;
  unsigned linear = 0, lane = 0, warp = 0;
  State state = State::Runnable;
  const char* file = nullptr;  // call site of the barrier / warp intrinsic it waits at
  int line = 0;
  const char* op_name = nullptr;
  // barrier
  int predicate = 0, barrier_result = 0;
  // warp intrinsic
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = 32;
  void (*matrix_compute)(void* const*) = nullptr;  // WarpOp::Matrix: run once when the warp has arrived
  // barrier identity: the return-address chain above the function that calls __syncthreads
  uint64_t chain = 0;
  uintptr_t stack_lo = 0, entry_frame = 0;
  // spinning (atomics, __nanosleep) for the hang report
  const char* spin_what = nullptr;
  const char* spin_file = nullptr;
  int spin_line = 0;
  // race detection: sync objects this thread releases into at warp rendezvous (a ring, so
  // a lane that runs ahead does not overwrite what its partners still have to acquire)
  unsigned barrier_generation = 0;
  uint32_t warp_ops = 0;
  char warp_sync[4] = {};
  uint8_t partner_slot[32] = {};
  unsigned partners = 0;
  void* tsan_fiber = nullptr;
  void* tsan_scheduler = nullptr;
  // fibers: the suspended fiber (held while not running) and, inside it, the scheduler's
  ctx::fiber fiber;
  ctx::fiber* scheduler = nullptr;
#ifdef PETAL_SIM_ASAN
  void* fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  const void* stack_bottom = nullptr;
#endif
};

/// Boost.Context stack allocator over the cache (a fiber is created and destroyed on the
/// host thread that runs its block).
struct PooledStack {
  Thread* owner;
  ctx::stack_context allocate() {
    // Stacks are a multiple of 4 KiB apart, so their tops would all fall into the same cache
    // sets; starting each a different multiple of 256 bytes below the top spreads them.
    static constexpr size_t kColors = 16, kColorBytes = 256;
    thread_local size_t next_color = 0;
    const size_t color = (next_color++ % kColors) * kColorBytes;
    void* base = tls_stacks.take();
    ctx::stack_context sc;
    owner->stack_lo = reinterpret_cast<uintptr_t>(base) + StackCache::page();
    sc.size = settings().stack_bytes - color;
    sc.sp = static_cast<char*>(base) + StackCache::mapping_bytes() - color;
#ifdef PETAL_SIM_ASAN
    owner->stack_bottom = static_cast<char*>(base) + StackCache::page();
    // The previous fiber on this stack left its frames' redzones poisoned (the bottom frame
    // of a fiber never returns): start from a clean shadow.
    __asan_unpoison_memory_region(owner->stack_bottom, settings().stack_bytes);
#endif
    return sc;
  }
  void deallocate(ctx::stack_context& sc) noexcept {
    // sp - size is the bottom of the usable stack, one guard page above the mapping.
    tls_stacks.give(static_cast<char*>(sc.sp) - sc.size - StackCache::page());
  }
};

struct Warp {
  unsigned existing = 0;  // lanes that exist (a partial last warp has fewer)
  unsigned exited = 0;
  unsigned waiting = 0;  // lanes waiting at a warp intrinsic
};

struct Launch {
  const char* kernel_name;
  dim3 grid, block;
  size_t dynamic_smem_bytes;
  void (*body)(void*);
  void* payload;
  uint64_t seed;
  unsigned max_threads;  // __launch_bounds__ of the kernel (1024 when it has none)
};

struct Block {
  const Launch* launch = nullptr;
  uint3 block_idx{};
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  std::vector<unsigned> ready;
  unsigned live = 0;
  uint64_t rng = 0;
  bool aborting = false;
  std::string error;           // first bug found (empty: none)
  std::exception_ptr thrown;   // what a kernel threw
  unsigned char* dynamic_smem = nullptr;
  std::vector<void*> fresh_shared;  // static shared arrays already poisoned for this block
  unsigned barrier_generation = 0;
  char barrier_sync[2] = {};  // race detection: released into on arrival, acquired after release
  char start_sync = 0;        // race detection: the scheduler's release at block start
  uint64_t idle_events = 0;   // scheduling points since the last progress
};

std::string dims(const uint3& v) {
  std::ostringstream os;
  os << '(' << v.x << ',' << v.y << ',' << v.z << ')';
  return os.str();
}

std::string where(const Block& b) {
  return "sim: kernel '" + std::string(b.launch->kernel_name) + "' block " + dims(b.block_idx);
}

std::string thread_name(const Thread& t) { return "thread " + dims(t.thread_idx); }

std::string site(const Thread& t) { return short_path(t.file) + ":" + std::to_string(t.line); }

std::string describe_wait(const Thread& t) {
  std::ostringstream os;
  switch (t.state) {
    case State::Exited: os << "has returned"; break;
    case State::AtBarrier: os << "waits at __syncthreads at " << site(t); break;
    case State::AtWarpOp:
      os << "waits at " << t.op_name << " (mask 0x" << std::hex << t.mask << std::dec << ") at " << site(t);
      break;
    default: os << "is running"; break;
  }
  return os.str();
}

void fail(Block& b, const std::string& msg) {
  if (b.error.empty()) b.error = where(b) + ": " + msg;
}

// ------------------------------------------------------------------ barrier identity

/// Dynamic shared memory a launch may use without the opt-in (all of petal's targets).
constexpr size_t kDefaultDynamicSharedMemory = 48 * 1024;

/// Hash of the return addresses above the function that called the barrier, following the
/// frame-pointer chain (the simulated sources are built with -fno-omit-frame-pointer) inside
/// this fiber's stack, below the fiber's entry frame. The innermost return address (inside
/// the function that calls __syncthreads) is left out: the compiler may duplicate that call
/// (loop unswitching, jump threading) without the source having two barriers.
__attribute__((noinline, no_sanitize_address)) uint64_t caller_chain(const Thread& t) {
  const uintptr_t lo = t.stack_lo, hi = t.entry_frame;
  auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  uint64_t h = 0x9e3779b97f4a7c15ull;
  int depth = 0;
  for (int i = 0; i < 32; ++i) {
    if (fp < lo || fp + 2 * sizeof(uintptr_t) > hi || fp % sizeof(uintptr_t) != 0) break;
    const auto* frame = reinterpret_cast<const uintptr_t*>(fp);
    const uintptr_t next = frame[0], ret = frame[1];
    // frame 0: caller_chain's return into block_barrier; frame 1: block_barrier's return into
    // the function calling __syncthreads (left out, see above); from frame 2 on: the callers.
    if (depth >= 2) h = (h ^ ret) * 0x100000001b3ull;
    ++depth;
    if (next <= fp) break;
    fp = next;
  }
  return h;
}

// ------------------------------------------------------------------ fiber switching

#ifdef PETAL_SIM_ASAN
// Boost.Context's fcontext switches are invisible to ASan: tell it which stack is in use.
#define PETAL_SIM_START_SWITCH(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define PETAL_SIM_FINISH_SWITCH(fake, bottom_out, size_out) __sanitizer_finish_switch_fiber(fake, bottom_out, size_out)
#else
#define PETAL_SIM_START_SWITCH(save, bottom, size) ((void)0)
#define PETAL_SIM_FINISH_SWITCH(fake, bottom_out, size_out) ((void)0)
#endif

/// Inside a fiber: gives control back to the scheduler until it resumes this thread.
void suspend(Thread& t) {
  PETAL_TSAN(__tsan_switch_to_fiber(t.tsan_scheduler, kTsanNoSync));
  PETAL_SIM_START_SWITCH(&t.fake_stack, t.scheduler_stack_bottom, t.scheduler_stack_size);
  *t.scheduler = std::move(*t.scheduler).resume();
  PETAL_SIM_FINISH_SWITCH(t.fake_stack, &t.scheduler_stack_bottom, &t.scheduler_stack_size);
  if (t.block->aborting) throw AbortFiber{};
}

/// In the scheduler: runs thread t until it blocks or returns.
void resume(Thread& t) {
  t.state = State::Running;
  detail::current_thread = &t;
#ifdef PETAL_SIM_ASAN
  void* fake = nullptr;
  PETAL_SIM_START_SWITCH(&fake, t.stack_bottom, settings().stack_bytes);
  t.fiber = std::move(t.fiber).resume();
  PETAL_SIM_FINISH_SWITCH(fake, nullptr, nullptr);
#else
  PETAL_TSAN(__tsan_switch_to_fiber(t.tsan_fiber, kTsanNoSync));
  t.fiber = std::move(t.fiber).resume();
#endif
  detail::current_thread = nullptr;
}

void make_fiber(Thread& t) {
  PooledStack alloc{&t};
  t.fiber = ctx::fiber(std::allocator_arg, alloc, [&t](ctx::fiber&& scheduler) -> ctx::fiber {
    PETAL_SIM_FINISH_SWITCH(nullptr, &t.scheduler_stack_bottom, &t.scheduler_stack_size);
    t.scheduler = &scheduler;
    t.entry_frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    Block& b = *t.block;
    PETAL_TSAN(__tsan_acquire(&b.start_sync));  // block start orders the host's writes before it
    if (!b.aborting) {
      try {
        b.launch->body(b.launch->payload);
      } catch (const AbortFiber&) {
      } catch (...) {
        if (!b.thrown && b.error.empty()) b.thrown = std::current_exception();
      }
    }
    if (t.ptx_state_free != nullptr && t.ptx_state != nullptr) t.ptx_state_free(t.ptx_state);
    t.ptx_state = nullptr;
    t.state = State::Exited;
    t.scheduler = nullptr;
    // Block end: this thread's accesses happen before whatever the host does after the block.
    PETAL_TSAN(__tsan_switch_to_fiber(t.tsan_scheduler, 0));
    PETAL_SIM_START_SWITCH(nullptr, t.scheduler_stack_bottom, t.scheduler_stack_size);
    return std::move(scheduler);
  });
}

// ------------------------------------------------------------------ warp intrinsics

/// Source lane of a shuffle, following PTX shfl.sync (c = segment mask and clamp value).
unsigned shuffle_source(WarpOp op, unsigned lane, int param, int width) {
  const unsigned seg = static_cast<unsigned>(32 - width);  // c[12:8]
  const unsigned b = static_cast<unsigned>(param) & 31u;
  const unsigned clamp = op == WarpOp::ShflUp ? 0u : 31u;  // c[4:0]
  const int min_lane = static_cast<int>(lane & seg);
  const int max_lane = static_cast<int>((lane & seg) | (clamp & ~seg));
  int j = static_cast<int>(lane);
  bool in_range = false;
  switch (op) {
    case WarpOp::ShflUp: j = static_cast<int>(lane) - static_cast<int>(b); in_range = j >= max_lane; break;
    case WarpOp::ShflDown: j = static_cast<int>(lane + b); in_range = j <= max_lane; break;
    case WarpOp::ShflXor: j = static_cast<int>(lane ^ b); in_range = j <= max_lane; break;
    default: j = min_lane | static_cast<int>(b & ~seg); in_range = j <= max_lane; break;
  }
  return in_range ? static_cast<unsigned>(j) : lane;
}

/// Two lanes of warp w that disagree about a warp intrinsic: names both, their calls and masks.
void fail_mismatch(Block& b, unsigned w, const Thread& lead, const Thread& t) {
  std::ostringstream os;
  os << "warp intrinsic mismatch in warp " << w << ": " << thread_name(lead) << " (lane " << lead.lane << ") "
     << describe_wait(lead) << " but " << thread_name(t) << " (lane " << t.lane << ") " << describe_wait(t)
     << " (all lanes named in a mask must call the same intrinsic with the same mask)";
  fail(b, os.str());
}

/// Tries to complete the group of lanes of warp w that wait with `mask`: when every live lane
/// named in mask has arrived, computes each lane's result and makes them runnable (except
/// `caller`, which is running). Returns true when the group completed. Mismatches are failures.
bool try_complete(Block& b, unsigned w, const Thread& owner, const Thread* caller) {
  Warp& warp = b.warps[w];
  const unsigned mask = owner.mask;
  Thread* lanes = &b.threads[static_cast<size_t>(w) * 32];
  if (mask & warp.exited) {
    // Undefined on a GPU: the lane will never take part.
    const Thread& gone = lanes[__builtin_ctz(mask & warp.exited)];
    std::ostringstream os;
    os << thread_name(owner) << " " << describe_wait(owner) << " but " << thread_name(gone) << " (lane "
       << gone.lane << "), named in the mask, has already exited (a warp intrinsic's mask may only name "
       << "lanes that take part)";
    fail(b, os.str());
    return false;
  }
  const unsigned required = mask & warp.existing;
  if ((warp.waiting & required) != required) return false;
  // Every required lane waits at a warp intrinsic: it must be the same one, with the same mask.
  const Thread& lead = owner;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(required >> l & 1u)) continue;
    const Thread& t = lanes[l];
    if (t.mask != mask || t.op != lead.op ||
        (t.op == WarpOp::Matrix && std::strcmp(t.op_name, lead.op_name) != 0)) {
      fail_mismatch(b, w, lead, t);
      return false;
    }
  }
  // A lane outside the group that waits with a mask naming lanes of the group: the two groups
  // disagree about who takes part (undefined on a GPU).
  for (unsigned l = 0; l < 32; ++l) {
    if (!((warp.waiting & ~required) >> l & 1u)) continue;
    const Thread& t = lanes[l];
    if ((t.mask & required) == 0) continue;
    fail_mismatch(b, w, lead, t);
    return false;
  }
  // Race detection: each lane acquires what every lane of the group released on arrival.
  for (unsigned l = 0; l < 32; ++l) {
    if (!(required >> l & 1u)) continue;
    lanes[l].partners = required;
    for (unsigned k = 0; k < 32; ++k)
      if (required >> k & 1u) lanes[l].partner_slot[k] = static_cast<uint8_t>(lanes[k].warp_ops & 3u);
  }
  const WarpOp op = lead.op;
  if (op == WarpOp::Matrix) {
    if (required != 0xffffffffu) {
      const unsigned gone = ~required;
      const Thread& m = lanes[__builtin_ctz(gone)];
      std::ostringstream os;
      os << thread_name(lead) << " " << describe_wait(lead) << " but lane " << m.lane << " of warp " << w
         << (warp.existing >> m.lane & 1u ? " has exited" : " does not exist (partial warp)")
         << " (warp-wide matrix instructions need all 32 lanes of the warp)";
      fail(b, os.str());
      return false;
    }
  }
  uint64_t reduced = 0;
  unsigned ballot = 0;
  switch (op) {
    case WarpOp::ReduceMinU: reduced = UINT32_MAX; break;
    case WarpOp::ReduceMinI: reduced = static_cast<uint32_t>(INT32_MAX); break;
    case WarpOp::ReduceMaxI: reduced = static_cast<uint32_t>(INT32_MIN); break;
    case WarpOp::ReduceAnd: reduced = UINT32_MAX; break;
    default: break;
  }
  for (unsigned l = 0; l < 32; ++l) {
    if (!(required >> l & 1u)) continue;
    const uint64_t v = lanes[l].value;
    const uint32_t u = static_cast<uint32_t>(v);
    if (v != 0) ballot |= 1u << l;
    switch (op) {
      case WarpOp::ReduceAddU: reduced = static_cast<uint32_t>(reduced + u); break;
      case WarpOp::ReduceMinU: reduced = std::min<uint32_t>(static_cast<uint32_t>(reduced), u); break;
      case WarpOp::ReduceMaxU: reduced = std::max<uint32_t>(static_cast<uint32_t>(reduced), u); break;
      case WarpOp::ReduceMinI:
        reduced = static_cast<uint32_t>(std::min(static_cast<int32_t>(reduced), static_cast<int32_t>(u)));
        break;
      case WarpOp::ReduceMaxI:
        reduced = static_cast<uint32_t>(std::max(static_cast<int32_t>(reduced), static_cast<int32_t>(u)));
        break;
      case WarpOp::ReduceAnd: reduced &= u; break;
      case WarpOp::ReduceOr: reduced |= u; break;
      case WarpOp::ReduceXor: reduced ^= u; break;
      default: break;
    }
  }
  for (unsigned l = 0; l < 32; ++l) {
    if (!(required >> l & 1u)) continue;
    Thread& t = lanes[l];
    switch (op) {
      case WarpOp::Sync:
      case WarpOp::Matrix: t.result = 0; break;
      case WarpOp::ShflIdx:
      case WarpOp::ShflUp:
      case WarpOp::ShflDown:
      case WarpOp::ShflXor: {
        const unsigned src = shuffle_source(op, l, t.param, t.width);
        // Reading a lane that does not take part is undefined on a GPU: poison it.
        t.result = (required >> src & 1u) ? lanes[src].value : ~uint64_t{0};
        break;
      }
      case WarpOp::Ballot: t.result = ballot; break;
      case WarpOp::Any: t.result = ballot != 0; break;
      case WarpOp::All: t.result = ballot == required; break;
      case WarpOp::MatchAny:
      case WarpOp::MatchAll: {
        unsigned same = 0;
        for (unsigned k = 0; k < 32; ++k)
          if ((required >> k & 1u) && lanes[k].value == t.value) same |= 1u << k;
        t.result = op == WarpOp::MatchAny ? same : (same == required ? required : 0u);
        break;
      }
      default: t.result = reduced; break;
    }
  }
  warp.waiting &= ~required;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(required >> l & 1u)) continue;
    Thread& t = lanes[l];
    if (&t == caller) {
      t.state = State::Running;
    } else {
      t.state = State::Runnable;
      b.ready.push_back(t.linear);
    }
  }
  return true;
}

/// After lanes of warp w exited, groups waiting for them may be complete.
void retry_warp_groups(Block& b, unsigned w) {
  Warp& warp = b.warps[w];
  unsigned pending = warp.waiting;
  while (pending != 0 && b.error.empty()) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(pending));
    const unsigned mask = b.threads[static_cast<size_t>(w) * 32 + l].mask;
    if (!try_complete(b, w, b.threads[static_cast<size_t>(w) * 32 + l], nullptr)) {
      // Not complete: skip every lane waiting with this mask.
      for (unsigned k = 0; k < 32; ++k)
        if ((pending >> k & 1u) && b.threads[static_cast<size_t>(w) * 32 + k].mask == mask) pending &= ~(1u << k);
    } else {
      pending = warp.waiting;
    }
  }
}

// ------------------------------------------------------------------ the scheduler

/// When no thread can run: release the barrier every live thread waits at, or report why
/// the block is stuck. Returns false when the block is stuck (b.error set).
bool resolve_stall(Block& b) {
  const Thread* exited = nullptr;
  const Thread* at_barrier = nullptr;
  const Thread* at_warp = nullptr;
  for (const Thread& t : b.threads) {
    if (t.state == State::Exited && exited == nullptr) exited = &t;
    if (t.state == State::AtBarrier && at_barrier == nullptr) at_barrier = &t;
    if (t.state == State::AtWarpOp && at_warp == nullptr) at_warp = &t;
  }
  if (at_warp != nullptr) {
    // A warp intrinsic waits for lanes that will never arrive: name one of them.
    const Warp& warp = b.warps[at_warp->warp];
    const unsigned required = at_warp->mask & warp.existing & ~warp.exited;
    const unsigned missing = required & ~warp.waiting;
    std::ostringstream os;
    os << thread_name(*at_warp) << " " << describe_wait(*at_warp) << " but ";
    if (missing != 0) {
      const Thread& m = b.threads[static_cast<size_t>(at_warp->warp) * 32 + __builtin_ctz(missing)];
      os << thread_name(m) << ", named in the mask, " << describe_wait(m);
    } else {
      os << "the lanes named in the mask wait at other warp intrinsics";
    }
    os << " (deadlock at a warp intrinsic)";
    fail(b, os.str());
    return false;
  }
  if (at_barrier == nullptr) return true;  // everyone returned
  if (exited != nullptr) {
    fail(b, thread_name(*exited) + " returned while " + thread_name(*at_barrier) + " " +
                describe_wait(*at_barrier) +
                " (early exit or a thread that skipped a barrier its block waits at: undefined behaviour on a GPU)");
    return false;
  }
  for (const Thread& t : b.threads) {
    const bool same_site = t.line == at_barrier->line &&
                           (t.file == at_barrier->file || std::strcmp(t.file, at_barrier->file) == 0);
    if (!same_site || t.chain != at_barrier->chain) {
      std::string msg = "divergent barrier: " + thread_name(*at_barrier) + " " + describe_wait(*at_barrier) +
                        " while " + thread_name(t) + " " + describe_wait(t);
      if (same_site) msg += ", reached through a different chain of calls (e.g. a helper called from two branches)";
      fail(b, msg + " (__syncthreads must be reached by every thread of the block at the same call)");
      return false;
    }
  }
  // Release: every thread waits at the same __syncthreads.
  ++b.barrier_generation;
  b.idle_events = 0;
  int count = 0;
  for (const Thread& t : b.threads) count += t.predicate;
  for (Thread& t : b.threads) {
    t.barrier_result = count;
    t.state = State::Runnable;
    b.ready.push_back(t.linear);
  }
  return true;
}

/// A block whose threads only spin: name the kernel and where each thread is.
void report_hang(Block& b) {
  std::ostringstream os;
  os << "no progress after " << b.idle_events
     << " scheduling points (a spin-wait that can never end: a thread waits for another of its block "
        "that cannot run, or for a value nobody writes)";
  int shown = 0;
  for (const Thread& t : b.threads) {
    if (shown++ == 8) {
      os << "; ...";
      break;
    }
    os << "; " << thread_name(t) << " ";
    if (t.state == State::Runnable && t.spin_what != nullptr)
      os << "spins in " << t.spin_what << " at " << short_path(t.spin_file) << ":" << t.spin_line;
    else
      os << describe_wait(t);
  }
  fail(b, os.str());
}

/// Runs every fiber to its end after a failure (they throw AbortFiber at their next
/// suspension point), so their stacks unwind and return to the cache.
void abort_block(Block& b) {
  b.aborting = true;
  for (Thread& t : b.threads)
    if (t.fiber) resume(t);
}

uint64_t run_block(Block& b, const Launch& launch, uint64_t linear_block) {
  const dim3 bd = launch.block;
  const unsigned n = bd.x * bd.y * bd.z;
  const unsigned nwarps = (n + 31) / 32;
  b.launch = &launch;
  b.block_idx = uint3{static_cast<unsigned>(linear_block % launch.grid.x),
                      static_cast<unsigned>(linear_block / launch.grid.x % launch.grid.y),
                      static_cast<unsigned>(linear_block / (static_cast<uint64_t>(launch.grid.x) * launch.grid.y))};
  b.threads.clear();
  b.threads.resize(n);
  b.warps.assign(nwarps, Warp{});
  b.ready.clear();
  b.live = n;
  b.aborting = false;
  b.error.clear();
  b.thrown = nullptr;
  b.fresh_shared.clear();
  b.barrier_generation = 0;
  b.idle_events = 0;
  uint64_t rng_state = launch.seed ^ (linear_block * 0xd1b54a32d192ed03ull);
  b.rng = splitmix64(rng_state);
  if (b.dynamic_smem != nullptr && launch.dynamic_smem_bytes > 0)
    std::memset(b.dynamic_smem, 0xff, launch.dynamic_smem_bytes);  // NaN-like leftovers, as garbage on a GPU

  for (unsigned i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    t.thread_idx = uint3{i % bd.x, i / bd.x % bd.y, i / (bd.x * bd.y)};
    t.block_idx = b.block_idx;
    t.block_dim = launch.block;
    t.grid_dim = launch.grid;
    t.block = &b;
    t.linear = i;
    t.lane = i % 32;
    t.warp = i / 32;
    b.warps[t.warp].existing |= 1u << t.lane;
#ifdef PETAL_SIM_TSAN
    thread_local std::vector<void*> tsan_fibers;  // reused by every block of this host thread
    thread_local std::vector<std::string> tsan_names;
    if (tsan_fibers.size() <= i) {
      tsan_fibers.resize(i + 1, nullptr);
      tsan_names.resize(i + 1);
    }
    if (tsan_fibers[i] == nullptr) tsan_fibers[i] = __tsan_create_fiber(0);
    t.tsan_fiber = tsan_fibers[i];
    t.tsan_scheduler = __tsan_get_current_fiber();
    tsan_names[i] = "sim kernel '" + std::string(launch.kernel_name) + "' block " + dims(b.block_idx) + " " +
                    thread_name(t);
    __tsan_set_fiber_name(t.tsan_fiber, tsan_names[i].c_str());
#endif
    make_fiber(t);
    b.ready.push_back(i);
  }
  PETAL_TSAN(__tsan_release(&b.start_sync));

  uint64_t switches = 0;
  for (;;) {
    while (!b.ready.empty() && b.error.empty() && !b.thrown) {
      const size_t pick = static_cast<size_t>(splitmix64(b.rng) % b.ready.size());
      const unsigned id = b.ready[pick];
      b.ready[pick] = b.ready.back();
      b.ready.pop_back();
      Thread& t = b.threads[id];
      resume(t);
      ++switches;
      if (t.state == State::Runnable) {  // back from a scheduling point (atomic, __nanosleep)
        if (++b.idle_events > settings().hang_events) {
          report_hang(b);
          break;
        }
        b.ready.push_back(id);
      } else if (t.state == State::Exited) {
        b.idle_events = 0;
        --b.live;
        b.warps[t.warp].exited |= 1u << t.lane;
        retry_warp_groups(b, t.warp);
      }
    }
    if (!b.error.empty() || b.thrown) break;
    if (b.live == 0) return switches;
    if (!resolve_stall(b)) break;
  }
  abort_block(b);
  if (b.thrown) std::rethrow_exception(b.thrown);
  throw Error(b.error);
}

// ------------------------------------------------------------------ host threads

std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}
WorkerPool& pool() {
  static WorkerPool p;
  return p;
}

/// Per-host-thread reusable block state and dynamic shared memory.
struct HostThreadState {
  Block block;
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> smem{nullptr, [](unsigned char* p) {
                                                                   ::operator delete(p, std::align_val_t(16));
                                                                 }};
};

Block& block_state_with_smem(size_t smem_bytes) {
  thread_local HostThreadState state;
  // Exactly smem_bytes, freshly allocated per launch, so ASan sees an overflow of it.
  state.smem.reset(static_cast<unsigned char*>(::operator new(std::max<size_t>(smem_bytes, 1), std::align_val_t(16))));
  state.block.dynamic_smem = state.smem.get();
  return state.block;
}

}  // namespace

// ------------------------------------------------------------------ sanitizer reports

/// A sanitizer (UBSan's alignment check in every sim build, ASan, TSan) is about to end the
/// process over a report: say which simulated thread of which kernel made it.
void on_sanitizer_death() {
  const auto* t = static_cast<const Thread*>(detail::current_thread);
  if (t == nullptr || t->block == nullptr || t->block->launch == nullptr) return;
  std::fprintf(stderr, "%s: %s: the sanitizer report above was raised by this simulated thread\n",
               where(*t->block).c_str(), thread_name(*t).c_str());
}
struct DeathCallback {
  DeathCallback() { __sanitizer_set_death_callback(on_sanitizer_death); }
} register_death_callback;

// ------------------------------------------------------------------ public interface

void set_schedule_seed(uint64_t seed) {
  settings().seed = seed;
  settings().launch_counter = 0;
}
uint64_t schedule_seed() { return settings().seed; }

void set_host_threads(int n) { settings().host_threads = n > 0 ? std::min(n, 256) : default_host_threads(); }
int host_threads() {
#if defined(PETAL_SIM_STATIC_SHARED) || defined(PETAL_SIM_TSAN)
  return 1;  // one copy of __shared__ (ASan); blocks ordered one after another (TSan)
#else
  return settings().host_threads;
#endif
}

size_t fiber_stack_bytes() { return settings().stack_bytes; }

void set_hang_limit(uint64_t events) { settings().hang_events = events > 0 ? events : 1; }
uint64_t hang_limit() { return settings().hang_events; }

void set_target_arch(int sm) {
  PETAL_CHECK(sm == 80 || sm == 90, "sim: target architecture must be 80 or 90 (sm_80, sm_90), got ", sm);
  settings().target_arch = sm;
}
int target_arch() { return settings().target_arch; }
size_t max_dynamic_shared_memory_optin() {
  return target_arch() == 90 ? size_t{227} * 1024 : size_t{163} * 1024;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
}

Stats stats() {
  Settings& s = settings();
  Stats st;
  st.launches = s.launches;
  st.blocks = s.blocks;
  st.threads = s.threads;
  st.switches = s.switches;
  return st;
}

namespace detail {

void opt_in_dynamic_shared_memory(const void* kernel_id, const char* kernel_name, size_t bytes) {
  const char* name = kernel_name != nullptr ? kernel_name : "?";
  if (bytes > max_dynamic_shared_memory_optin())
    PETAL_FAIL("sim: kernel '", name, "': cudaFuncSetAttribute(MaxDynamicSharedMemorySize, ", bytes,
               ") exceeds the ", max_dynamic_shared_memory_optin(), " bytes per block of sm_", target_arch(),
               " (cudaErrorInvalidValue on a GPU)");
  Settings& s = settings();
  std::lock_guard<std::mutex> lock(s.opt_in_mutex);
  for (auto& entry : s.opt_ins)
    if (entry.first == kernel_id) {
      entry.second = bytes;
      return;
    }
  s.opt_ins.emplace_back(kernel_id, bytes);
}

void launch_erased(const char* kernel_name, const void* kernel_id, dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                   unsigned max_threads, void (*body)(void*), void* payload) {
  const char* name = kernel_name != nullptr ? kernel_name : "?";
  if (current_thread != nullptr) PETAL_FAIL("sim: kernel '", name, "' launched from inside a kernel (not supported)");
  const uint64_t threads_per_block = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads_per_block == 0 || threads_per_block > 1024 ||
      block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    PETAL_FAIL("sim: invalid launch configuration for kernel '", name, "': grid (", grid.x, ",", grid.y, ",", grid.z,
               "), block (", block.x, ",", block.y, ",", block.z,
               ") (limits: grid.x <= 2^31-1, grid.y/z <= 65535, block <= 1024 threads with x, y <= 1024, z <= 64;"
               " cudaErrorInvalidConfiguration on a GPU)");
  if (threads_per_block > max_threads)
    PETAL_FAIL("sim: kernel '", name, "' launched with ", threads_per_block, " threads per block (block (", block.x, ",",
               block.y, ",", block.z, ")) but its __launch_bounds__ allow at most ", max_threads,
               " (cudaErrorInvalidValue / too many resources requested on a GPU)");
  if (dynamic_smem_bytes > kDefaultDynamicSharedMemory) {
    size_t opted = 0;
    {
      Settings& s = settings();
      std::lock_guard<std::mutex> lock(s.opt_in_mutex);
      for (const auto& entry : s.opt_ins)
        if (entry.first == kernel_id) opted = entry.second;
    }
    if (dynamic_smem_bytes > max_dynamic_shared_memory_optin())
      PETAL_FAIL("sim: kernel '", name, "' asks for ", dynamic_smem_bytes, " bytes of dynamic shared memory, more than the ",
                 max_dynamic_shared_memory_optin(), " bytes per block of sm_", target_arch());
    if (dynamic_smem_bytes > opted)
      PETAL_FAIL("sim: kernel '", name, "' asks for ", dynamic_smem_bytes,
                 " bytes of dynamic shared memory: over 48 KiB needs the opt-in first "
                 "(opt_in_dynamic_shared_memory, i.e. cudaFuncSetAttribute(kernel, "
                 "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)); this kernel opted in to ",
                 opted, " bytes");
  }

  std::lock_guard<std::mutex> serialize(launch_mutex());
  Settings& s = settings();
  Launch launch{name, grid, block, dynamic_smem_bytes, body, payload, 0, max_threads};
  uint64_t seed_state = s.seed.load() ^ (s.launch_counter++ * 0x2545f4914f6cdd1dull);
  launch.seed = splitmix64(seed_state);
  const uint64_t nblocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;

  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> switches{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  auto work = [&] {
    Block& b = block_state_with_smem(dynamic_smem_bytes);
    uint64_t local_switches = 0;
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) break;
      const uint64_t id = next.fetch_add(1);
      if (id >= nblocks) break;
      try {
        local_switches += run_block(b, launch, id);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
    switches += local_switches;
  };
  // Every pool thread takes part (one that finds no block left returns at once): resizing
  // the pool to each grid would churn threads.
  const int participants = host_threads();
  if (participants <= 1 || nblocks <= 1)
    work();
  else
    pool().run(participants, work);

  s.launches++;
  s.blocks += nblocks;
  s.threads += nblocks * threads_per_block;
  s.switches += switches.load();
  if (error) std::rethrow_exception(error);
}

int block_barrier(BarrierKind kind, int predicate, const char* file, int line) {
  Thread& t = *static_cast<Thread*>(current_thread);
  t.state = State::AtBarrier;
  t.file = file;
  t.line = line;
  t.op_name = "__syncthreads";
  t.predicate = predicate;
  t.chain = caller_chain(t);
  Block& b = *t.block;
  char* sync = &b.barrier_sync[b.barrier_generation & 1u];
  PETAL_TSAN(__tsan_release(sync));
  suspend(t);
  PETAL_TSAN(__tsan_acquire(sync));
  const int n = static_cast<int>(t.block->threads.size());
  switch (kind) {
    case BarrierKind::Count: return t.barrier_result;
    case BarrierKind::And: return t.barrier_result == n;
    case BarrierKind::Or: return t.barrier_result != 0;
    default: return 0;
  }
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int param, int width, const char* name,
                         const char* file, int line) {
  Thread& t = *static_cast<Thread*>(current_thread);
  Block& b = *t.block;
  t.file = file;
  t.line = line;
  t.op_name = name;
  t.op = op;
  t.mask = mask;
  t.value = value;
  t.param = param;
  t.width = width;
  if (!(mask >> t.lane & 1u)) {
    std::ostringstream os;
    os << thread_name(t) << " (lane " << t.lane << " of warp " << t.warp << ") calls " << name << " at " << site(t)
       << " with mask 0x" << std::hex << mask << " that does not name its own lane";
    fail(b, os.str());
    t.state = State::AtWarpOp;
    suspend(t);  // the scheduler sees the error and unwinds this fiber
  }
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    fail(b, thread_name(t) + " calls " + name + " at " + site(t) + " with width " + std::to_string(width) +
                " (must be a power of two up to 32)");
    t.state = State::AtWarpOp;
    suspend(t);
  }
  t.state = State::AtWarpOp;
  b.warps[t.warp].waiting |= 1u << t.lane;
  ++t.warp_ops;
  PETAL_TSAN(__tsan_release(&t.warp_sync[t.warp_ops & 3u]));
  const bool completed_here = try_complete(b, t.warp, t, &t);
  if (!completed_here) suspend(t);
  b.idle_events = 0;
#ifdef PETAL_SIM_TSAN
  Thread* lanes = &b.threads[static_cast<size_t>(t.warp) * 32];
  for (unsigned k = 0; k < 32; ++k)
    if (t.partners >> k & 1u) __tsan_acquire(&lanes[k].warp_sync[t.partner_slot[k]]);
#endif
  if (completed_here && op == WarpOp::Matrix) {
    Thread* group = &b.threads[static_cast<size_t>(t.warp) * 32];
    void* data[32];
    for (unsigned l = 0; l < 32; ++l) data[l] = reinterpret_cast<void*>(group[l].value);
    t.matrix_compute(data);  // before any other lane of the warp runs again
    // The other lanes acquire this lane's slot when they resume: they see what compute wrote.
    PETAL_TSAN(__tsan_release(&t.warp_sync[t.warp_ops & 3u]));
  }
  return t.result;
}

void* fresh_shared(void* p, size_t bytes) {
  Thread& t = *static_cast<Thread*>(current_thread);
  Block& b = *t.block;
  for (void* q : b.fresh_shared)
    if (q == p) return p;
  b.fresh_shared.push_back(p);
  // Poison: what no thread of this block wrote reads as NaN (0xff bytes). Not a memory access
  // of the kernel's (race detection ignores it; the block start orders it for the others).
  PETAL_TSAN(__tsan_ignore_thread_begin());
  std::memset(p, 0xff, bytes);
  PETAL_TSAN(__tsan_ignore_thread_end());
  return p;
}

void yield_point(const char* what, bool changed, const char* file, int line) {
  Thread* t = static_cast<Thread*>(current_thread);
  if (t == nullptr) return;  // host code
  Block& b = *t->block;
  if (changed) b.idle_events = 0;
  t->spin_what = what;
  t->spin_file = file;
  t->spin_line = line;
  t->state = State::Runnable;
  suspend(*t);
  t->spin_what = nullptr;
}

void check_alignment(const void* p, size_t alignment, const char* what, const char* file, int line) {
  if (reinterpret_cast<uintptr_t>(p) % alignment == 0) return;
  Thread* t = static_cast<Thread*>(current_thread);
  std::ostringstream os;
  os << what << " at " << short_path(file) << ":" << line << " on address " << p << ", which is not " << alignment
     << "-byte aligned (misaligned address error on a GPU)";
  if (t == nullptr) PETAL_FAIL("sim: ", os.str());
  fail(*t->block, thread_name(*t) + " " + os.str());
  t->state = State::AtWarpOp;
  suspend(*t);
  std::abort();  // unreachable: suspend throws AbortFiber once the block fails
}

void warp_matrix_collective(void* lane_data, void (*compute)(void* const* lane_data), const char* name,
                            const char* file, int line) {
  Thread& t = *static_cast<Thread*>(current_thread);
  t.matrix_compute = compute;
  warp_collective(WarpOp::Matrix, 0xffffffffu, reinterpret_cast<uint64_t>(lane_data), 0, 32, name, file, line);
}

void* dynamic_shared_memory() { return static_cast<Thread*>(current_thread)->block->dynamic_smem; }

unsigned active_mask() {
  Thread& t = *static_cast<Thread*>(current_thread);
  const Warp& w = t.block->warps[t.warp];
  return w.existing & ~w.exited;
}

void trap(const char* file, int line) {
  Thread& t = *static_cast<Thread*>(current_thread);
  fail(*t.block, thread_name(t) + " called __trap() at " + short_path(file) + ":" + std::to_string(line));
  t.state = State::AtWarpOp;
  suspend(t);
  std::abort();  // unreachable: suspend throws AbortFiber once the block fails
}

}  // namespace detail
}  // namespace petal::sim
