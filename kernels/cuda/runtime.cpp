// The real runtime layer of the CUDA backend (host code; linked with cudart, cuBLASLt
// and cuBLAS). Per device, created on first use and kept for the life of the process:
//  - one non-blocking compute stream: every allocation, copy, kernel and GEMM of that
//    device is ordered on it, so the backend never needs cross-stream events, except for
//  - one non-blocking copy stream for asynchronous host->device copies from pinned memory
//    (rt_memcpy_h2d_async, rt_malloc_h2d_async): each copy is followed by an event the
//    compute stream waits on, and its source is kept alive until that event has completed
//    (released at a later copy or synchronization, never while the DMA may read it);
//  - memory from the device's stream-ordered pool (cudaMallocAsync/cudaFreeAsync) with
//    the release threshold at its maximum, so freed blocks are reused without
//    returning to the driver (allocation is cheap, as in a caching allocator);
//  - two pinned staging buffers with events: host->device copies return as soon as
//    the source is staged, device->host copies overlap the DMA of one chunk with the
//    host copy of the previous one;
//  - a cuBLASLt handle and workspace for float32/bf16/f16 GEMMs (TF32 opt-in), with the
//    bias / GELU / bias-gradient epilogues of the fused Linear and the DGELU(_BGRAD) of the
//    fused MLP's backward (rt_gemm_epilogue), and a
//    cuBLAS handle for float64 and degenerate (k = 0) GEMMs.
// Every CUDA/cuBLAS call is checked and throws petal::Error naming the call and the op.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/runtime.h"

