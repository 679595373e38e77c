// The instruction set of petal: every kernel a backend (cpu, cuda, sim) must provide.
// core/ validates every shape, dtype, device and stride before calling in; a kernel
// receives raw views and never checks user input. Adding an op = one entry here, its
// kernels in cpu/<family>.cpp and cuda/<family>.cu, its op in core/ops/, its tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include <petal/device.h>
#include <petal/dtype.h>

namespace petal::kernels {

constexpr int kMaxDims = 8;

/// A strided view of device memory (strides in elements, may be 0 for broadcasts).
struct View {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
};

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sin, Cos, Tanh, Sigmoid, Relu, GeluErf, GeluTanh, Square,
  PowScalar,  // x^alpha
  Clamp,      // min(max(x, alpha), beta)
  AddScalar,  // x + alpha
  MulScalar,  // x * alpha
  RSub,       // alpha - x
  RDiv,       // alpha / x
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,  // bool output
};

enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, ArgMin };

enum class RandomKind : uint8_t { Uniform, Normal, Int };

/// Element types of a LayerNorm call: x and dx in `x`, y and dy in `y`, weight/bias and
/// dweight/dbias in `param`; statistics f64 for f64 x, else f32. Either all three are equal
/// (any floating dtype; a single DType converts to that), or autocast's mixed form: param f32,
/// y a 16-bit type H and x f32 or H (f32 master parameters, no cast of the activations).
struct LayerNormDTypes {
  DType x, y, param;
  LayerNormDTypes(DType all) : x(all), y(all), param(all) {}  // NOLINT(google-explicit-constructor)
  LayerNormDTypes(DType x_dtype, DType y_dtype, DType param_dtype) : x(x_dtype), y(y_dtype), param(param_dtype) {}
  bool uniform() const { return x == y && y == param; }
};

/// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], row-major, for b < batch.
/// op(A) is m x k, op(B) is k x n, C is m x n with leading dimension ldc.
struct GemmArgs {
  DType dtype = DType::f32;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  const void* a = nullptr; int64_t lda = 0, stride_a = 0; bool trans_a = false;
  const void* b = nullptr; int64_t ldb = 0, stride_b = 0; bool trans_b = false;
  void* c = nullptr; int64_t ldc = 0, stride_c = 0;
  double alpha = 1.0, beta = 0.0;
};

/// The activation a fused Linear applies to its output (kernels/*/linear.*).
enum class LinearActivation : uint8_t { None, GeluErf, GeluTanh };

/// Fused Linear: pre = x W^T + bias, y = act(pre), all contiguous and of one dtype: x [m, k],
/// w [n, k], bias [n] (or null), y [m, n]; aux [m, n] receives pre when act != None (the
/// backward's input; null otherwise).
struct LinearArgs {
  DType dtype = DType::f32;
  int64_t m = 0, n = 0, k = 0;
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
  void* aux = nullptr;
  LinearActivation act = LinearActivation::None;
};

/// Fused MLP (a transformer block's fc1 -> activation -> fc2): pre = x W1^T + b1 [m, h] (kept
/// in aux when act != None), hidden = act(pre) [m, h] (kept: fc2's input), y = hidden W2^T + b2
/// [m, n]; x [m, k], w1 [h, k], b1 [h], w2 [n, h], b2 [n] (biases may be null), all contiguous
/// and of one dtype. fc1()/fc2() are the two fused Linears it is made of.
struct MlpArgs {
  DType dtype = DType::f32;
  int64_t m = 0, k = 0, h = 0, n = 0;
  const void* x = nullptr;
  const void* w1 = nullptr;
  const void* b1 = nullptr;
  const void* w2 = nullptr;
  const void* b2 = nullptr;
  void* aux = nullptr;
  void* hidden = nullptr;
  void* y = nullptr;
  LinearActivation act = LinearActivation::GeluErf;

  LinearArgs fc1() const {
    LinearArgs l;
    l.dtype = dtype;
    l.m = m;
    l.n = h;
    l.k = k;
    l.x = x;
    l.w = w1;
    l.bias = b1;
    l.y = hidden;
    l.aux = act != LinearActivation::None ? aux : nullptr;
    l.act = act;
    return l;
  }
  LinearArgs fc2() const {
    LinearArgs l;
    l.dtype = dtype;
    l.m = m;
    l.n = n;
    l.k = h;
    l.x = hidden;
    l.w = w2;
    l.bias = b2;
    l.y = y;
    return l;
  }
};

