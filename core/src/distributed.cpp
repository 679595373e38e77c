// The frontend of petal::distributed (see distributed.h): the process group's state, its
// communication thread, the agreement check before each collective, host staging for
// non-cpu or non-contiguous tensors, and averaging.
//
// Threading: a single thread owns the transport (it initialises MPI and makes every MPI
// call), running queued jobs in FIFO order. Callers enqueue and, for blocking collectives,
// wait on a future with the group's timeout. Tensor work (staging copies, the division of
// avg) happens on the caller's thread, never on the communication thread, so device
// backends see only their usual caller.
//
// Agreement check: each job first all-gathers a fixed-size Descriptor of the call from every
// rank. All ranks compare the same table, so either all run the collective or all throw the
// same petal::Error; no rank waits on a buffer exchange that the others will not make.
#include <petal/autograd.h>
#include <petal/distributed.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "distributed/transport.h"

namespace petal::distributed {
namespace {

enum class Collective : int32_t { barrier, broadcast, all_reduce, all_gather, reduce_scatter };

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::barrier: return "barrier";
    case Collective::broadcast: return "broadcast";
    case Collective::all_reduce: return "all_reduce";
    case Collective::all_gather: return "all_gather";
    case Collective::reduce_scatter: return "reduce_scatter";
  }
  return "?";
}

constexpr int kMaxDims = 8;

// What one rank is about to do; compared across ranks before any data moves.
struct Descriptor {
  int32_t collective = 0;
  int32_t dtype = 0;
  int32_t op = 0;
  int32_t root = 0;
  int32_t ndim = 0;
  int32_t pad = 0;
  int64_t numel = 0;
  int64_t dims[kMaxDims] = {};

  bool operator==(const Descriptor& o) const { return std::memcmp(this, &o, sizeof(Descriptor)) == 0; }

  std::string str() const {
    std::ostringstream os;
    const auto c = static_cast<Collective>(collective);
    os << collective_name(c);
    if (c == Collective::barrier) return os.str();
    os << " " << dtype_name(static_cast<DType>(dtype)) << " [";
    for (int i = 0; i < ndim && i < kMaxDims; ++i) os << (i ? ", " : "") << dims[i];
    if (ndim > kMaxDims) os << ", ...";
    os << "] (" << numel << " elements)";
    if (c == Collective::broadcast) os << " root " << root;
    if (c == Collective::all_reduce || c == Collective::reduce_scatter) os << (op ? " avg" : " sum");
    return os.str();
  }
};

Descriptor describe(Collective c, const Tensor* t, ReduceOp op, int root) {
  Descriptor d;
  d.collective = static_cast<int32_t>(c);
  d.op = static_cast<int32_t>(op);
  d.root = root;
  if (t) {
    d.dtype = static_cast<int32_t>(t->dtype());
    d.ndim = static_cast<int32_t>(t->dim());
    d.numel = t->numel();
    for (int i = 0; i < t->dim() && i < kMaxDims; ++i) d.dims[i] = t->size(i);
  }
  return d;
}

class Group {
 public:
  ~Group() {
    // At process exit: finish cleanly unless a collective timed out (then the transport is
    // stuck inside a call that will never return; the process must exit without it).
    std::unique_lock<std::mutex> lock(mutex_);
    if (!thread_.joinable()) return;
    if (broken_) {
      lock.unlock();
      thread_.detach();
      return;
    }
    lock.unlock();
    try {
      shutdown();
    } catch (...) {
    }
  }