namespace petal::kernels::cuda_impl {

namespace {

[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* op, const char* file,
                                     int line) {
  PETAL_FAIL("cuda: ", call, " failed in ", op, ": ", cublasGetStatusName(st), " (", cublasGetStatusString(st),
             ") at ", file, ":", line);
}

#define CUBLAS_CHECK(op, call)                                                   \
  do {                                                                           \
    cublasStatus_t petal_cublas_st_ = (call);                                    \
    if (petal_cublas_st_ != CUBLAS_STATUS_SUCCESS)                               \
      throw_cublas_error(petal_cublas_st_, #call, op, __FILE__, __LINE__);      \
  } while (0)

constexpr size_t kStagingBytes = size_t(4) << 20;     // per staging buffer
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;  // cuBLASLt workspace (Hopper recommendation)

struct DeviceState {
  int device = 0;
  cudaStream_t stream = nullptr;
  bool pool_supported = false;
  cudaMemPool_t pool = nullptr;
  std::mutex staging_mutex;
  void* staging[2] = {nullptr, nullptr};
  cudaEvent_t staging_done[2] = {nullptr, nullptr};
  std::mutex blas_mutex;
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  void* lt_workspace = nullptr;
  // Asynchronous host->device copies (under copy_mutex).
  cudaStream_t copy_stream = nullptr;
  std::mutex copy_mutex;
  cudaEvent_t compute_mark = nullptr;  // the compute stream's tail, before a copy into memory it may use
  struct InFlight {
    cudaEvent_t done;                       // recorded on the copy stream after the copy
    std::shared_ptr<const void> keep_alive; // owns the pinned source
  };
  std::deque<InFlight> in_flight;  // in issue order (the copy stream runs in order)
  std::atomic<size_t> in_flight_count{0};
  std::vector<cudaEvent_t> spare_events;
};

thread_local int tls_current_device = -1;

void release_completed_copies(DeviceState& s);
void d2h_staged(DeviceState& s, void* dst, const void* src, size_t n);

int current_device() {
  if (tls_current_device < 0) CUDA_CHECK("current device", cudaGetDevice(&tls_current_device));
  return tls_current_device;
}

DeviceState* create_state(int device) {
  auto* s = new DeviceState();
  s->device = device;
  CUDA_CHECK("device setup", cudaSetDevice(device));
  CUDA_CHECK("device setup", cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  int pools = 0;
  CUDA_CHECK("device setup", cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
  s->pool_supported = pools != 0;
  if (s->pool_supported) {
    CUDA_CHECK("device setup", cudaDeviceGetDefaultMemPool(&s->pool, device));
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    CUDA_CHECK("device setup", cudaMemPoolSetAttribute(s->pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  for (int i = 0; i < 2; ++i) {
    CUDA_CHECK("device setup", cudaMallocHost(&s->staging[i], kStagingBytes));
    CUDA_CHECK("device setup", cudaEventCreateWithFlags(&s->staging_done[i], cudaEventDisableTiming));
  }
  CUDA_CHECK("device setup", cudaStreamCreateWithFlags(&s->copy_stream, cudaStreamNonBlocking));
  CUDA_CHECK("device setup", cudaEventCreateWithFlags(&s->compute_mark, cudaEventDisableTiming));
  return s;
}

/// State of the current device (created on first use; never destroyed).
DeviceState& state() {
  static std::mutex mutex;
  static std::vector<DeviceState*>* states = new std::vector<DeviceState*>();
  const int device = current_device();
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<int>(states->size()) <= device) states->resize(static_cast<size_t>(device) + 1, nullptr);
  DeviceState*& s = (*states)[static_cast<size_t>(device)];
  if (s == nullptr) s = create_state(device);
  return *s;
}

std::atomic<bool>& allow_tf32_flag() {
  static std::atomic<bool> flag([] {
    const char* env = std::getenv("PETAL_CUDA_TF32");
    return env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0;
  }());
  return flag;
}

}  // namespace

// ------------------------------------------------------------------ devices and streams

int rt_device_count() {
  static const int count = [] {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no GPU: report none, never fail
      return 0;
    }
    return n;
  }();
  return count;
}

void rt_set_device(int device) {
  if (tls_current_device == device) return;
  CUDA_CHECK("set device", cudaSetDevice(device));
  tls_current_device = device;
}

cudaStream_t rt_current_stream() { return state().stream; }

void rt_set_allow_tf32(bool allow) { allow_tf32_flag().store(allow); }
bool rt_allow_tf32() { return allow_tf32_flag().load(); }

// ------------------------------------------------------------------ memory

namespace {

/// n bytes from the device's pool, stream-ordered on `stream` (the compute or the copy stream).
void* malloc_on(DeviceState& s, size_t nbytes, cudaStream_t stream) {
  // Rounded up to 16 bytes: the byte-wide atomics (common.cuh, atomic_update_byte) CAS the
  // aligned 32-bit word around a bool/u8 element and vector accesses move 16 bytes, so no
  // kernel touches a byte outside the allocation (compute-sanitizer memcheck stays quiet).
  const size_t n = nbytes == 0 ? 16 : (nbytes + 15) / 16 * 16;
  void* p = nullptr;
  if (!s.pool_supported) {
    CUDA_CHECK("allocate", cudaMalloc(&p, n));
    return p;
  }
  cudaError_t err = cudaMallocAsync(&p, n, stream);
  if (err == cudaErrorMemoryAllocation) {
    // Give cached blocks back to the driver once, then retry.
    (void)cudaGetLastError();
    CUDA_CHECK("allocate", cudaStreamSynchronize(s.stream));
    CUDA_CHECK("allocate", cudaStreamSynchronize(s.copy_stream));
    CUDA_CHECK("allocate", cudaMemPoolTrimTo(s.pool, 0));
    err = cudaMallocAsync(&p, n, stream);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    PETAL_FAIL("cuda:", s.device, ": out of memory allocating ", nbytes, " bytes (", free_bytes, " of ", total_bytes,
               " bytes free)");
  }
  CUDA_CHECK("allocate", err);
  return p;
}

}  // namespace

void* rt_malloc(size_t nbytes) {
  DeviceState& s = state();
  return malloc_on(s, nbytes, s.stream);
}

void rt_free(void* p) {
  if (p == nullptr) return;
  DeviceState& s = state();
  cudaError_t err = s.pool_supported ? cudaFreeAsync(p, s.stream) : cudaFree(p);
  // At process exit the runtime may already be gone; the memory goes with it.
  if (err == cudaErrorCudartUnloading) return;
  CUDA_CHECK("deallocate", err);
}

void rt_memcpy_h2d(void* dst, const void* src, size_t n) {
  DeviceState& s = state();
  std::lock_guard<std::mutex> lock(s.staging_mutex);
  size_t done = 0;
  for (int chunk = 0; done < n; ++chunk) {
    const int b = chunk & 1;
    const size_t len = std::min(kStagingBytes, n - done);
    // Wait until the previous copy out of this staging buffer has finished.
    CUDA_CHECK("copy_from_host", cudaEventSynchronize(s.staging_done[b]));
    std::memcpy(s.staging[b], static_cast<const char*>(src) + done, len);
    CUDA_CHECK("copy_from_host", cudaMemcpyAsync(static_cast<char*>(dst) + done, s.staging[b], len,
                                                 cudaMemcpyHostToDevice, s.stream));
    CUDA_CHECK("copy_from_host", cudaEventRecord(s.staging_done[b], s.stream));
    done += len;
  }
}

void rt_memcpy_d2h(void* dst, const void* src, size_t n) {
  DeviceState& s = state();
  d2h_staged(s, dst, src, n);
  // The compute stream has reached this point: copies it waited for are done.
  release_completed_copies(s);
}

namespace {
void d2h_staged(DeviceState& s, void* dst, const void* src, size_t n) {
  std::lock_guard<std::mutex> lock(s.staging_mutex);
  size_t issued = 0, pending_off = 0, pending_len = 0;
  int pending_buf = -1;
  for (int chunk = 0; issued < n || pending_buf >= 0; ++chunk) {
    int issued_buf = -1;
    size_t issued_off = issued, issued_len = 0;
    if (issued < n) {
      issued_buf = chunk & 1;
      issued_len = std::min(kStagingBytes, n - issued);
      CUDA_CHECK("copy_to_host", cudaEventSynchronize(s.staging_done[issued_buf]));
      CUDA_CHECK("copy_to_host", cudaMemcpyAsync(s.staging[issued_buf], static_cast<const char*>(src) + issued,
                                                 issued_len, cudaMemcpyDeviceToHost, s.stream));
      CUDA_CHECK("copy_to_host", cudaEventRecord(s.staging_done[issued_buf], s.stream));
      issued += issued_len;
    }
    if (pending_buf >= 0) {  // drain the previous chunk while this one is in flight
      CUDA_CHECK("copy_to_host", cudaEventSynchronize(s.staging_done[pending_buf]));
      std::memcpy(static_cast<char*>(dst) + pending_off, s.staging[pending_buf], pending_len);
    }
    pending_buf = issued_buf;
    pending_off = issued_off;
    pending_len = issued_len;
  }
}
}  // namespace

void rt_memcpy_d2d(void* dst, const void* src, size_t n) {
  if (n == 0) return;
  CUDA_CHECK("copy", cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, state().stream));
}

void rt_memset(void* dst, int value, size_t n) {
  if (n == 0) return;
  CUDA_CHECK("memset", cudaMemsetAsync(dst, value, n, state().stream));
}

// ------------------------------------------------------------------ asynchronous copies

namespace {

/// Moves the keep-alives of the copies that have completed (a prefix: the copy stream runs in
/// order) to `released`, which the caller destroys after dropping copy_mutex (releasing a
/// source may free pinned memory). Called under copy_mutex.
void reap_copies(DeviceState& s, std::vector<std::shared_ptr<const void>>& released) {
  while (!s.in_flight.empty()) {
    DeviceState::InFlight& f = s.in_flight.front();
    const cudaError_t q = cudaEventQuery(f.done);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();  // not an error: the copy is still running
      break;
    }
    CUDA_CHECK("asynchronous copy", q);
    released.push_back(std::move(f.keep_alive));
    s.spare_events.push_back(f.done);
    s.in_flight.pop_front();
  }
  s.in_flight_count.store(s.in_flight.size(), std::memory_order_relaxed);
}

void release_completed_copies(DeviceState& s) {
  if (s.in_flight_count.load(std::memory_order_relaxed) == 0) return;
  std::vector<std::shared_ptr<const void>> released;
  std::lock_guard<std::mutex> lock(s.copy_mutex);
  reap_copies(s, released);
}  // lock released before `released` (declared first) is destroyed

/// Issues the copy of n bytes from pinned src to dst (nullptr: a new allocation made on the
/// copy stream) and returns dst.
void* h2d_async(void* dst, const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  DeviceState& s = state();
  std::vector<std::shared_ptr<const void>> released;  // destroyed after the lock below
  std::lock_guard<std::mutex> lock(s.copy_mutex);
  reap_copies(s, released);
  cudaEvent_t done = nullptr;
  if (!s.spare_events.empty()) {
    done = s.spare_events.back();
    s.spare_events.pop_back();
  } else {
    CUDA_CHECK("asynchronous copy", cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  }
  const bool allocated = dst == nullptr;
  cudaError_t err = cudaSuccess;
  if (allocated) {
    try {
      dst = malloc_on(s, n, s.copy_stream);  // ordered on the copy stream: no wait for the compute stream
    } catch (...) {
      s.spare_events.push_back(done);
      throw;
    }
  } else {
    // dst may still be read or written by the compute stream's earlier work.
    err = cudaEventRecord(s.compute_mark, s.stream);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(s.copy_stream, s.compute_mark, 0);
  }
  if (err == cudaSuccess && n != 0) err = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s.copy_stream);
  if (err != cudaSuccess) {  // nothing reads src: it may go with keep_alive
    s.spare_events.push_back(done);
    if (allocated) (void)(s.pool_supported ? cudaFreeAsync(dst, s.copy_stream) : cudaFree(dst));
    CUDA_CHECK("asynchronous copy", err);
  }
  // From here the DMA may read src until `done` has completed.
  err = cudaEventRecord(done, s.copy_stream);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(s.stream, done, 0);  // every later op sees the data
  if (err != cudaSuccess) {
    if (cudaStreamSynchronize(s.copy_stream) != cudaSuccess) {
      // The copy's end is unknown: src (and dst) must never be freed.
      new std::shared_ptr<const void>(std::move(keep_alive));  // NOLINT: deliberately leaked
    } else if (allocated) {
      (void)(s.pool_supported ? cudaFreeAsync(dst, s.copy_stream) : cudaFree(dst));  // the copy has finished
    }
    CUDA_CHECK("asynchronous copy", err);
  }
  s.in_flight.push_back(DeviceState::InFlight{done, std::move(keep_alive)});
  s.in_flight_count.store(s.in_flight.size(), std::memory_order_relaxed);
  return dst;
}

}  // namespace

void rt_memcpy_h2d_async(void* dst, const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  if (n == 0) return;
  h2d_async(dst, src, n, std::move(keep_alive));
}

void* rt_malloc_h2d_async(const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  return h2d_async(nullptr, src, n, std::move(keep_alive));
}

void* rt_host_alloc(size_t n) {
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, n == 0 ? 1 : n, cudaHostAllocPortable);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    PETAL_FAIL("cuda: out of memory allocating ", n, " bytes of pinned (page-locked) host memory");
  }
  CUDA_CHECK("pin_memory", err);
  return p;
}

void rt_host_free(void* p) {
  if (p == nullptr) return;
  const cudaError_t err = cudaFreeHost(p);
  if (err == cudaErrorCudartUnloading) return;  // at process exit
  CUDA_CHECK("free pinned memory", err);
}

void rt_synchronize() {
  DeviceState& s = state();
  CUDA_CHECK("synchronize", cudaStreamSynchronize(s.stream));
  CUDA_CHECK("synchronize", cudaStreamSynchronize(s.copy_stream));
  release_completed_copies(s);
}

// ------------------------------------------------------------------ GEMM

namespace {

/// Largest power of two <= 256 dividing the address and (when batched) the batch stride.
uint32_t alignment_of(const void* p, int64_t stride_bytes, bool batched) {
  uint64_t v = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batched && stride_bytes != 0) v |= static_cast<uint64_t>(stride_bytes);
  return static_cast<uint32_t>(v & (~v + 1));
}

int to_int(int64_t v, const char* what) {
  PETAL_CHECK(v <= std::numeric_limits<int>::max(), "cuda gemm: ", what, " = ", v, " exceeds the int range of cuBLAS");
  return static_cast<int>(v);
}

void ensure_blas(DeviceState& s) {
  if (s.lt == nullptr) {
    CUBLAS_CHECK("gemm", cublasLtCreate(&s.lt));
    CUDA_CHECK("gemm", cudaMalloc(&s.lt_workspace, kLtWorkspaceBytes));
  }
  if (s.blas == nullptr) {
    CUBLAS_CHECK("gemm", cublasCreate(&s.blas));
    CUBLAS_CHECK("gemm", cublasSetStream(s.blas, s.stream));
  }
}

/// The column-major problem cuBLAS solves for our row-major C = op(A) op(B):
/// C^T (n x m) = op(B)^T op(A)^T, so cuBLAS's "A" is our B and its "B" is our A.
struct ColMajor {
  cublasOperation_t op_a, op_b;  // applied to our b and our a
  uint64_t a_rows, a_cols, b_rows, b_cols;
};

ColMajor col_major(const GemmArgs& g) {
  ColMajor c;
  c.op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  c.a_rows = static_cast<uint64_t>(g.trans_b ? g.k : g.n);
  c.a_cols = static_cast<uint64_t>(g.trans_b ? g.n : g.k);
  c.op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  c.b_rows = static_cast<uint64_t>(g.trans_a ? g.m : g.k);
  c.b_cols = static_cast<uint64_t>(g.trans_a ? g.k : g.m);
  return c;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: PETAL_FAIL("cuda gemm: dtype ", dtype_name(t), " is not supported (floating dtypes only)");
  }
}

