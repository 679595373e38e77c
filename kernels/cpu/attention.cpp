// CPU fused scaled-dot-product attention, out = softmax(q k^T * scale) v, and its
// backward, on [B, H, S, Dh] operands read through their B/H/S strides (unit stride on
// Dh), so q/k/v may be permuted views of a fused qkv projection.
// Work is split over (b, h) pairs with OpenMP (BLAS runs single-threaded inside). Each
// pair walks its queries in blocks of kQueryBlock rows; a block's scores live only in a
// per-thread [rows, S_kv] buffer that stays in cache, never as a [B, H, S, S] tensor:
//   scores = scale * Q_blk K^T   (GEMM; q/k/v strided rows are BLAS leading dimensions)
//   P      = softmax(scores)     (the CPU softmax kernel, stable, vectorized exp)
//   lse    = max + log(sum) = max - log(P at the max), saved for the backward
//   out    = P V                 (GEMM, written straight into out)
// Backward, per pair and query block, with P recomputed the same way:
//   D = rowsum(dO * O);  dS = P * (dO V^T - D);  dQ = dS K * scale
//   dK += dS^T Q * scale;  dV += P^T dO   (GEMMs accumulating over the blocks, in order)
// f32/f64 run in their own precision on the operands in place; bf16/f16 pairs are
// widened into float buffers first and the results rounded back.
// Masks: the additive mask (statistics dtype, strided, zero strides where broadcast) is added
// to the scaled scores and is_causal sets key j > query i to -inf before the softmax; a row
// left with no key gets probabilities 0 (out 0, lse -inf, no gradient).
// Dropout (dropout_p > 0): after the softmax (and lse), P' = P * keep / (1 - p) with keep
// from kernels/philox.h (one Philox block per 4 keys of a row); out = P' V. Backward, the
// same mask regenerated: dV = P'^T dO, dS = P * (keep / (1 - p) * dO V^T - D) (D = rowsum(dO * O)
// still equals rowsum(P * dP) with the dropped weights).
#include <cblas.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/philox.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Query rows per block: the block's scores (kQueryBlock x S_kv) stay in L2 for ViT sizes.
constexpr int64_t kQueryBlock = 64;

template <typename C>
constexpr DType dtype_of() {
  return std::is_same_v<C, double> ? DType::f64 : DType::f32;
}

// Row-major C = alpha op(A) op(B) + beta C.
template <typename C>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, C alpha, const C* a, int64_t lda, const C* b, int64_t ldb,
          C beta, C* c, int64_t ldc) {
  const auto opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<C, float>)
    cblas_sgemm(CblasRowMajor, opa, opb, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  else
    cblas_dgemm(CblasRowMajor, opa, opb, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

// A [rows, Dh] operand as BLAS sees it: data and leading dimension (>= Dh).
template <typename C>
struct Rows {
  const C* data;
  int64_t ld;
};

// The operand of one pair in compute type C: in place when T is C and its rows do not
// overlap, else widened into buf (contiguous).
template <typename T, typename C>
Rows<C> operand_rows(const T* src, int64_t rows, int64_t stride, int64_t dh, std::vector<C>& buf) {
  if constexpr (std::is_same_v<T, C>) {
    if (rows <= 1) return {src, dh};
    if (stride >= dh) return {src, stride};
  }
  buf.resize(static_cast<size_t>(rows * dh));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < dh; ++d) buf[r * dh + d] = static_cast<C>(load(src[r * stride + d]));
  return {buf.data(), dh};
}

// Per-thread buffers of one pair.
template <typename C>
struct Workspace {
  std::vector<C> q, k, v, out, dout, dq, dk, dv;  // widened operands (16-bit types)
  std::vector<C> scores, probs, dp;
  std::vector<C> keep;  // dropout: keep / (1 - p) of one row
};

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
template <typename C>
void block_probs(CpuBackend& be, const AttentionArgs& a, int64_t b, int64_t h, Rows<C> q, Rows<C> k, int64_t i0,
                 int64_t m, int64_t skv, int64_t dh, C scale, Workspace<C>& w) {
  gemm<C>(false, true, m, skv, dh, scale, q.data + i0 * q.ld, q.ld, k.data, k.ld, C(0), w.scores.data(), skv);
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

template <typename T>
void attention_forward_typed(CpuBackend& be, const AttentionArgs& a) {
  using C = typename Acc<T>::type;
  constexpr bool kNative = std::is_same_v<T, C>;
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim;
  const C scale = static_cast<C>(a.scale);
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, Sq * Skv * Dh));
  parallel_for(a.batch * H, grain, [&](int64_t p0, int64_t p1) {
    Workspace<C> w;
    const int64_t block = std::min(kQueryBlock, Sq);
    w.scores.resize(static_cast<size_t>(block * Skv));
    w.probs.resize(static_cast<size_t>(block * Skv));
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / H, h = pair % H;
      const Rows<C> q = operand_rows(static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1], Sq,
                                     a.q_strides[2], Dh, w.q);
      const Rows<C> k = operand_rows(static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1], Skv,
                                     a.k_strides[2], Dh, w.k);
      const Rows<C> v = operand_rows(static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1], Skv,
                                     a.v_strides[2], Dh, w.v);
      T* out_pair = static_cast<T*>(a.out) + pair * Sq * Dh;
      C* out = nullptr;
      if constexpr (kNative) {
        out = out_pair;
      } else {
        w.out.resize(static_cast<size_t>(Sq * Dh));
        out = w.out.data();
      }
      C* lse = static_cast<C*>(a.lse) + pair * Sq;
      for (int64_t i0 = 0; i0 < Sq; i0 += block) {
        const int64_t m = std::min(block, Sq - i0);
        block_probs(be, a, b, h, q, k, i0, m, Skv, Dh, scale, w);
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
        gemm<C>(false, false, m, Dh, Skv, C(1), w.probs.data(), Skv, v.data, v.ld, C(0), out + i0 * Dh, Dh);
      }
      if constexpr (!kNative)
        for (int64_t e = 0; e < Sq * Dh; ++e) out_pair[e] = store<T>(w.out[e]);
    }
  });
}

