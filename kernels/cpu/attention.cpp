// CPU fused scaled-dot-product attention, out = softmax(q k^T * scale) v, and its
// backward, on [B, H, S, Dh] operands read through their B/H/S strides (unit stride on
// Dh), so q/k/v may be permuted views of a fused qkv projection.
// Work is split over (b, h) pairs with OpenMP (the GEMMs run single-threaded inside). Each
// pair walks its queries in blocks of query_block() rows (all of them for ViT sizes); a
// block's scores live only in a per-thread [rows, S_kv] buffer that stays in cache, never
// as a [B, H, S, S] tensor:
//   scores = scale * Q_blk K^T   (GEMM)
//   P      = softmax(scores)     (the CPU softmax kernel, stable, vectorized exp)
//   lse    = max + log(sum) = max - log(P at the max), saved for the backward
//   out    = P V                 (GEMM, written straight into out)
// Backward, per pair and query block, with P recomputed the same way:
//   D = rowsum(dO * O);  dS = P * (dO V^T - D);  dQ = dS K * scale
//   dK += dS^T Q * scale;  dV += P^T dO   (GEMMs accumulating over the blocks, in order)
//
// Precision, per dtype (C = the compute type: float, or double for f64):
// - f64: everything in double, GEMMs by OpenBLAS dgemm on the operands in place.
// - f32: everything in float. GEMMs by oneDNN's f32 matmul when the build has oneDNN and it is
//   on (onednn_gemm_enabled(); q/k/v packed into dense per-pair copies, where oneDNN's brgemm
//   kernels run: faster than its strided path), else OpenBLAS sgemm on the operands in place.
//   Measured at S = 65 / 197, Dh = 64 (docs/mixed_precision.md): oneDNN f32 beat OpenBLAS
//   with its default (Prescott) kernels and with OPENBLAS_CORETYPE=SkylakeX.
// - bf16: q, k, v, dO stay bf16 (copied into dense per-pair buffers) and every GEMM takes
//   bf16 operands with f32 accumulation, as GPU flash attention does:
//     scores = Q K^T, dP = dO V^T         bf16 x bf16 -> f32
//     softmax, lse, dropout, D, dS         f32 (P and dS computed in f32 from f32 scores)
//     out = bf16(P) V                      P rounded to bf16; out rounded once to bf16
//     dV += bf16(P')^T dO                  P' (dropped, rescaled P) rounded to bf16; f32 accumulator
//     dQ = bf16(dS) K, dK += bf16(dS)^T Q  dS rounded to bf16; dQ rounded once, dK via f32
//   dK, dV are rounded to bf16 once at the end. The GEMMs run on oneDNN (AMX / AVX512-BF16)
//   where onednn_bf16_fast(); otherwise (no oneDNN, switched off, a CPU without native bf16,
//   or a layout oneDNN declines) the same bf16 operands are widened per GEMM and multiplied
//   by sgemm, so the result rounds the same things either way.
// - f16: widened to float per pair (oneDNN 2.6 has no f16 matmul on this CPU), computed as
//   f32 (the f32 GEMM path above), results rounded to f16.
// Masks: the additive mask (statistics dtype, strided, zero strides where broadcast) is added
// to the scaled scores and is_causal sets key j > query i to -inf before the softmax; a row
// left with no key gets probabilities 0 (out 0, lse -inf, no gradient).
// Dropout (dropout_p > 0): after the softmax (and lse), P' = P * keep / (1 - p) with keep
// from kernels/philox.h (one Philox block per 4 keys of a row); out = P' V. Backward, the
// same mask regenerated: dV = P'^T dO, dS = P * (keep / (1 - p) * dO V^T - D) (D = rowsum(dO * O)
// still equals rowsum(P * dP) with the dropped weights).
#include <cblas.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm_onednn.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/philox.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Query rows per block: as many as keep the block's scores (rows x S_kv floats, and two more
// such buffers in the backward) within about 256 KiB, at least 16: one block for ViT sizes.
int64_t query_block(int64_t sq, int64_t skv) {
  constexpr int64_t kBlockElems = 64 * 1024;
  return std::max<int64_t>(1, std::min(sq, std::max<int64_t>(16, kBlockElems / std::max<int64_t>(1, skv))));
}