// RAII holders so a failed call does not leak cuBLASLt descriptors.
struct LtMatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~LtMatmulDesc() {
    if (d) cublasLtMatmulDescDestroy(d);
  }
};
struct LtLayout {
  cublasLtMatrixLayout_t d = nullptr;
  ~LtLayout() {
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};
struct LtPreference {
  cublasLtMatmulPreference_t d = nullptr;
  ~LtPreference() {
    if (d) cublasLtMatmulPreferenceDestroy(d);
  }
};

void make_layout(LtLayout& l, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                 int64_t stride) {
  CUBLAS_CHECK("gemm", cublasLtMatrixLayoutCreate(&l.d, type, rows, cols, ld));
  if (batch > 1) {
    int32_t count = to_int(batch, "batch");
    CUBLAS_CHECK("gemm", cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                          sizeof(count)));
    CUBLAS_CHECK("gemm", cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                          sizeof(stride)));
  }
}

/// What a cuBLASLt plan depends on: the problem (dtype, transposes, sizes, leading
/// dimensions, batch and strides), the operands' alignment, the TF32 policy and the
/// epilogue (with the aux leading dimension and the alignment of its bias and aux pointers),
/// never the pointers themselves.
struct LtKey {
  int64_t v[18];
  bool operator==(const LtKey& o) const { return std::memcmp(v, o.v, sizeof(v)) == 0; }
};
struct LtKeyHash {
  size_t operator()(const LtKey& k) const {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t x : k.v) h = (h ^ static_cast<uint64_t>(x)) * 0x100000001b3ull;
    return static_cast<size_t>(h);
  }
};
/// Descriptors, layouts and the chosen algorithm of one GEMM problem, built once.
struct LtPlan {
  LtMatmulDesc desc;
  LtLayout la, lb, lc;
  cublasLtMatmulHeuristicResult_t heuristic{};
  bool has_algorithm = false;  // false: cuBLASLt has none, the caller falls back to cuBLAS
};
/// Plans kept per device (bounded: a workload has a handful of GEMM shapes).
constexpr size_t kMaxLtPlans = 4096;
std::unordered_map<LtKey, std::unique_ptr<LtPlan>, LtKeyHash>& lt_plans(DeviceState& s) {
  static std::mutex m;
  static std::unordered_map<const DeviceState*, std::unordered_map<LtKey, std::unique_ptr<LtPlan>, LtKeyHash>> all;
  std::lock_guard<std::mutex> lock(m);
  return all[&s];
}

