// Fused scaled-dot-product attention, out = softmax(q k^T * scale) v, flash-attention
// style, and its backward. Operands are [B, H, S, Dh] read through their B/H/S strides
// (unit stride on Dh), so permuted views of a fused qkv projection are read in place.
//
// Forward: one block per (query tile of Br rows, (b, h) pair). The query tile is staged in
// shared memory in the accumulator type A (float for f32/bf16/f16, double for f64); the
// block then streams over K/V tiles of Bc rows through shared memory. Each query row is
// owned by kThreads/Br consecutive lanes of one warp: they compute the row's scores for
// their share of the tile's columns, combine the tile max and sum with shuffles, rescale
// the running output by exp(m_old - m_new) (online softmax) and accumulate P V for their
// share of the head dims in registers. The S_q x S_kv matrix never reaches global memory.
// out is divided by the running sum at the end and lse = m + log(sum) is saved. Tails
// (S not a multiple of a tile) are masked: padded keys score -inf, padded queries are
// computed on zeros and not written.
//
// Backward recomputes P = exp(q k^T * scale - lse) tile by tile:
//   delta kernel: D_i = rowsum(dO_i * O_i), one warp per row;
//   dq kernel:    one block per query tile, streaming K/V tiles: dS = P * (dO V^T - D),
//                 dQ = dS K * scale;
//   dkdv kernel:  one block per K/V tile, streaming query tiles: dV = P^T dO,
//                 dK = dS^T Q * scale.
// Every output element is written by one thread that sums in a fixed order: no atomics,
// the gradients are deterministic. bf16/f16 operands that suit the tensor cores (head_dim a
// multiple of 8, 16-byte aligned rows) go to flash_attention.cu instead; these kernels take
// f32/f64 and the rest. Masks: the additive mask (accumulator type, strided) is added to
// the scaled score and is_causal scores key j > query i as -inf; a row with no key left
// gets out 0 and lse -inf, and P = 0 in the backward. Dropout: the weights are multiplied by
// keep / (1 - p) after the softmax (the normalizer stays the undropped sum); the backward
// regenerates keep from (seed, offset) per element: dS = P * (keep / (1 - p) * dP - D). Tile sizes keep shared memory under 48 KB for
// head_dim <= 128 (core/ rejects larger head dims on this backend).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/philox.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

/// Largest head_dim the kernels take (register arrays are sized from it).
constexpr int64_t kAttentionMaxHeadDim = 128;

// Tile shapes per accumulator type: threads per block, forward (Br x Bc) and backward tiles.
template <typename A>
struct AttentionTiles {
  static constexpr int kThreads = 128;
  static constexpr int kFwdRows = 32, kFwdCols = 16;
  static constexpr int kBwdRows = 16, kBwdCols = 16;
};
template <>
struct AttentionTiles<double> {
  static constexpr int kThreads = 64;
  static constexpr int kFwdRows = 16, kFwdCols = 8;
  static constexpr int kBwdRows = 8, kBwdCols = 8;
};

// Reduction over the `width` consecutive lanes (a power of two <= 32) that own one row.
template <int kWidth, typename A, typename Op>
__device__ inline A group_reduce(A v, Op op) {
PETAL_UNROLL
  for (int mask = 1; mask < kWidth; mask <<= 1) v = op(v, shuffle_xor(v, mask));
  return v;
}

template <typename A>
__device__ inline A dot_shared(const A* a, const A* b, int64_t n) {
  A s = A(0);
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// Rows [row0, row0 + rows) of a strided [S, Dh] matrix into shared memory with leading
// dimension ld; rows past `valid` are zero.
template <typename T, typename A, int kThreads>
__device__ inline void stage_rows(A* dst, const T* src, int64_t row0, int rows, int64_t valid, int64_t row_stride,
                                  int64_t dh, int64_t ld) {
  for (int64_t e = threadIdx.x; e < rows * dh; e += kThreads) {
    const int64_t r = e / dh, d = e % dh;
    dst[r * ld + d] = row0 + r < valid ? A(to_acc(src[(row0 + r) * row_stride + d])) : A(0);
  }
}

/// Row i of the additive mask of pair (b, h), or null (no mask, or a padded query row).
template <typename A>
__device__ inline const A* mask_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i) {
  if (a.mask == nullptr || i >= a.seq_q) return nullptr;
  return static_cast<const A*>(a.mask) + b * a.mask_strides[0] + h * a.mask_strides[1] + i * a.mask_strides[2];
}