template <typename X>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<X, double>) return DType::f64;
  if constexpr (std::is_same_v<X, bf16_t>) return DType::bf16;
  if constexpr (std::is_same_v<X, f16_t>) return DType::f16;
  return DType::f32;
}

int64_t bits_of(double x) {
  int64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// The GEMMs of one thread's pairs, row-major: C = alpha op(A) op(B) + beta C with A, B of
// type In and C of type Out. With `onednn`, each layout gets a prepared oneDNN primitive
// (looked up once per thread, then run on each pair's pointers); otherwise, or where oneDNN
// declines a layout, OpenBLAS: directly when In and Out are the compute type, else on float
// copies of A and B (and of C when beta reads it), the result rounded into C.
class PairGemms {
 public:
  explicit PairGemms(bool onednn) : onednn_(onednn) {}

  template <typename In, typename Out>
  void operator()(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const In* a, int64_t lda,
                  const In* b, int64_t ldb, double beta, Out* c, int64_t ldc) {
    if (onednn_) {
      OnednnGemm& op = prepared(ta, tb, m, n, k, alpha, lda, ldb, beta, ldc, dtype_of<In>(), dtype_of<Out>());
      if (op.ok()) {
        op.run(a, b, c);
        return;
      }
    }
    if constexpr (std::is_same_v<In, Out> && (std::is_same_v<In, float> || std::is_same_v<In, double>)) {
      blas(ta, tb, m, n, k, static_cast<In>(alpha), a, lda, b, ldb, static_cast<In>(beta), c, ldc);
    } else {
      const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
      widen(wa_, a, a_rows, a_cols, lda);
      widen(wb_, b, b_rows, b_cols, ldb);
      if constexpr (std::is_same_v<Out, float>) {
        blas(ta, tb, m, n, k, static_cast<float>(alpha), wa_.data(), a_cols, wb_.data(), b_cols,
             static_cast<float>(beta), c, ldc);
      } else {
        if (beta != 0.0)
          widen(wc_, c, m, n, ldc);
        else
          wc_.assign(static_cast<size_t>(m * n), 0.0f);
        blas(ta, tb, m, n, k, static_cast<float>(alpha), wa_.data(), a_cols, wb_.data(), b_cols,
             static_cast<float>(beta), wc_.data(), n);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t j = 0; j < n; ++j) c[r * ldc + j] = store<Out>(wc_[r * n + j]);
      }
    }
  }

 private:
  using Key = std::array<int64_t, 12>;
  struct Entry {
    Key key;
    OnednnGemm op;  // !ok(): oneDNN declined this layout
  };

  OnednnGemm& prepared(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, int64_t lda, int64_t ldb,
                       double beta, int64_t ldc, DType in, DType out) {
    const Key key{ta, tb, m, n, k, lda, ldb, ldc, bits_of(alpha), bits_of(beta), static_cast<int64_t>(in),
                  static_cast<int64_t>(out)};
    for (Entry& e : cache_)
      if (e.key == key) return e.op;
    GemmArgs g;
    g.dtype = in;
    g.m = m, g.n = n, g.k = k;
    g.lda = lda, g.trans_a = ta, g.ldb = ldb, g.trans_b = tb, g.ldc = ldc;
    g.alpha = alpha, g.beta = beta;
    cache_.push_back(Entry{key, OnednnGemm()});
    cache_.back().op.prepare(g, out);
    return cache_.back().op;
  }

  template <typename C>
  static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, C alpha, const C* a, int64_t lda, const C* b,
                   int64_t ldb, C beta, C* c, int64_t ldc) {
    const auto opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if constexpr (std::is_same_v<C, float>)
      cblas_sgemm(CblasRowMajor, opa, opb, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                  alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                  static_cast<blasint>(ldc));
    else
      cblas_dgemm(CblasRowMajor, opa, opb, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                  alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                  static_cast<blasint>(ldc));
  }

  template <typename X>
  static void widen(std::vector<float>& dst, const X* src, int64_t rows, int64_t cols, int64_t ld) {
    dst.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = static_cast<float>(load(src[r * ld + j]));
  }

  bool onednn_;
  std::vector<Entry> cache_;
  std::vector<float> wa_, wb_, wc_;
};