/// Builds the plan of one problem: descriptors, layouts, preference and the heuristic's
/// best algorithm.
cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::GeluAuxBias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case GemmEpilogue::GeluAux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case GemmEpilogue::BGradB: return CUBLASLT_EPILOGUE_BGRADB;
    case GemmEpilogue::DGelu: return CUBLASLT_EPILOGUE_DGELU;
    case GemmEpilogue::DGeluBGrad: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

/// Points the plan's epilogue at this call's bias and aux buffers.
void set_epilogue_pointers(cublasLtMatmulDesc_t desc, GemmEpilogue e, void* bias, void* aux) {
  if (e == GemmEpilogue::None) return;
  if (epilogue_uses_bias(e))
    CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  if (epilogue_uses_aux(e))
    CUBLAS_CHECK("gemm",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
}

std::unique_ptr<LtPlan> make_lt_plan(DeviceState& s, const GemmArgs& g, bool tf32, uint32_t align_a,
                                     uint32_t align_b, uint32_t align_c, GemmEpilogue epilogue, void* bias,
                                     void* aux, int64_t aux_ld) {
  auto plan = std::make_unique<LtPlan>();
  const cudaDataType_t type = cuda_type(g.dtype);
  const ColMajor cm = col_major(g);
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK("gemm", cublasLtMatmulDescCreate(&plan->desc.d, compute, CUDA_R_32F));
  CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &cm.op_a,
                                                      sizeof(cm.op_a)));
  CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &cm.op_b,
                                                      sizeof(cm.op_b)));
  if (epilogue != GemmEpilogue::None) {
    const cublasLtEpilogue_t e = lt_epilogue(epilogue);
    CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    if (epilogue_uses_bias(epilogue)) {
      const int32_t bias_type = type;  // the bias (gradient) vector in the output's dtype
      CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                          &bias_type, sizeof(bias_type)));
    }
    if (epilogue_uses_aux(epilogue)) {  // GELU input written (GELU_AUX*) or read (DGELU*), D's dtype
      CUBLAS_CHECK("gemm", cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                                          sizeof(aux_ld)));
    }
    set_epilogue_pointers(plan->desc.d, epilogue, bias, aux);
  }
  make_layout(plan->la, type, cm.a_rows, cm.a_cols, g.ldb, g.batch, g.stride_b);
  make_layout(plan->lb, type, cm.b_rows, cm.b_cols, g.lda, g.batch, g.stride_a);
  make_layout(plan->lc, type, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m), g.ldc, g.batch, g.stride_c);

  LtPreference pref;
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceCreate(&pref.d));
  uint64_t ws = kLtWorkspaceBytes;
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                            sizeof(ws)));
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                            &align_a, sizeof(align_a)));
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                            &align_b, sizeof(align_b)));
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                            &align_c, sizeof(align_c)));
  CUBLAS_CHECK("gemm", cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                            &align_c, sizeof(align_c)));
  int found = 0;
  // No algorithm for this problem is reported as CUBLAS_STATUS_NOT_SUPPORTED, as found == 0,
  // or as a failed heuristic.state: all three mean "fall back to cuBLAS", not an error.
  const cublasStatus_t searched = cublasLtMatmulAlgoGetHeuristic(s.lt, plan->desc.d, plan->la.d, plan->lb.d,
                                                                 plan->lc.d, plan->lc.d, pref.d, 1, &plan->heuristic,
                                                                 &found);
  if (searched == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return plan;
  CUBLAS_CHECK("gemm", searched);
  plan->has_algorithm = plan->heuristic.state == CUBLAS_STATUS_SUCCESS;
  return plan;
}