/// Fused scaled-dot-product attention on [B, H, S, Dh] operands. q/k/v have unit stride
/// on Dh and arbitrary element strides for B, H, S (so a fused qkv projection is read in
/// place); out is contiguous [B, H, S_q, Dh]; lse is contiguous [B, H, S_q] of the
/// statistics dtype (f64 for f64 inputs, else f32): the log-sum-exp of each score row.
/// Scores are q k^T * scale + mask (when mask is set) with, when causal, -inf for key j >
/// query i (PyTorch's is_causal: top-left aligned). A row whose scores are all -inf gives
/// out = 0, lse = -inf and zero gradients.
struct AttentionArgs {
  DType dtype = DType::f32;
  int64_t batch = 0, heads = 0, seq_q = 0, seq_kv = 0, head_dim = 0;
  double scale = 1.0;
  const void* q = nullptr; int64_t q_strides[3] = {};  // strides of B, H, S
  const void* k = nullptr; int64_t k_strides[3] = {};
  const void* v = nullptr; int64_t v_strides[3] = {};
  void* out = nullptr;
  void* lse = nullptr;
  bool causal = false;
  const void* mask = nullptr; int64_t mask_strides[4] = {};  // statistics dtype; B, H, S_q, S_kv (0: broadcast)
  // Attention dropout (0 <= dropout_p < 1): the weights P are multiplied by keep / (1 - p)
  // after the softmax, keep from kernels/philox.h's attention_dropout_keep(seed, offset, ...);
  // lse stays the undropped one. The backward regenerates the same mask from seed, offset.
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0, dropout_offset = 0;
  // Backward: dQ summed in a fixed order (no floating-point atomics), bit-reproducible.
  bool deterministic = false;
};

/// torch.optim.AdamW's update for one contiguous parameter (step counts from 1).
struct AdamWArgs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
  int64_t step = 1;
  bool amsgrad = false;
};

/// torch.optim.SGD's update for one contiguous parameter.
struct SgdArgs {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = true;  // the momentum buffer is initialised from the gradient
};