/// Score of query i and key j from the scaled dot product s: + mask, -inf above the diagonal.
template <typename A>
__device__ inline A masked_score(const AttentionArgs& a, const A* mrow, A s, int64_t i, int64_t j) {
  if (a.causal && j > i) return -std::numeric_limits<A>::infinity();
  return mrow != nullptr ? s + mrow[j * a.mask_strides[3]] : s;
}

/// Dropout factor of the weight of query i, key j of pair `pair`: keep / (1 - p) (1 without
/// dropout); the keep mask is kernels/philox.h's, the same on every backend.
template <typename A>
__device__ inline A dropout_factor(const AttentionArgs& a, int64_t pair, int64_t i, int64_t j) {
  if (a.dropout_p <= 0.0) return A(1);
  return attention_dropout_keep(a.dropout_seed, a.dropout_offset, attention_dropout_threshold(a.dropout_p), pair,
                                a.seq_q, a.seq_kv, i, j)
             ? static_cast<A>(1.0 / (1.0 - a.dropout_p))
             : A(0);
}

template <typename T, typename A, int kThreads, int Br, int Bc, int kMaxDh>
static __global__ void attention_forward_kernel(AttentionArgs a) {
  constexpr int kTpr = kThreads / Br;  // lanes per query row
  constexpr int kCols = Bc / kTpr;     // tile columns per lane
  constexpr int kDims = kMaxDh / kTpr;  // head dims per lane
  static_assert(kTpr <= kWarpSize && kCols >= 1, "a query row's lanes must fit a warp");
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim, ld = Dh + 1;
  PETAL_DYNAMIC_SHARED(A, smem);
  A* qs = smem;           // [Br][ld]
  A* ks = qs + Br * ld;   // [Bc][ld]
  A* vs = ks + Bc * ld;   // [Bc][ld]
  A* ps = vs + Bc * ld;   // [Br][Bc + 1]
  const int64_t pair = blockIdx.y, b = pair / H, h = pair % H;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * Br;
  const T* q = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1];
  const int r = static_cast<int>(threadIdx.x) / kTpr, sub = static_cast<int>(threadIdx.x) % kTpr;
  const A scale = static_cast<A>(a.scale);
  const A* mrow = mask_row<A>(a, b, h, q0 + r);
  stage_rows<T, A, kThreads>(qs, q, q0, Br, Sq, a.q_strides[2], Dh, ld);
  A o[kDims];