/// cuBLASLt path, through the plan cached for the problem (and epilogue); false when
/// cuBLASLt offers no algorithm (the caller falls back to cuBLAS, or to the plain GEMM and
/// its own kernels for an epilogue). Called under the device's blas_mutex.
bool gemm_lt(DeviceState& s, const GemmArgs& g, GemmEpilogue epilogue = GemmEpilogue::None, void* bias = nullptr,
             void* aux = nullptr, int64_t aux_ld = 0) {
  const size_t es = dtype_size(g.dtype);
  const bool tf32 = g.dtype == DType::f32 && rt_allow_tf32();
  const bool batched = g.batch > 1;
  const uint32_t align_a = alignment_of(g.b, g.stride_b * static_cast<int64_t>(es), batched);
  const uint32_t align_b = alignment_of(g.a, g.stride_a * static_cast<int64_t>(es), batched);
  const uint32_t align_c = alignment_of(g.c, g.stride_c * static_cast<int64_t>(es), batched);
  // The heuristic also reads the alignment of the epilogue's bias and aux pointers (cuBLASLt's
  // BIAS_POINTER / EPILOGUE_AUX_POINTER notes), so a plan is only reused for equally aligned ones.
  const int64_t align_bias = epilogue_uses_bias(epilogue) ? alignment_of(bias, 0, false) : 0;
  const int64_t align_aux = epilogue_uses_aux(epilogue) ? alignment_of(aux, 0, false) : 0;
  const LtKey key{{static_cast<int64_t>(g.dtype), g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.batch,
                   g.stride_a, g.stride_b, g.stride_c, align_a, align_b,
                   static_cast<int64_t>(align_c) * 2 + (tf32 ? 1 : 0),
                   static_cast<int64_t>(epilogue) | (align_bias << 16) | (align_aux << 32), aux_ld}};
  auto& plans = lt_plans(s);
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= kMaxLtPlans) plans.clear();
    it = plans.emplace(key, make_lt_plan(s, g, tf32, align_a, align_b, align_c, epilogue, bias, aux, aux_ld)).first;
  }
  LtPlan& plan = *it->second;
  if (!plan.has_algorithm) return false;
  set_epilogue_pointers(plan.desc.d, epilogue, bias, aux);
  const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
  CUBLAS_CHECK("gemm", cublasLtMatmul(s.lt, plan.desc.d, &alpha, g.b, plan.la.d, g.a, plan.lb.d, &beta, g.c,
                                      plan.lc.d, g.c, plan.lc.d, &plan.heuristic.algo, s.lt_workspace,
                                      kLtWorkspaceBytes, s.stream));
  return true;
}