// How a dtype's attention runs: In, the GEMM operand type (the storage type for bf16, else
// the compute type), and whether the GEMMs go through oneDNN.
template <typename T>
struct Plan {
  using C = typename Acc<T>::type;
  using In = std::conditional_t<std::is_same_v<T, bf16_t>, bf16_t, C>;
  // out / dQ are written by their GEMM in the storage type when operands are T, else in C.
  using O = std::conditional_t<std::is_same_v<T, In>, T, C>;
  static bool onednn() {
    if constexpr (std::is_same_v<T, bf16_t>) return onednn_bf16_fast();
    else if constexpr (std::is_same_v<C, float>) return onednn_gemm_enabled();
    else return false;
  }
};

// A [rows, Dh] operand as the GEMMs see it: data and leading dimension (>= Dh).
template <typename X>
struct Rows {
  const X* data;
  int64_t ld;
};

// The operand of one pair in GEMM type In: in place when T is In and its rows are dense (or,
// unless `dense`, merely non-overlapping), else converted into buf (dense).
template <typename T, typename In>
Rows<In> operand_rows(const T* src, int64_t rows, int64_t stride, int64_t dh, bool dense, std::vector<In>& buf) {
  if constexpr (std::is_same_v<T, In>) {
    if (rows <= 1 || stride == dh) return {src, dh};
    if (stride > dh && !dense) return {src, stride};
    buf.resize(static_cast<size_t>(rows * dh));
    for (int64_t r = 0; r < rows; ++r) std::memcpy(buf.data() + r * dh, src + r * stride, sizeof(T) * dh);
  } else {
    buf.resize(static_cast<size_t>(rows * dh));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t d = 0; d < dh; ++d) buf[r * dh + d] = static_cast<In>(load(src[r * stride + d]));
  }
  return {buf.data(), dh};
}

// Per-thread buffers of one pair.
template <typename T>
struct Workspace {
  using C = typename Plan<T>::C;
  using In = typename Plan<T>::In;
  std::vector<In> q, k, v, dout;     // operands converted or packed
  std::vector<In> pb, dsb;           // P and dS rounded to In (when In is not C)
  std::vector<C> out, dq, dk, dv;    // results in C before rounding (16-bit types)
  std::vector<C> scores, probs, dp;
  std::vector<C> keep;  // dropout: keep / (1 - p) of one row
};

// Q, K and V of pair (b, h) as GEMM operands (operand_rows of each, through w's buffers).
template <typename T>
struct PairQkv {
  using In = typename Plan<T>::In;
  Rows<In> q, k, v;
};

template <typename T>
PairQkv<T> pair_qkv(const AttentionArgs& a, int64_t b, int64_t h, bool dense, Workspace<T>& w) {
  auto rows = [&](const void* base, const int64_t* strides, int64_t n, auto& buf) {
    return operand_rows(static_cast<const T*>(base) + b * strides[0] + h * strides[1], n, strides[2], a.head_dim, dense,
                        buf);
  };
  return {rows(a.q, a.q_strides, a.seq_q, w.q), rows(a.k, a.k_strides, a.seq_kv, w.k),
          rows(a.v, a.v_strides, a.seq_kv, w.v)};
}

// keep[j] = 1 / (1 - p) for the kept keys of query i of pair `pair`, 0 for the dropped ones.
template <typename C>
void dropout_row(const AttentionArgs& a, int64_t pair, int64_t i, C* keep) {
  const uint32_t threshold = attention_dropout_threshold(a.dropout_p);
  const C rp = static_cast<C>(1.0 / (1.0 - a.dropout_p));
  const int64_t skv = a.seq_kv;
  const uint64_t base = a.dropout_offset + static_cast<uint64_t>(pair * a.seq_q + i) * static_cast<uint64_t>((skv + 3) / 4);
  for (int64_t j0 = 0; j0 < skv; j0 += 4) {
    const Philox4 w = philox4x32(a.dropout_seed, base + static_cast<uint64_t>(j0 / 4));
    for (int64_t j = j0; j < std::min(skv, j0 + 4); ++j) keep[j] = w.v[j - j0] >= threshold ? rp : C(0);
  }
}