PETAL_UNROLL
  for (int i = 0; i < kDims; ++i) o[i] = A(0);
  A m = -std::numeric_limits<A>::infinity(), l = A(0);
  for (int64_t kv0 = 0; kv0 < Skv; kv0 += Bc) {
    __syncthreads();  // the previous tile is consumed (and the query tile is staged)
    stage_rows<T, A, kThreads>(ks, k, kv0, Bc, Skv, a.k_strides[2], Dh, ld);
    stage_rows<T, A, kThreads>(vs, v, kv0, Bc, Skv, a.v_strides[2], Dh, ld);
    __syncthreads();
    A s[kCols];
    A tile_max = -std::numeric_limits<A>::infinity();
PETAL_UNROLL
    for (int j = 0; j < kCols; ++j) {
      const int c = sub + j * kTpr;
      s[j] = kv0 + c < Skv ? masked_score(a, mrow, dot_shared(qs + r * ld, ks + c * ld, Dh) * scale, q0 + r, kv0 + c)
                           : -std::numeric_limits<A>::infinity();
      tile_max = MaxOp()(tile_max, s[j]);
    }
    tile_max = group_reduce<kTpr>(tile_max, MaxOp());
    const A m_new = MaxOp()(m, tile_max);
    // exp(m - base) is 0 on the first tile (m = -inf); base 0 while the row has no key yet.
    const A base = m_new == -std::numeric_limits<A>::infinity() ? A(0) : m_new;
    const A alpha = dmath::exp(m - base);
    A psum = A(0);
PETAL_UNROLL
    for (int j = 0; j < kCols; ++j) {
      const A p = dmath::exp(s[j] - base);
      ps[r * (Bc + 1) + sub + j * kTpr] = p * dropout_factor<A>(a, pair, q0 + r, kv0 + sub + j * kTpr);
      psum += p;  // the normalizer is the undropped one
    }
    psum = group_reduce<kTpr>(psum, SumOp());
    l = l * alpha + psum;
    m = m_new;
    __syncthreads();  // the row's probabilities are visible to all its lanes
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpr;
      if (d < Dh) {
        A acc = o[i] * alpha;
        for (int c = 0; c < Bc; ++c) acc += ps[r * (Bc + 1) + c] * vs[c * ld + d];
        o[i] = acc;
      }
    }
  }
  if (q0 + r < Sq) {
    const int64_t row = pair * Sq + q0 + r;
    T* out = static_cast<T*>(a.out) + row * Dh;
    const A inv = l > A(0) ? A(1) / l : A(0);
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpr;
      if (d < Dh) out[d] = from_acc<T>(o[i] * inv);
    }
    if (sub == 0) static_cast<A*>(a.lse)[row] = l > A(0) ? m + dmath::log(l) : -std::numeric_limits<A>::infinity();
  }
}

// delta[row] = sum_d dout[row, d] * out[row, d]; one warp per row (blockDim.x % 32 == 0).
template <typename T, typename A>
static __global__ void attention_backward_delta_kernel(const T* dout, const T* out, A* delta, int64_t rows,
                                                       int64_t dh) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  for (int64_t row = warp; row < rows; row += warps) {
    A s = A(0);
    for (int64_t d = lane; d < dh; d += kWarpSize) s += A(to_acc(dout[row * dh + d])) * A(to_acc(out[row * dh + d]));
    s = warp_reduce(s, SumOp());
    if (lane == 0) delta[row] = s;
  }
}

template <typename T, typename A, int kThreads, int Br, int Bc, int kMaxDh>
static __global__ void attention_backward_dq_kernel(AttentionArgs a, const T* dout, const A* delta, T* dq) {
  constexpr int kTpr = kThreads / Br;
  constexpr int kCols = Bc / kTpr;
  constexpr int kDims = kMaxDh / kTpr;
  static_assert(kTpr <= kWarpSize && kCols >= 1, "a query row's lanes must fit a warp");
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim, ld = Dh + 1;
  PETAL_DYNAMIC_SHARED(A, smem);
  A* qs = smem;            // [Br][ld]
  A* dos = qs + Br * ld;   // [Br][ld]
  A* ks = dos + Br * ld;   // [Bc][ld]
  A* vs = ks + Bc * ld;    // [Bc][ld]
  A* dss = vs + Bc * ld;   // [Br][Bc + 1]
  const int64_t pair = blockIdx.y, b = pair / H, h = pair % H;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * Br;
  const T* q = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1];
  const int r = static_cast<int>(threadIdx.x) / kTpr, sub = static_cast<int>(threadIdx.x) % kTpr;
  const bool row_valid = q0 + r < Sq;
  const int64_t row = pair * Sq + q0 + r;
  const A scale = static_cast<A>(a.scale);
  const A lse = row_valid ? static_cast<const A*>(a.lse)[row] : A(0);
  const A D = row_valid ? delta[row] : A(0);
  const bool row_live = row_valid && lse != -std::numeric_limits<A>::infinity();  // some key is left
  const A* mrow = mask_row<A>(a, b, h, q0 + r);
  stage_rows<T, A, kThreads>(qs, q, q0, Br, Sq, a.q_strides[2], Dh, ld);
  stage_rows<T, A, kThreads>(dos, dout + pair * Sq * Dh, q0, Br, Sq, Dh, Dh, ld);
  A acc[kDims];