  void init() {
    std::lock_guard<std::mutex> guard(api_mutex_);
    if (initialized_) return;
    PETAL_CHECK(!finalized_, "distributed::init: the process group was finalized; it cannot be initialised again");
#ifndef PETAL_WITH_MPI
    PETAL_FAIL("distributed::init: this petal was built without MPI (CMake found no MPI, or -DPETAL_MPI=OFF); "
               "install Open MPI (Debian: libopenmpi-dev openmpi-bin), reconfigure, and launch with mpirun");
#else
    if (const char* t = std::getenv("PETAL_DIST_TIMEOUT_S")) {
      char* end = nullptr;
      const double s = std::strtod(t, &end);
      PETAL_CHECK(end && *end == '\0' && s > 0, "distributed: PETAL_DIST_TIMEOUT_S='", t, "' is not a positive number of seconds");
      timeout_s_ = s;
    }
    stop_ = false;
    thread_ = std::thread([this] { loop(); });
    try {
      submit([this] { transport_ = detail::make_mpi_transport(); }).get();
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      cv_.notify_all();
      thread_.join();
      throw;
    }
    rank_ = transport_->rank();
    size_ = transport_->world_size();
    local_rank_ = transport_->local_rank();
    name_ = transport_->name();
    initialized_ = true;
#endif
  }

  void shutdown() {
    std::lock_guard<std::mutex> guard(api_mutex_);
    if (!initialized_) return;
    PETAL_CHECK(!broken_, "distributed::finalize: a collective timed out earlier; the transport cannot be shut down cleanly");
    std::exception_ptr error;
    try {
      submit([this] {
        transport_->shutdown();
        transport_.reset();
      }).get();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    initialized_ = false;
    finalized_ = true;
    if (error) std::rethrow_exception(error);
  }

  // Queues job (run on the communication thread after the agreement check of d). Jobs hold
  // the tensors they touch, so a caller that gave up on a timeout frees nothing under them.
  std::future<void> submit_collective(const char* api, const Descriptor& d, std::function<void()> job) {
    require(api);
    return submit([this, d, job = std::move(job)] {
      agree(d);
      job();
    });
  }

  // Waits for f with the timeout; a timeout leaves the group broken.
  void wait(std::future<void>& f, const std::string& what) {
    const auto limit = std::chrono::duration<double>(timeout_s_);
    if (f.wait_for(limit) == std::future_status::timeout) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        broken_ = true;
      }
      PETAL_FAIL("distributed::", what, ": timed out after ", timeout_s_, " s on rank ", rank_, " of ", size_,
                 ": another rank did not reach this collective (it died, is stuck, or issued a different sequence of "
                 "collectives); the process group is now unusable");
    }
    f.get();
  }

  void require(const char* api) const {
    PETAL_CHECK(initialized_, "distributed::", api, ": the process group is not initialised; call petal::distributed::init() first");
    PETAL_CHECK(!broken_, "distributed::", api, ": a collective timed out earlier; the process group is unusable");
  }

  void abort(int code) {
    if (!initialized_ || !transport_) return;
    transport_->abort(code);
  }

  detail::Transport& transport() { return *transport_; }
  bool initialized() const { return initialized_; }
  int rank() const { return initialized_ ? rank_ : 0; }
  int size() const { return initialized_ ? size_ : 1; }
  int local_rank() const { return initialized_ ? local_rank_ : 0; }
  std::string name() const { return initialized_ ? name_ : "none"; }
  double timeout_s_ = 600.0;

 private:
  std::future<void> submit(std::function<void()> fn) {
    std::packaged_task<void()> task(std::move(fn));
    auto f = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_all();
    return f;
  }

  void loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  // Runs on the communication thread.
  void agree(const Descriptor& mine) {
    std::vector<Descriptor> all(static_cast<size_t>(size_));
    transport_->all_gather_bytes(&mine, all.data(), sizeof(Descriptor));
    bool same = true;
    for (const auto& d : all) same = same && d == all[0];
    if (same) return;
    std::ostringstream os;
    os << "distributed::" << collective_name(static_cast<Collective>(mine.collective))
       << ": the ranks disagree on the collective (every rank must make the same call with the same shape and dtype):";
    for (size_t r = 0; r < all.size(); ++r) os << (r ? ";" : "") << " rank " << r << " calls " << all[r].str();
    PETAL_FAIL(os.str());
  }

  std::mutex api_mutex_;  // init/shutdown
  std::mutex mutex_;      // queue, stop_, broken_
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
  bool stop_ = false, broken_ = false, initialized_ = false, finalized_ = false;
  std::unique_ptr<detail::Transport> transport_;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  std::string name_;
};