// scores = scale Q_blk K^T (+ mask, causal -inf) and probs = softmax(scores) for query rows
// [i0, i0 + m) of pair (b, h).
template <typename T>
void block_probs(CpuBackend& be, PairGemms& gemm, const AttentionArgs& a, int64_t b, int64_t h,
                 Rows<typename Plan<T>::In> q, Rows<typename Plan<T>::In> k, int64_t i0, int64_t m, int64_t skv,
                 int64_t dh, Workspace<T>& w) {
  using C = typename Plan<T>::C;
  gemm(false, true, m, skv, dh, a.scale, q.data + i0 * q.ld, q.ld, k.data, k.ld, 0.0, w.scores.data(), skv);
  if (a.mask == nullptr && !a.causal) {
    be.softmax(w.probs.data(), w.scores.data(), dtype_of<C>(), m, skv, false);
    return;
  }
  if (a.mask != nullptr) {
    const C* mask = static_cast<const C*>(a.mask) + b * a.mask_strides[0] + h * a.mask_strides[1];
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < skv; ++j)
        w.scores[r * skv + j] += mask[(i0 + r) * a.mask_strides[2] + j * a.mask_strides[3]];
  }
  if (a.causal)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = i0 + r + 1; j < skv; ++j) w.scores[r * skv + j] = -std::numeric_limits<C>::infinity();
  be.softmax(w.probs.data(), w.scores.data(), dtype_of<C>(), m, skv, false);
  for (int64_t r = 0; r < m; ++r) {  // rows with no key left: probabilities 0, not NaN
    bool any = false;
    for (int64_t j = 0; j < skv && !any; ++j) any = w.scores[r * skv + j] != -std::numeric_limits<C>::infinity();
    if (!any) std::fill(w.probs.begin() + r * skv, w.probs.begin() + (r + 1) * skv, C(0));
  }
}