PETAL_UNROLL
  for (int i = 0; i < kDims; ++i) acc[i] = A(0);
  for (int64_t kv0 = 0; kv0 < Skv; kv0 += Bc) {
    __syncthreads();
    stage_rows<T, A, kThreads>(ks, k, kv0, Bc, Skv, a.k_strides[2], Dh, ld);
    stage_rows<T, A, kThreads>(vs, v, kv0, Bc, Skv, a.v_strides[2], Dh, ld);
    __syncthreads();
PETAL_UNROLL
    for (int j = 0; j < kCols; ++j) {
      const int c = sub + j * kTpr;
      A ds = A(0);
      if (row_live && kv0 + c < Skv) {
        const A p = dmath::exp(
            masked_score(a, mrow, dot_shared(qs + r * ld, ks + c * ld, Dh) * scale, q0 + r, kv0 + c) - lse);
        ds = p * (dropout_factor<A>(a, pair, q0 + r, kv0 + c) * dot_shared(dos + r * ld, vs + c * ld, Dh) - D);
      }
      dss[r * (Bc + 1) + c] = ds;
    }
    __syncthreads();
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpr;
      if (d < Dh) {
        A s = acc[i];
        for (int c = 0; c < Bc; ++c) s += dss[r * (Bc + 1) + c] * ks[c * ld + d];
        acc[i] = s;
      }
    }
  }
  if (row_valid) {
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpr;
      if (d < Dh) dq[row * Dh + d] = from_acc<T>(acc[i] * scale);
    }
  }
}

template <typename T, typename A, int kThreads, int Br, int Bc, int kMaxDh>
static __global__ void attention_backward_dkdv_kernel(AttentionArgs a, const T* dout, const A* delta, T* dk, T* dv) {
  constexpr int kTpc = kThreads / Bc;  // lanes per key row
  constexpr int kRows = Br / kTpc;     // query rows per lane in a tile
  constexpr int kDims = kMaxDh / kTpc;
  static_assert(kTpc <= kWarpSize && kRows >= 1, "a key row's lanes must fit a warp");
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv, Dh = a.head_dim, ld = Dh + 1;
  PETAL_DYNAMIC_SHARED(A, smem);
  A* ks = smem;               // [Bc][ld]
  A* vs = ks + Bc * ld;       // [Bc][ld]
  A* qs = vs + Bc * ld;       // [Br][ld]
  A* dos = qs + Br * ld;      // [Br][ld]
  A* pt = dos + Br * ld;      // [Bc][Br + 1]: P^T of the tile
  A* dst = pt + Bc * (Br + 1);  // [Bc][Br + 1]: dS^T of the tile
  A* lses = dst + Bc * (Br + 1);  // [Br]
  A* deltas = lses + Br;          // [Br]
  const int64_t pair = blockIdx.y, b = pair / H, h = pair % H;
  const int64_t kv0 = static_cast<int64_t>(blockIdx.x) * Bc;
  const T* q = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1];
  const T* dO = dout + pair * Sq * Dh;
  const int c = static_cast<int>(threadIdx.x) / kTpc, sub = static_cast<int>(threadIdx.x) % kTpc;
  const bool col_valid = kv0 + c < Skv;
  const A scale = static_cast<A>(a.scale);
  stage_rows<T, A, kThreads>(ks, k, kv0, Bc, Skv, a.k_strides[2], Dh, ld);
  stage_rows<T, A, kThreads>(vs, v, kv0, Bc, Skv, a.v_strides[2], Dh, ld);
  A dk_acc[kDims], dv_acc[kDims];