/// cuBLAS path: float64, k == 0 (C = beta * C), batches that reuse one operand (batch
/// stride 0), and anything cuBLASLt has no algorithm for.
void gemm_blas(DeviceState& s, const GemmArgs& g) {
  const cudaDataType_t type = cuda_type(g.dtype);
  const ColMajor cm = col_major(g);
  const int m = to_int(g.n, "n"), n = to_int(g.m, "m"), k = to_int(g.k, "k"), batch = to_int(g.batch, "batch");
  const int lda = to_int(std::max<int64_t>(g.ldb, 1), "ldb"), ldb = to_int(std::max<int64_t>(g.lda, 1), "lda");
  const int ldc = to_int(g.ldc, "ldc");
  if (g.dtype == DType::f64) {
    const double alpha = g.alpha, beta = g.beta;
    CUBLAS_CHECK("gemm", cublasGemmStridedBatchedEx(s.blas, cm.op_a, cm.op_b, m, n, k, &alpha, g.b, type, lda,
                                                    g.stride_b, g.a, type, ldb, g.stride_a, &beta, g.c, type, ldc,
                                                    g.stride_c, batch, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
  } else {
    const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
    CUBLAS_CHECK("gemm", cublasGemmStridedBatchedEx(s.blas, cm.op_a, cm.op_b, m, n, k, &alpha, g.b, type, lda,
                                                    g.stride_b, g.a, type, ldb, g.stride_a, &beta, g.c, type, ldc,
                                                    g.stride_c, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void rt_gemm(const GemmArgs& args) {
  if (args.batch <= 0 || args.m <= 0 || args.n <= 0) return;
  DeviceState& s = state();
  std::lock_guard<std::mutex> lock(s.blas_mutex);
  ensure_blas(s);
  const bool shared_operand = args.batch > 1 && (args.stride_a == 0 || args.stride_b == 0);
  if (args.dtype == DType::f64 || args.k == 0 || shared_operand || !gemm_lt(s, args)) gemm_blas(s, args);
}

bool rt_lt_epilogues() { return true; }

bool rt_gemm_epilogue(const GemmArgs& args, GemmEpilogue epilogue, void* bias, void* aux, int64_t aux_ld) {
  const bool lt_dtype = args.dtype == DType::f32 || args.dtype == DType::bf16 || args.dtype == DType::f16;
  if (epilogue == GemmEpilogue::None || !lt_dtype || args.batch != 1 || args.m <= 0 || args.n <= 0 || args.k <= 0)
    return false;
  DeviceState& s = state();
  std::lock_guard<std::mutex> lock(s.blas_mutex);
  ensure_blas(s);
  return gemm_lt(s, args, epilogue, bias, aux, aux_ld);
}

}  // namespace petal::kernels::cuda_impl