// float -> bf16 with round to nearest even, a NaN kept a (quiet) NaN: petal's
// float_to_bf16_bits without its branch, so the loop vectorizes; in the two ISA variants.
PETAL_CPU_INLINE void round_bf16_body(uint16_t* __restrict y, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    y[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}
void round_bf16_baseline(uint16_t* y, const float* x, int64_t n) { round_bf16_body(y, x, n); }
#if PETAL_CPU_HAVE_AVX512_VARIANTS
PETAL_CPU_AVX512 void round_bf16_avx512(uint16_t* y, const float* x, int64_t n) { round_bf16_body(y, x, n); }
#endif
void round_to_bf16(bf16_t* y, const float* x, int64_t n) {
  static_assert(sizeof(bf16_t) == sizeof(uint16_t));
  uint16_t* bits = reinterpret_cast<uint16_t*>(y);
#if PETAL_CPU_HAVE_AVX512_VARIANTS
  if (avx512_enabled()) return round_bf16_avx512(bits, x, n);
#endif
  round_bf16_baseline(bits, x, n);
}

// sum_d a[d] b[d] in C over 8 independent lanes (one running sum would be a serial chain).
template <typename T, typename C>
C row_dot(const T* a, const T* b, int64_t n) {
  C lane[8] = {};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int j = 0; j < 8; ++j) lane[j] += static_cast<C>(load(a[d + j])) * static_cast<C>(load(b[d + j]));
  for (; d < n; ++d) lane[0] += static_cast<C>(load(a[d])) * static_cast<C>(load(b[d]));
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// y = x rounded to T (n contiguous values).
template <typename T, typename C>
void store_rows(T* y, const C* x, int64_t n) {
  if constexpr (std::is_same_v<T, bf16_t> && std::is_same_v<C, float>)
    round_to_bf16(y, x, n);
  else
    for (int64_t e = 0; e < n; ++e) y[e] = store<T>(x[e]);
}

// The operand for a GEMM reading P-like f32 values: the values themselves when In is C,
// else rounded to In into buf.
template <typename In, typename C>
const In* gemm_operand(const C* x, int64_t n, std::vector<In>& buf) {
  if constexpr (std::is_same_v<In, C>) {
    return x;
  } else {
    buf.resize(static_cast<size_t>(n));
    store_rows(buf.data(), x, n);
    return buf.data();
  }
}

template <typename T>
void attention_forward_typed(CpuBackend& be, const AttentionArgs& a) {
  using P = Plan<T>;
  using C = typename P::C;
  using In = typename P::In;
  using O = typename P::O;
  const bool onednn = P::onednn();
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, Sq * Skv * Dh));
  parallel_for(a.batch * H, grain, [&](int64_t p0, int64_t p1) {
    Workspace<T> w;
    PairGemms gemm(onednn);
    const int64_t block = query_block(Sq, Skv);
    w.scores.resize(static_cast<size_t>(block * Skv));
    w.probs.resize(static_cast<size_t>(block * Skv));
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / H, h = pair % H;
      const auto [q, k, v] = pair_qkv(a, b, h, onednn, w);
      T* out_pair = static_cast<T*>(a.out) + pair * Sq * Dh;
      O* out = nullptr;
      if constexpr (std::is_same_v<O, T>) {
        out = out_pair;
      } else {
        w.out.resize(static_cast<size_t>(Sq * Dh));
        out = w.out.data();
      }
      C* lse = static_cast<C*>(a.lse) + pair * Sq;
      for (int64_t i0 = 0; i0 < Sq; i0 += block) {
        const int64_t m = std::min(block, Sq - i0);
        block_probs(be, gemm, a, b, h, q, k, i0, m, Skv, Dh, w);
        for (int64_t r = 0; r < m; ++r) {
          const C* s = w.scores.data() + r * Skv;
          int64_t arg = 0;
          for (int64_t j = 1; j < Skv; ++j)
            if (s[j] > s[arg]) arg = j;
          // softmax wrote exp(0) / sum = 1 / sum at the max.
          lse[i0 + r] = s[arg] == -std::numeric_limits<C>::infinity() ? s[arg] : s[arg] - std::log(w.probs[r * Skv + arg]);
        }
        if (a.dropout_p > 0.0) {
          w.keep.resize(static_cast<size_t>(Skv));
          for (int64_t r = 0; r < m; ++r) {
            dropout_row(a, pair, i0 + r, w.keep.data());
            for (int64_t j = 0; j < Skv; ++j) w.probs[r * Skv + j] *= w.keep[j];
          }
        }
        const In* p = gemm_operand<In>(w.probs.data(), m * Skv, w.pb);
        gemm(false, false, m, Dh, Skv, 1.0, p, Skv, v.data, v.ld, 0.0, out + i0 * Dh, Dh);
      }
      if constexpr (!std::is_same_v<O, T>) store_rows(out_pair, w.out.data(), Sq * Dh);
    }
  });
}