PETAL_UNROLL
  for (int i = 0; i < kDims; ++i) dk_acc[i] = dv_acc[i] = A(0);
  for (int64_t q0 = 0; q0 < Sq; q0 += Br) {
    __syncthreads();
    stage_rows<T, A, kThreads>(qs, q, q0, Br, Sq, a.q_strides[2], Dh, ld);
    stage_rows<T, A, kThreads>(dos, dO, q0, Br, Sq, Dh, Dh, ld);
    for (int i = threadIdx.x; i < Br; i += kThreads) {
      const bool ok = q0 + i < Sq;
      lses[i] = ok ? static_cast<const A*>(a.lse)[pair * Sq + q0 + i] : A(0);
      deltas[i] = ok ? delta[pair * Sq + q0 + i] : A(0);
    }
    __syncthreads();
PETAL_UNROLL
    for (int j = 0; j < kRows; ++j) {
      const int r = sub + j * kTpc;
      A p = A(0), ds = A(0);
      if (col_valid && q0 + r < Sq && lses[r] != -std::numeric_limits<A>::infinity()) {
        p = dmath::exp(masked_score(a, mask_row<A>(a, b, h, q0 + r), dot_shared(qs + r * ld, ks + c * ld, Dh) * scale,
                                    q0 + r, kv0 + c) -
                       lses[r]);
        const A f = dropout_factor<A>(a, pair, q0 + r, kv0 + c);
        ds = p * (f * dot_shared(dos + r * ld, vs + c * ld, Dh) - deltas[r]);
        p *= f;  // dV takes the dropped weights
      }
      pt[c * (Br + 1) + r] = p;
      dst[c * (Br + 1) + r] = ds;
    }
    __syncthreads();
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpc;
      if (d < Dh) {
        A sk = dk_acc[i], sv = dv_acc[i];
        for (int r = 0; r < Br; ++r) {
          sv += pt[c * (Br + 1) + r] * dos[r * ld + d];
          sk += dst[c * (Br + 1) + r] * qs[r * ld + d];
        }
        dk_acc[i] = sk;
        dv_acc[i] = sv;
      }
    }
  }
  if (col_valid) {
    const int64_t row = pair * Skv + kv0 + c;
PETAL_UNROLL
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = sub + i * kTpc;
      if (d < Dh) {
        dk[row * Dh + d] = from_acc<T>(dk_acc[i] * scale);
        dv[row * Dh + d] = from_acc<T>(dv_acc[i]);
      }
    }
  }
}

inline unsigned tiles(int64_t n, int tile) { return static_cast<unsigned>((n + tile - 1) / tile); }

template <typename T, typename A, int kMaxDh>
static void launch_attention_forward(const AttentionArgs& a, Stream stream) {
  using Tl = AttentionTiles<A>;
  // Half the query rows at head dims up to 128 for float accumulators: twice the lanes per
  // row, half the output registers per lane (32 rows spill on sm_80 there).
  constexpr int Br = kMaxDh > 64 && std::is_same_v<A, float> ? Tl::kFwdRows / 2 : Tl::kFwdRows;
  constexpr int Bc = Tl::kFwdCols;
  const int64_t ld = a.head_dim + 1;
  const size_t smem = static_cast<size_t>((Br + 2 * Bc) * ld + Br * (Bc + 1)) * sizeof(A);
  const dim3 grid(tiles(a.seq_q, Br), static_cast<unsigned>(a.batch * a.heads));
  PETAL_LAUNCH((attention_forward_kernel<T, A, Tl::kThreads, Br, Bc, kMaxDh>), grid, Tl::kThreads, smem, stream, a);
}