Group& group() {
  static Group g;
  return g;
}

// A tensor's elements as a contiguous host buffer: the tensor itself when it is a
// contiguous cpu tensor, else a cpu copy that is written back after the collective.
struct Staged {
  Tensor target;
  Tensor host;
  bool write_back = false;
};

Staged stage(const Tensor& t, bool needs_values) {
  Staged s;
  s.target = t;
  if (t.device().is_cpu() && t.is_contiguous()) {
    s.host = t;
  } else {
    NoGradGuard ng;
    s.host = needs_values ? t.detach().to(kCPU).contiguous() : empty(t.shape(), TensorOptions(t.dtype(), kCPU));
    s.write_back = true;
  }
  return s;
}

void finish(Staged& s, ReduceOp op, int world) {
  NoGradGuard ng;
  Tensor t = s.target.detach();
  if (s.write_back) t.copy_(s.host);
  if (op == ReduceOp::avg && world > 1) t.div_(static_cast<double>(world));
}

void check_tensor(const char* api, const Tensor& t) {
  PETAL_CHECK(t.defined(), "distributed::", api, ": undefined tensor");
}

void check_reducible(const char* api, const Tensor& t, ReduceOp op) {
  check_tensor(api, t);
  PETAL_CHECK(t.dtype() != DType::b8, "distributed::", api, ": cannot reduce a bool tensor (convert to uint8 or int32 first)");
  PETAL_CHECK(op != ReduceOp::avg || t.is_floating_point(), "distributed::", api,
              ": avg needs a floating-point tensor, got ", dtype_name(t.dtype()), " (use sum and divide)");
}

}  // namespace

struct Work::State {
  std::future<void> done;
  Staged staged;
  ReduceOp op = ReduceOp::sum;
  int world = 1;
  bool waited = false;
};

bool is_available() {
#ifdef PETAL_WITH_MPI
  return true;
#else
  return false;
#endif
}

void init() { group().init(); }
bool is_initialized() { return group().initialized(); }
void finalize() { group().shutdown(); }
void abort(int code) { group().abort(code); }
int rank() { return group().rank(); }
int world_size() { return group().size(); }
int local_rank() { return group().local_rank(); }
bool is_main_process() { return group().rank() == 0; }
std::string backend_name() { return group().name(); }
void set_timeout(double seconds) {
  PETAL_CHECK(seconds > 0, "distributed::set_timeout: seconds must be positive, got ", seconds);
  group().timeout_s_ = seconds;
}
double timeout() { return group().timeout_s_; }

void barrier() {
  Group& g = group();
  auto f = g.submit_collective("barrier", describe(Collective::barrier, nullptr, ReduceOp::sum, 0),
                               [&g] { g.transport().barrier(); });
  g.wait(f, "barrier");
}

void broadcast(const Tensor& t, int root) {
  check_tensor("broadcast", t);
  Group& g = group();
  g.require("broadcast");
  PETAL_CHECK(root >= 0 && root < g.size(), "distributed::broadcast: root ", root, " is not a rank of a world of ", g.size());
  Staged s = stage(t, g.rank() == root);
  void* p = s.host.data_ptr();
  const size_t n = static_cast<size_t>(t.numel());
  const DType dt = t.dtype();
  auto f = g.submit_collective("broadcast", describe(Collective::broadcast, &t, ReduceOp::sum, root),
                               [&g, host = s.host, p, n, dt, root] { g.transport().broadcast(p, n, dt, root); });
  g.wait(f, "broadcast");
  finish(s, ReduceOp::sum, 1);
}

