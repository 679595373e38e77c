// The CUDA backend class. Compiled by nvcc as cuda_impl::CudaBackend (one instance per
// GPU) and by the host compiler as sim_impl::CudaBackend (the simulator's one device).
// Each family of methods lives in its own file with its kernels and launchers:
// backend.cu (memory, registration), copy.cu, random.cu, elementwise.cu, reduce.cu,
// softmax.cu, gemm.cu, index.cu, attention.cu (+ flash_attention.cu), linear.cu, mlp.cu.
#pragma once
#include <memory>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/common.cuh"

namespace petal::kernels::PETAL_CUDA_NS {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
#ifdef PETAL_SIM_COMPILE
    name_ = "sim";
#else
    name_ = "cuda:" + std::to_string(device);
#endif
  }
  const char* name() const override { return name_.c_str(); }
  int device() const { return device_; }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes) override;
  void synchronize() override;
  void* allocate_pinned_host(size_t nbytes) override;
  void deallocate_pinned_host(void* ptr) override;
  bool copy_from_host_async(void* dst, const void* src, size_t nbytes, std::shared_ptr<const void> keep_alive) override;
  void* allocate_copy_from_host_async(const void* src, size_t nbytes, std::shared_ptr<const void> keep_alive) override;

  void copy(const View& dst, const View& src) override;
  void fill(const View& dst, double value) override;
  void random(const View& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) override;

  void unary(UnaryOp op, const View& out, const View& in, double alpha, double beta) override;
  void unary_backward(UnaryOp op, const View& grad_in, const View& grad_out, const View& x, const View& y,
                      double alpha, double beta) override;
  void binary(BinaryOp op, const View& out, const View& a, const View& b) override;
  void where(const View& out, const View& cond, const View& a, const View& b) override;

  void reduce(ReduceOp op, const View& out, const View& in, int reduced_dims) override;

  void softmax(void* out, const void* in, DType dtype, int64_t rows, int64_t cols, bool log) override;
  void softmax_backward(void* grad_in, const void* grad_out, const void* y, DType dtype, int64_t rows, int64_t cols,
                        bool log) override;

  void gemm(const GemmArgs& args) override;

  void index_select(const View& out, const View& x, int dim, const View& index) override;
  void index_add(const View& out, int dim, const View& index, const View& src) override;
  void gather(const View& out, const View& x, int dim, const View& index) override;
  void scatter_add(const View& out, int dim, const View& index, const View& src) override;

  void layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight, const void* bias,
                          LayerNormDTypes dtypes, int64_t rows, int64_t cols, double eps) override;
  void layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x, const void* mean,
                           const void* rstd, const void* weight, LayerNormDTypes dtypes, int64_t rows,
                           int64_t cols) override;
  void cross_entropy_forward(void* loss, void* lse, const void* logits, const int64_t* target, DType dtype,
                             int64_t rows, int64_t classes, double label_smoothing, int64_t ignore_index) override;
  void cross_entropy_backward(void* grad_logits, const void* grad_loss, const void* logits, const void* lse,
                              const int64_t* target, DType dtype, int64_t rows, int64_t classes,
                              double label_smoothing, int64_t ignore_index) override;
  void attention_forward(const AttentionArgs& args) override;
  void attention_backward(const AttentionArgs& args, const void* dout, void* dq, void* dk, void* dv) override;
  void patch_unfold(void* patches, const void* x, DType dtype, int64_t batch, int64_t channels, int64_t height,
                    int64_t width, int64_t patch) override;
  void patch_fold(void* x, const void* patches, DType dtype, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, int64_t patch) override;
  void adamw_update(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq, DType dtype,
                    int64_t n, const AdamWArgs& args) override;
  void sgd_update(void* param, const void* grad, void* momentum_buffer, DType dtype, int64_t n,
                  const SgdArgs& args) override;
  void adamw_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                 const AdamWArgs& args) override;
  void sgd_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                               const SgdArgs& args) override;
  void linear_forward(const LinearArgs& args) override;
  void linear_backward(const LinearArgs& args, const void* dy, void* dx, void* dw, void* dbias) override;
  // mlp_forward: Backend's composition of the two linear_forward calls (their epilogues).
  void mlp_backward(const MlpArgs& args, const void* dy, void* dx, void* dw1, void* db1, void* dw2,
                    void* db2) override;

 private:
  /// Makes this backend's GPU current and returns its compute stream. On the simulator, runs
  /// the asynchronous copies the compute stream has waited for first (runtime.h).
  Stream activate() const {
#ifdef PETAL_SIM_COMPILE
    rt_sim_run_waited_copies();
    return nullptr;
#else
    rt_set_device(device_);
    return rt_current_stream();
#endif
  }

  int device_;
  std::string name_;
};

// Tensor-core flash attention for bf16/f16 (flash_attention.cu), called by attention_forward /
// attention_backward (attention.cu) when flash_attention_applies(args).
bool flash_attention_applies(const AttentionArgs& args);
void flash_attention_forward(const AttentionArgs& args, Stream stream);
void flash_attention_backward(CudaBackend& backend, const AttentionArgs& args, const void* dout, void* dq, void* dk,
                              void* dv, Stream stream);

}  // namespace petal::kernels::PETAL_CUDA_NS