template <typename T>
void attention_backward_typed(CpuBackend& be, const AttentionArgs& a, const T* dout_all, T* dq_all, T* dk_all,
                              T* dv_all) {
  using P = Plan<T>;
  using C = typename P::C;
  using In = typename P::In;
  using O = typename P::O;
  const bool onednn = P::onednn();
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, Sq * Skv * Dh));
  parallel_for(a.batch * H, grain, [&](int64_t p0, int64_t p1) {
    Workspace<T> w;
    PairGemms gemm(onednn);
    const int64_t block = query_block(Sq, Skv);
    w.scores.resize(static_cast<size_t>(block * Skv));
    w.probs.resize(static_cast<size_t>(block * Skv));
    w.dp.resize(static_cast<size_t>(block * Skv));
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / H, h = pair % H;
      const auto [q, k, v] = pair_qkv(a, b, h, onednn, w);
      const T* out_pair = static_cast<const T*>(a.out) + pair * Sq * Dh;
      const T* dout_pair = dout_all + pair * Sq * Dh;
      const Rows<In> dout = operand_rows(dout_pair, Sq, Dh, Dh, onednn, w.dout);
      T* dq_pair = dq_all + pair * Sq * Dh;
      T* dk_pair = dk_all + pair * Skv * Dh;
      T* dv_pair = dv_all + pair * Skv * Dh;
      O* dq = nullptr;
      C *dk = nullptr, *dv = nullptr;  // accumulated over the query blocks in C
      if constexpr (std::is_same_v<O, T>) {
        dq = dq_pair;
      } else {
        w.dq.resize(static_cast<size_t>(Sq * Dh));
        dq = w.dq.data();
      }
      if constexpr (std::is_same_v<T, C>) {
        dk = dk_pair;
        dv = dv_pair;
      } else {
        w.dk.resize(static_cast<size_t>(Skv * Dh));
        w.dv.resize(static_cast<size_t>(Skv * Dh));
        dk = w.dk.data();
        dv = w.dv.data();
      }
      if (Sq == 0) {
        std::fill(dk, dk + Skv * Dh, C(0));
        std::fill(dv, dv + Skv * Dh, C(0));
      }
      for (int64_t i0 = 0; i0 < Sq; i0 += block) {
        const int64_t m = std::min(block, Sq - i0);
        block_probs(be, gemm, a, b, h, q, k, i0, m, Skv, Dh, w);
        const In* dO = dout.data + i0 * Dh;
        gemm(false, true, m, Skv, Dh, 1.0, dO, Dh, v.data, v.ld, 0.0, w.dp.data(), Skv);
        for (int64_t r = 0; r < m; ++r) {
          const T* o = out_pair + (i0 + r) * Dh;
          const T* g = dout_pair + (i0 + r) * Dh;
          const C D = row_dot<T, C>(g, o, Dh);
          C* ds = w.dp.data() + r * Skv;
          C* p = w.probs.data() + r * Skv;
          if (a.dropout_p > 0.0) {  // dS from P and the dropped dP; P' (for dV) in place of P
            w.keep.resize(static_cast<size_t>(Skv));
            dropout_row(a, pair, i0 + r, w.keep.data());
            for (int64_t j = 0; j < Skv; ++j) {
              ds[j] = p[j] * (w.keep[j] * ds[j] - D);
              p[j] *= w.keep[j];
            }
          } else {
            for (int64_t j = 0; j < Skv; ++j) ds[j] = p[j] * (ds[j] - D);
          }
        }
        const In* ds = gemm_operand<In>(w.dp.data(), m * Skv, w.dsb);
        const In* pp = gemm_operand<In>(w.probs.data(), m * Skv, w.pb);
        const double beta = i0 == 0 ? 0.0 : 1.0;
        gemm(false, false, m, Dh, Skv, a.scale, ds, Skv, k.data, k.ld, 0.0, dq + i0 * Dh, Dh);
        gemm(true, false, Skv, Dh, m, a.scale, ds, Skv, q.data + i0 * q.ld, q.ld, beta, dk, Dh);
        gemm(true, false, Skv, Dh, m, 1.0, pp, Skv, dO, Dh, beta, dv, Dh);
      }
      if constexpr (!std::is_same_v<O, T>) store_rows(dq_pair, dq, Sq * Dh);
      if constexpr (!std::is_same_v<T, C>) {
        store_rows(dk_pair, dk, Skv * Dh);
        store_rows(dv_pair, dv, Skv * Dh);
      }
    }
  });
}

}  // namespace

void CpuBackend::attention_forward(const AttentionArgs& args) {
  if (args.batch * args.heads * args.seq_q * args.head_dim == 0) return;
  dispatch_floating(args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    attention_forward_typed<T>(*this, args);
  });
}

void CpuBackend::attention_backward(const AttentionArgs& args, const void* dout, void* dq, void* dk, void* dv) {
  if (args.batch * args.heads * args.head_dim == 0) return;
  dispatch_floating(args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    attention_backward_typed<T>(*this, args, static_cast<const T*>(dout), static_cast<T*>(dq), static_cast<T*>(dk),
                                static_cast<T*>(dv));
  });
}

}  // namespace petal::kernels