template <typename T>
void attention_backward_typed(CpuBackend& be, const AttentionArgs& a, const T* dout_all, T* dq_all, T* dk_all,
                              T* dv_all) {
  using C = typename Acc<T>::type;
  constexpr bool kNative = std::is_same_v<T, C>;
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim;
  const C scale = static_cast<C>(a.scale);
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, Sq * Skv * Dh));
  parallel_for(a.batch * H, grain, [&](int64_t p0, int64_t p1) {
    Workspace<C> w;
    const int64_t block = std::max<int64_t>(1, std::min(kQueryBlock, Sq));
    w.scores.resize(static_cast<size_t>(block * Skv));
    w.probs.resize(static_cast<size_t>(block * Skv));
    w.dp.resize(static_cast<size_t>(block * Skv));
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / H, h = pair % H;
      const Rows<C> q = operand_rows(static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1], Sq,
                                     a.q_strides[2], Dh, w.q);
      const Rows<C> k = operand_rows(static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1], Skv,
                                     a.k_strides[2], Dh, w.k);
      const Rows<C> v = operand_rows(static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1], Skv,
                                     a.v_strides[2], Dh, w.v);
      const Rows<C> out = operand_rows(static_cast<const T*>(a.out) + pair * Sq * Dh, Sq, Dh, Dh, w.out);
      const Rows<C> dout = operand_rows(dout_all + pair * Sq * Dh, Sq, Dh, Dh, w.dout);
      T* dq_pair = dq_all + pair * Sq * Dh;
      T* dk_pair = dk_all + pair * Skv * Dh;
      T* dv_pair = dv_all + pair * Skv * Dh;
      C *dq, *dk, *dv;
      if constexpr (kNative) {
        dq = dq_pair;
        dk = dk_pair;
        dv = dv_pair;
      } else {
        w.dq.resize(static_cast<size_t>(Sq * Dh));
        w.dk.resize(static_cast<size_t>(Skv * Dh));
        w.dv.resize(static_cast<size_t>(Skv * Dh));
        dq = w.dq.data();
        dk = w.dk.data();
        dv = w.dv.data();
      }
      if (Sq == 0) {
        std::fill(dk, dk + Skv * Dh, C(0));
        std::fill(dv, dv + Skv * Dh, C(0));
      }
      for (int64_t i0 = 0; i0 < Sq; i0 += block) {
        const int64_t m = std::min(block, Sq - i0);
        block_probs(be, a, b, h, q, k, i0, m, Skv, Dh, scale, w);
        const C* dO = dout.data + i0 * Dh;
        gemm<C>(false, true, m, Skv, Dh, C(1), dO, Dh, v.data, v.ld, C(0), w.dp.data(), Skv);
        for (int64_t r = 0; r < m; ++r) {
          const C* o = out.data + (i0 + r) * Dh;
          C D = 0;
          for (int64_t d = 0; d < Dh; ++d) D += dO[r * Dh + d] * o[d];
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
        const C beta = i0 == 0 ? C(0) : C(1);
        gemm<C>(false, false, m, Dh, Skv, scale, w.dp.data(), Skv, k.data, k.ld, C(0), dq + i0 * Dh, Dh);
        gemm<C>(true, false, Skv, Dh, m, scale, w.dp.data(), Skv, q.data + i0 * q.ld, q.ld, beta, dk, Dh);
        gemm<C>(true, false, Skv, Dh, m, C(1), w.probs.data(), Skv, dO, Dh, beta, dv, Dh);
      }
      if constexpr (!kNative) {
        for (int64_t e = 0; e < Sq * Dh; ++e) dq_pair[e] = store<T>(dq[e]);
        for (int64_t e = 0; e < Skv * Dh; ++e) {
          dk_pair[e] = store<T>(dk[e]);
          dv_pair[e] = store<T>(dv[e]);
        }
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