/// One parameter of a multi-tensor optimizer update: its contiguous operands of n
/// elements (the list shares one dtype) and its own step state; unused states are null.
struct OptimizerTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* state0 = nullptr;  // exp_avg (AdamW) or momentum_buffer (SGD)
  void* state1 = nullptr;  // exp_avg_sq (AdamW)
  void* state2 = nullptr;  // max_exp_avg_sq (AdamW with amsgrad)
  int64_t n = 0;
  int64_t step = 1;         // AdamW: this parameter's step count (from 1)
  bool first_step = false;  // SGD: the momentum buffer is initialised from the gradient
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void synchronize() = 0;

  // ---- copy / fill / random (kernels/*/copy.*, random.*)
  /// dst = src converted to dst.dtype; equal shapes, any strides (src may broadcast).
  virtual void copy(const View& dst, const View& src) = 0;
  virtual void fill(const View& dst, double value) = 0;
  /// Contiguous dst; Uniform in [a, b), Normal(mean a, std b), Int in [a, b).
  virtual void random(const View& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) = 0;

  // ---- elementwise (kernels/*/elementwise.*); all views share out's shape
  virtual void unary(UnaryOp op, const View& out, const View& in, double alpha, double beta) = 0;
  /// grad_in = grad_out * d op(x)/dx, given x (and y = op(x) where cheaper).
  virtual void unary_backward(UnaryOp op, const View& grad_in, const View& grad_out, const View& x,
                              const View& y, double alpha, double beta) = 0;
  virtual void binary(BinaryOp op, const View& out, const View& a, const View& b) = 0;
  virtual void where(const View& out, const View& cond, const View& a, const View& b) = 0;

  // ---- reductions (kernels/*/reduce.*)
  /// in has shape [kept..., reduced...] with the last `reduced_dims` dims reduced;
  /// out is contiguous with prod(kept) elements (int64 for ArgMax/ArgMin).
  virtual void reduce(ReduceOp op, const View& out, const View& in, int reduced_dims) = 0;

  // ---- softmax (kernels/*/softmax.*); contiguous [rows, cols], over cols
  virtual void softmax(void* out, const void* in, DType dtype, int64_t rows, int64_t cols, bool log) = 0;
  /// grad_in from grad_out and the forward output y.
  virtual void softmax_backward(void* grad_in, const void* grad_out, const void* y, DType dtype,
                                int64_t rows, int64_t cols, bool log) = 0;

  // ---- GEMM (kernels/*/gemm.*): BLAS / cuBLASLt
  virtual void gemm(const GemmArgs& args) = 0;

  // ---- indexing (kernels/*/index.*); index is int64, contiguous
  /// out = x.index_select(dim, index); out and x contiguous.
  virtual void index_select(const View& out, const View& x, int dim, const View& index) = 0;
  /// out.index_add_(dim, index, src); out and src contiguous.
  virtual void index_add(const View& out, int dim, const View& index, const View& src) = 0;
  /// out = x.gather(dim, index); out, index same shape; all contiguous.
  virtual void gather(const View& out, const View& x, int dim, const View& index) = 0;
  /// out.scatter_add_(dim, index, src); index, src same shape; all contiguous.
  virtual void scatter_add(const View& out, int dim, const View& index, const View& src) = 0;

  // ---- fused kernels of the mission (kernels/*/<family>.*): contiguous operands.
  // Statistics (mean, rstd, lse) are f64 for f64 inputs and f32 otherwise.

  /// LayerNorm over the last dim of x [rows, cols]: y = (x - mean) * rstd * weight + bias
  /// (weight/bias may be null); saves mean and rstd per row. dtypes: see LayerNormDTypes.
  virtual void layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight, const void* bias,
                                  LayerNormDTypes dtypes, int64_t rows, int64_t cols, double eps) = 0;
  /// dx (and dweight/dbias when non-null, overwritten) from dy and the saved statistics.
  virtual void layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x, const void* mean,
                                   const void* rstd, const void* weight, LayerNormDTypes dtypes, int64_t rows,
                                   int64_t cols) = 0;

  /// Softmax cross-entropy per row of logits [rows, classes] with int64 targets and label
  /// smoothing s: loss[r] = -sum_c q_c log_softmax(logits[r])_c, q = (1-s) onehot + s/C;
  /// rows whose target == ignore_index get 0. loss, lse and grad_loss have the statistics
  /// dtype (so 16-bit logits are not rounded before core takes the mean). Saves lse per row.
  virtual void cross_entropy_forward(void* loss, void* lse, const void* logits, const int64_t* target, DType dtype,
                                     int64_t rows, int64_t classes, double label_smoothing, int64_t ignore_index) = 0;
  /// grad_logits = grad_loss[r] * (softmax(logits[r]) - q) (0 for ignored rows).
  virtual void cross_entropy_backward(void* grad_logits, const void* grad_loss, const void* logits, const void* lse,
                                      const int64_t* target, DType dtype, int64_t rows, int64_t classes,
                                      double label_smoothing, int64_t ignore_index) = 0;

  /// out = softmax(q k^T * scale) v, saving lse.
  virtual void attention_forward(const AttentionArgs& args) = 0;
  /// dq, dk, dv (contiguous [B, H, S, Dh]) from dout (contiguous) and the forward's out and lse.
  virtual void attention_backward(const AttentionArgs& args, const void* dout, void* dq, void* dk, void* dv) = 0;

  /// Patch extraction for a conv with kernel = stride = patch: x [B, C, H, W] (contiguous)
  /// -> patches [B, (H/P)*(W/P), C*P*P] in (c, i, j) order, the layout a [D, C, P, P]
  /// weight multiplies; patch_fold is its adjoint (scatter back, for the backward).
  virtual void patch_unfold(void* patches, const void* x, DType dtype, int64_t batch, int64_t channels, int64_t height,
                            int64_t width, int64_t patch) = 0;
  virtual void patch_fold(void* x, const void* patches, DType dtype, int64_t batch, int64_t channels, int64_t height,
                          int64_t width, int64_t patch) = 0;

  /// In-place optimizer updates of one contiguous parameter of n elements (states have
  /// the parameter's dtype; max_exp_avg_sq used only with amsgrad).
  virtual void adamw_update(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq,
                            DType dtype, int64_t n, const AdamWArgs& args) = 0;
  virtual void sgd_update(void* param, const void* grad, void* momentum_buffer, DType dtype, int64_t n,
                          const SgdArgs& args) = 0;
  /// The same updates over a list of parameters (host array of count entries) in one or a
  /// few launches; args.step / args.first_step are taken from each entry instead.
  virtual void adamw_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                         const AdamWArgs& args) = 0;
  virtual void sgd_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                       const SgdArgs& args) = 0;

  /// Fused Linear (+ activation): see LinearArgs. cuda maps it onto cuBLASLt epilogues.
  virtual void linear_forward(const LinearArgs& args) = 0;
  /// From dy [m, n] (and args.aux when args.act != None): dpre = dy * act'(aux),
  /// dx = dpre W [m, k], dw = dpre^T x [n, k], dbias = the column sums of dpre [n]; each
  /// output may be null (not wanted) and is overwritten.
  virtual void linear_backward(const LinearArgs& args, const void* dy, void* dx, void* dw, void* dbias) = 0;

  /// Fused MLP: see MlpArgs. The default is the two fused Linears (linear_forward of fc1, then
  /// of fc2), so every backend has it; cuda overrides the backward (kernels/cuda/mlp.cu).
  virtual void mlp_forward(const MlpArgs& args) {
    linear_forward(args.fc1());
    linear_forward(args.fc2());
  }
  /// From dy [m, n] and the forward's aux and hidden: dhidden = dy W2, dpre = dhidden *
  /// act'(aux), dx = dpre W1 [m, k], dw1 = dpre^T x [h, k], db1 [h], dw2 = dy^T hidden [n, h],
  /// db2 [n]; each output may be null (not wanted) and is overwritten. The default runs
  /// linear_backward of fc2 (into a temporary dhidden), then of fc1.
  virtual void mlp_backward(const MlpArgs& args, const void* dy, void* dx, void* dw1, void* db1, void* dw2,
                            void* db2) {
    const size_t bytes = static_cast<size_t>(args.m * args.h > 0 ? args.m * args.h : 1) * dtype_size(args.dtype);
    void* dhidden = allocate(bytes);
    try {
      linear_backward(args.fc2(), dy, dhidden, dw2, db2);
      linear_backward(args.fc1(), dhidden, dx, dw1, db1);
    } catch (...) {
      deallocate(dhidden);
      throw;
    }
    deallocate(dhidden);
  }

  // ---- pinned host memory and asynchronous host-to-device copies (Tensor::pin_memory,
  // to(device, non_blocking)). The defaults say "not supported": the cpu backend keeps them.
  /// Page-locked host memory the device can DMA from (cudaHostAlloc on cuda; on sim, host
  /// memory the simulator treats as pinned), usable as ordinary host memory; nullptr when
  /// this backend has none. Freed by deallocate_pinned_host.
  virtual void* allocate_pinned_host(size_t nbytes) {
    (void)nbytes;
    return nullptr;
  }
  virtual void deallocate_pinned_host(void* ptr) { (void)ptr; }
  /// Copies nbytes from pinned host src to device dst and returns before the copy has run: the
  /// copy is issued on the device's copy stream after the compute stream's earlier work (dst
  /// may be in use) and the compute stream waits for it, so every later op sees the data.
  /// keep_alive (owning src) is held until the copy has completed and released at a later
  /// call (a synchronization, another copy). false: not supported, nothing was done.
  virtual bool copy_from_host_async(void* dst, const void* src, size_t nbytes, std::shared_ptr<const void> keep_alive) {
    (void)dst, (void)src, (void)nbytes, (void)keep_alive;
    return false;
  }
  /// The same copy into a new allocation of nbytes (freed by deallocate) made on the copy
  /// stream, so the copy need not wait for the compute stream's earlier work and overlaps
  /// with it. nullptr: not supported, nothing was done.
  virtual void* allocate_copy_from_host_async(const void* src, size_t nbytes, std::shared_ptr<const void> keep_alive) {
    (void)src, (void)nbytes, (void)keep_alive;
    return nullptr;
  }
};

/// The backend that owns memory of this device (throws petal::Error if unavailable).
Backend& backend_for(const Device& device);

// Backend constructors; the cuda/sim ones return nullptr when not built/available.
Backend* cpu_backend();
Backend* cuda_backend(int index);

/// What the CUDA backend plugin (libpetal_cuda) exports through petal_cuda_plugin_v1():
/// libpetal checks `abi` and then calls through the table.
constexpr int kCudaPluginAbi = 6;  // 3: Backend::linear_forward/backward (the fused Linear); 4: AttentionArgs dropout / deterministic; 5: Backend::mlp_forward/backward; 6: pinned host memory, async host-to-device copies
struct CudaPlugin {
  int abi;
  int (*device_count)();
  Backend* (*backend)(int index);
  void (*set_allow_tf32)(bool allow);  // float32 GEMMs on TF32 tensor cores
};
/// Hands the float32 matmul precision (set_float32_matmul_precision) to the CUDA backend,
/// when it is loaded (it also reads the setting when it loads); a no-op without CUDA.
void cuda_apply_matmul_precision(bool allow_tf32);
Backend* sim_backend();

}  // namespace petal::kernels