template <typename T, typename A, int kMaxDh>
static void launch_attention_backward(const AttentionArgs& a, const T* dout, A* delta, T* dq, T* dk, T* dv,
                                      Stream stream) {
  using Tl = AttentionTiles<A>;
  constexpr int Br = Tl::kBwdRows, Bc = Tl::kBwdCols;
  const int64_t rows = a.batch * a.heads * a.seq_q;
  const int64_t ld = a.head_dim + 1;
  constexpr int kDeltaThreads = 128;
  PETAL_LAUNCH((attention_backward_delta_kernel<T, A>), grid_for(rows * kWarpSize, kDeltaThreads), kDeltaThreads, 0,
               stream, dout, static_cast<const T*>(a.out), delta, rows, a.head_dim);
  const unsigned pairs = static_cast<unsigned>(a.batch * a.heads);
  const size_t dq_smem = static_cast<size_t>((2 * Br + 2 * Bc) * ld + Br * (Bc + 1)) * sizeof(A);
  PETAL_LAUNCH((attention_backward_dq_kernel<T, A, Tl::kThreads, Br, Bc, kMaxDh>), dim3(tiles(a.seq_q, Br), pairs),
               Tl::kThreads, dq_smem, stream, a, dout, static_cast<const A*>(delta), dq);
  const size_t dkdv_smem = static_cast<size_t>((2 * Bc + 2 * Br) * ld + 2 * Bc * (Br + 1) + 2 * Br) * sizeof(A);
  PETAL_LAUNCH((attention_backward_dkdv_kernel<T, A, Tl::kThreads, Br, Bc, kMaxDh>),
               dim3(tiles(a.seq_kv, Bc), pairs), Tl::kThreads, dkdv_smem, stream, a, dout,
               static_cast<const A*>(delta), dk, dv);
}

}  // namespace

void CudaBackend::attention_forward(const AttentionArgs& args) {
  if (args.batch * args.heads * args.seq_q == 0) return;
  PETAL_CHECK(args.head_dim <= kAttentionMaxHeadDim, "attention_forward: head_dim ", args.head_dim,
              " exceeds the CUDA kernel's limit of ", kAttentionMaxHeadDim);
  PETAL_CHECK(args.batch * args.heads <= 65535, "attention_forward: batch * heads = ", args.batch * args.heads,
              " exceeds the grid's y limit of 65535");
  Stream stream = activate();
  if (flash_attention_applies(args)) {  // bf16/f16 on tensor cores (flash_attention.cu)
    flash_attention_forward(args, stream);
    return;
  }
  dispatch_floating(args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (args.head_dim <= 64)
      launch_attention_forward<T, acc_t<T>, 64>(args, stream);
    else
      launch_attention_forward<T, acc_t<T>, 128>(args, stream);
  });
}

void CudaBackend::attention_backward(const AttentionArgs& args, const void* dout, void* dq, void* dk, void* dv) {
  if (args.batch * args.heads == 0 || args.seq_q * args.seq_kv == 0) return;
  PETAL_CHECK(args.head_dim <= kAttentionMaxHeadDim, "attention_backward: head_dim ", args.head_dim,
              " exceeds the CUDA kernel's limit of ", kAttentionMaxHeadDim);
  PETAL_CHECK(args.batch * args.heads <= 65535, "attention_backward: batch * heads = ", args.batch * args.heads,
              " exceeds the grid's y limit of 65535");
  Stream stream = activate();
  if (flash_attention_applies(args)) {
    flash_attention_backward(*this, args, dout, dq, dk, dv, stream);
    return;
  }
  dispatch_floating(args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    A* delta = static_cast<A*>(allocate(static_cast<size_t>(args.batch * args.heads * args.seq_q) * sizeof(A)));
    try {
      if (args.head_dim <= 64)
        launch_attention_backward<T, A, 64>(args, static_cast<const T*>(dout), delta, static_cast<T*>(dq),
                                            static_cast<T*>(dk), static_cast<T*>(dv), stream);
      else
        launch_attention_backward<T, A, 128>(args, static_cast<const T*>(dout), delta, static_cast<T*>(dq),
                                             static_cast<T*>(dk), static_cast<T*>(dv), stream);
    } catch (...) {
      deallocate(delta);
      throw;
    }
    deallocate(delta);  // stream-ordered: freed after the kernels that read it
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