void all_reduce(const Tensor& t, ReduceOp op) {
  Work w = all_reduce_async(t, op);
  w.wait();
}

Work all_reduce_async(const Tensor& t, ReduceOp op) {
  check_reducible("all_reduce", t, op);
  Group& g = group();
  g.require("all_reduce");
  auto st = std::make_shared<Work::State>();
  st->staged = stage(t, true);
  st->op = op;
  st->world = g.size();
  void* p = st->staged.host.data_ptr();
  const size_t n = static_cast<size_t>(t.numel());
  const DType dt = t.dtype();
  st->done = g.submit_collective("all_reduce", describe(Collective::all_reduce, &t, op, 0),
                                 [&g, host = st->staged.host, p, n, dt] { g.transport().all_reduce_sum(p, n, dt); });
  return Work(st);
}

Tensor all_gather(const Tensor& t) {
  check_tensor("all_gather", t);
  Group& g = group();
  g.require("all_gather");
  NoGradGuard ng;
  Tensor in = t.detach().to(kCPU).contiguous();
  Shape shape = t.shape();
  shape.insert(shape.begin(), g.size());
  Tensor out = empty(shape, TensorOptions(t.dtype(), kCPU));
  const void* ip = in.data_ptr();
  void* op = out.data_ptr();
  const size_t n = static_cast<size_t>(t.numel());
  const DType dt = t.dtype();
  auto f = g.submit_collective("all_gather", describe(Collective::all_gather, &t, ReduceOp::sum, 0),
                               [&g, in, out, ip, op, n, dt] { g.transport().all_gather(ip, op, n, dt); });
  g.wait(f, "all_gather");
  return t.device().is_cpu() ? out : out.to(t.device());
}

Tensor reduce_scatter(const Tensor& t, ReduceOp op) {
  check_reducible("reduce_scatter", t, op);
  Group& g = group();
  g.require("reduce_scatter");
  PETAL_CHECK(t.dim() >= 1 && t.size(0) % g.size() == 0, "distributed::reduce_scatter: dimension 0 of ", shape_str(t.shape()),
              " must be a multiple of the world size ", g.size());
  NoGradGuard ng;
  Tensor in = t.detach().to(kCPU).contiguous();
  Shape shape = t.shape();
  shape[0] /= g.size();
  Tensor out = empty(shape, TensorOptions(t.dtype(), kCPU));
  const void* ip = in.data_ptr();
  void* outp = out.data_ptr();
  const size_t n = static_cast<size_t>(out.numel());
  const DType dt = t.dtype();
  auto f = g.submit_collective("reduce_scatter", describe(Collective::reduce_scatter, &t, op, 0),
                               [&g, in, out, ip, outp, n, dt] { g.transport().reduce_scatter_sum(ip, outp, n, dt); });
  g.wait(f, "reduce_scatter");
  if (op == ReduceOp::avg && g.size() > 1) out.div_(static_cast<double>(g.size()));
  return t.device().is_cpu() ? out : out.to(t.device());
}

Work::~Work() {
  if (state_ && !state_->waited) {
    try {
      wait();
    } catch (...) {
    }
  }
}
Work::Work(Work&&) noexcept = default;
Work& Work::operator=(Work&& o) noexcept {
  if (this != &o) {
    if (state_ && !state_->waited) {
      try {
        wait();
      } catch (...) {
      }
    }
    state_ = std::move(o.state_);
  }
  return *this;
}

void Work::wait() {
  PETAL_CHECK(state_ != nullptr, "distributed::Work::wait: empty Work");
  if (state_->waited) return;
  state_->waited = true;
  group().wait(state_->done, "all_reduce");
  finish(state_->staged, state_->op, state_->world);
}

bool Work::is_completed() const {
  return state_ && (state_->waited || state_->done.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
}

}  // namespace petal::distributed
