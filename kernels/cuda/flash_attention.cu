// Tensor-core flash attention for bf16/f16 (f32 accumulation), FlashAttention-2 style:
// out = softmax(q k^T * scale) v and its backward, built only from the warp-level primitives
// of kernels/cuda/ptx.cuh (mma.sync m16n8k16, ldmatrix, cp.async). CudaBackend's
// attention_forward/backward (attention.cu) call it for bf16/f16 when
// flash_attention_applies(); f32/f64 and the other cases keep attention.cu's kernels.
//
// Operands are [B, H, S, Dh] read through their B/H/S strides (unit stride on Dh), so views of
// a packed qkv projection are read in place. kD (32, 64, 128) is the head-dim capacity of an
// instantiation; any head_dim <= kD that is a multiple of 8 runs in it, the missing columns
// being zeros in shared memory. Sequence tails are zero rows in shared memory whose keys score
// -inf (forward) or whose probabilities are forced to 0 (backward); padded queries are never
// written.
//
// Forward: one block of 4 warps per (64 query rows, (b, h) pair); warp w owns query rows
// 16w..16w+15. The Q tile goes through shared memory into registers (A fragments, ldmatrix)
// once; K/V tiles of Bc keys (64; 32 at head dim 128) stream through two shared-memory
// stages with cp.async (tile t+1 is in flight while tile t is used). Per tile: S = Q K^T
// (mma; K rows are B fragments by plain ldmatrix), scaled into log2 units, the running row
// max m and partial row sums l are updated (online softmax, the row's 4 lanes combine their
// maxima with shuffles), the output accumulator is rescaled by exp2(m_old - m_new), and P
// (the S accumulator re-packed to bf16/f16 A fragments, no shared memory) times V (B
// fragments by ldmatrix.trans) is accumulated.
// The end divides by l and saves lse = ln(sum exp(s * scale)) per row.
//
// Backward (three launches): prep: D_i = rowsum(dO_i * O_i) (f32) and a zeroed f32 dQ
// accumulator; main: one block per 64-key tile (warp w owns keys 16w..16w+15, their dK, dV
// accumulators stay in registers) streaming query tiles of Br = 2048 / kD rows (Q, dO by
// cp.async in two stages, lse and D beside them):
//   S^T = K Q^T, P^T = exp2(S^T * scale * log2 e - lse * log2 e), dP^T = V dO^T,
//   dS^T = P^T * (dP^T - D) * scale, dV += P^T dO, dK += dS^T Q,
//   dS^T goes to shared memory and dQ_tile = dS K (each warp a 16 x 32 piece) is added to the
//   f32 accumulator with atomicAdd (order of the blocks' additions is not fixed: dQ is not
//   bit-reproducible on a GPU; dK and dV are);
// convert: dQ = accumulator rounded to the element type. Nothing but FlashAttention-2's
// recomputation of S and P.
// Masks: the additive mask (f32, strided, zero strides where broadcast) is read per score
// element from global memory and added (in log2 units); is_causal scores key j > query i as
// -inf, and the K/V tiles (forward) or query tiles (backward) wholly above the diagonal are
// skipped. A row with no key left gets out 0, lse -inf, and P = 0 in the backward.
// Assumptions (flash_attention_applies): head_dim % 8 == 0 and <= 128; q, k, v base pointers
// 16-byte aligned and their B/H/S strides multiples of 8 elements (cp.async moves 16 bytes).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/ptx.cuh"
#include "kernels/philox.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

constexpr int kFlashThreads = 128;  // 4 warps
constexpr int kFlashRows = 64;      // forward: query rows per block (16 per warp)
constexpr int kFlashCols = 64;      // keys per block (backward) and per K/V tile (forward, kD <= 64)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/// Shared-memory row pitch in elements: rows stay 16-byte aligned and the 8 row addresses of
/// an ldmatrix fall into different bank groups.
template <int kD>
constexpr int pitch() {
  return kD + 8;
}

/// Keys per K/V tile of the forward: 32 at kD = 128, where the Q fragments (kD / 4 registers)
/// and the O accumulator (kD / 2) leave no room for a 64-wide S tile without spills on sm_80.
template <int kD>
constexpr int forward_cols() {
  return kD == 128 ? 32 : 64;
}

/// Query rows per tile of the backward: S^T, dP^T (16 x Br per warp) and the dQ piece stay
/// small next to the dK, dV accumulators (kD / 2 registers each).
template <int kD>
constexpr int backward_rows() {
  return 2048 / kD;
}

template <typename T>
__device__ inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, bf16>)
    ptx::mma_m16n8k16_bf16(d, a, b, d);
  else
    ptx::mma_m16n8k16_f16(d, a, b, d);
}

/// Two floats rounded to T, `lo` in the low half (the lower column).
template <typename T>
__device__ inline uint32_t pack2(float lo, float hi) {
  const T l = from_acc<T>(lo), h = from_acc<T>(hi);
  uint16_t lb, hb;
  memcpy(&lb, &l, sizeof lb);
  memcpy(&hb, &h, sizeof hb);
  return ptx::pack_b16x2(lb, hb);
}

/// Rows [row0, row0 + kRows) of a strided [S, dh] matrix into shared memory (pitch kD + 8):
/// cp.async for rows below valid_rows and columns below dh, zeros elsewhere (plain stores).
/// The caller commits the group.
template <typename T, int kRows, int kD>
__device__ inline void load_tile(T* dst, const T* src, int64_t row0, int64_t valid_rows, int64_t stride, int dh) {
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  constexpr int kIters = kRows * kChunks / kFlashThreads;
  static_assert(kRows * kChunks % kFlashThreads == 0, "whole chunks per thread");
PETAL_UNROLL
  for (int i = 0; i < kIters; ++i) {
    const int e = static_cast<int>(threadIdx.x) + i * kFlashThreads;
    const int r = e / kChunks, c = (e % kChunks) * 8;
    T* d = dst + r * pitch<kD>() + c;
    if (row0 + r < valid_rows && c < dh)
      ptx::cp_async_cg_16(d, src + (row0 + r) * stride + c);
    else
      *reinterpret_cast<uint4*>(d) = uint4{0u, 0u, 0u, 0u};
  }
}

/// ldmatrix address of lane for an A fragment (16 x 16 at row0, col0 of a row-major tile), or
/// for two B fragments (n-tiles row0, row0 + 8) of a tile stored n-major (rows are n, k
/// contiguous), or, with .trans, for two B fragments of a k-major tile.
__device__ inline int a_frag_offset(int lane, int row0, int col0, int ld) {
  return (row0 + lane % 8 + 8 * ((lane / 8) % 2)) * ld + col0 + 8 * (lane / 16);
}
__device__ inline int b_frag_offset(int lane, int row0, int col0, int ld) {
  return (row0 + lane % 8 + 8 * (lane / 16)) * ld + col0 + 8 * ((lane / 8) % 2);
}

/// Dropout keep of the weights (row, col) and (row, col + 1), col even (both in one Philox
/// block of kernels/philox.h's attention mask): bit 0 and bit 1.
__device__ inline unsigned dropout_keep_pair(const AttentionArgs& a, uint32_t threshold, int64_t pair, int64_t row,
                                             int64_t col) {
  const uint64_t counter = a.dropout_offset +
                           static_cast<uint64_t>(pair * a.seq_q + row) * static_cast<uint64_t>((a.seq_kv + 3) / 4) +
                           static_cast<uint64_t>(col / 4);
  const Philox4 w = philox4x32(a.dropout_seed, counter);
  const bool hi = (col & 2) != 0;
  return ((hi ? w.v[2] : w.v[0]) >= threshold ? 1u : 0u) | ((hi ? w.v[3] : w.v[1]) >= threshold ? 2u : 0u);
}

template <typename T, int kD, bool kDropout>
static __global__ void flash_attention_forward_kernel(AttentionArgs a) {
  constexpr int P = pitch<kD>();
  constexpr int Bc = forward_cols<kD>();
  constexpr int kTileElems = Bc * P;  // one K or V tile
  constexpr int kStageElems = 2 * kTileElems;  // K and V
  constexpr int kKSteps = kD / 16;             // k-steps of Q K^T
  constexpr int kSTiles = Bc / 8;      // n-tiles of S
  constexpr int kOTiles = kD / 8;              // n-tiles of O
  static_assert(kFlashRows * P <= kStageElems, "the Q tile fits into one K/V stage");
  PETAL_DYNAMIC_SHARED(T, smem);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int g = lane / 4, tq = lane % 4;
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv;
  const int dh = static_cast<int>(a.head_dim);
  const int64_t pair = blockIdx.y, b = pair / H, h = pair % H;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kFlashRows;
  const T* q = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1];
  int n_tiles = static_cast<int>((Skv + Bc - 1) / Bc);
  if (a.causal) n_tiles = min(n_tiles, static_cast<int>((q0 + kFlashRows + Bc - 1) / Bc));  // keys <= last row
  // Mask rows of this lane's two query rows (null without a mask or past the end).
  const float* mrow[2];
  const int64_t qrow[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
PETAL_UNROLL
  for (int r = 0; r < 2; ++r)
    mrow[r] = a.mask != nullptr && qrow[r] < Sq ? static_cast<const float*>(a.mask) + b * a.mask_strides[0] +
                                                      h * a.mask_strides[1] + qrow[r] * a.mask_strides[2]
                                                : nullptr;
  const bool any_mask = a.mask != nullptr || a.causal;

  // Q into stage 1 (free until tile 1 is prefetched), K/V tile 0 into stage 0.
  T* qs = smem + kStageElems;
  load_tile<T, kFlashRows, kD>(qs, q, q0, Sq, a.q_strides[2], dh);
  ptx::cp_async_commit_group();
  load_tile<T, Bc, kD>(smem, k, 0, Skv, a.k_strides[2], dh);
  load_tile<T, Bc, kD>(smem + kTileElems, v, 0, Skv, a.v_strides[2], dh);
  ptx::cp_async_commit_group();
  ptx::cp_async_wait_group<1>();  // the Q group
  __syncthreads();
  uint32_t qf[kKSteps][4];
PETAL_UNROLL
  for (int kk = 0; kk < kKSteps; ++kk) ptx::ldmatrix_x4(qf[kk], qs + a_frag_offset(lane, warp * 16, kk * 16, P));
  __syncthreads();  // stage 1 may now be overwritten

  float o[kOTiles][4];
PETAL_UNROLL
  for (int n = 0; n < kOTiles; ++n)
PETAL_UNROLL
    for (int i = 0; i < 4; ++i) o[n][i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g and g + 8 (log2 units)
  const float scale_log2 = static_cast<float>(a.scale) * kLog2e;
  const uint32_t drop_threshold = kDropout ? attention_dropout_threshold(a.dropout_p) : 0u;

  for (int t = 0; t < n_tiles; ++t) {
    if (t + 1 < n_tiles) {
      T* st = smem + ((t + 1) % 2) * kStageElems;
      const int64_t kv1 = static_cast<int64_t>(t + 1) * Bc;
      load_tile<T, Bc, kD>(st, k, kv1, Skv, a.k_strides[2], dh);
      load_tile<T, Bc, kD>(st + kTileElems, v, kv1, Skv, a.v_strides[2], dh);
    }
    ptx::cp_async_commit_group();  // possibly empty: "all but the newest" is then tile t
    ptx::cp_async_wait_group<1>();
    __syncthreads();
    const T* ks = smem + (t % 2) * kStageElems;
    const T* vs = ks + kTileElems;

    float s[kSTiles][4];
PETAL_UNROLL
    for (int j = 0; j < kSTiles; ++j)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) s[j][i] = 0.0f;
PETAL_UNROLL
    for (int kk = 0; kk < kKSteps; ++kk)
PETAL_UNROLL
      for (int nj = 0; nj < kSTiles / 2; ++nj) {
        uint32_t r[4];
        ptx::ldmatrix_x4(r, ks + b_frag_offset(lane, nj * 16, kk * 16, P));
        const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        mma<T>(s[2 * nj], qf[kk], b0);
        mma<T>(s[2 * nj + 1], qf[kk], b1);
      }

    // Scores in log2 units; keys past the end score -inf.
    const int64_t kv0 = static_cast<int64_t>(t) * Bc;
    const bool tail = kv0 + Bc > Skv;
    float mx[2] = {m[0], m[1]};
PETAL_UNROLL
    for (int j = 0; j < kSTiles; ++j)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) {
        float x = s[j][i] * scale_log2;
        const int64_t col = kv0 + 8 * j + 2 * tq + i % 2;
        if (tail && col >= Skv) {
          x = -INFINITY;
        } else if (any_mask) {
          if (a.causal && col > qrow[i / 2])
            x = -INFINITY;
          else if (mrow[i / 2] != nullptr)
            x += mrow[i / 2][col * a.mask_strides[3]] * kLog2e;
        }
        s[j][i] = x;
        mx[i / 2] = fmaxf(mx[i / 2], x);
      }
    float alpha[2], base[2], rs[2] = {0.0f, 0.0f};
PETAL_UNROLL
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // a row with no key yet: exp2(-inf) = 0
      alpha[r] = exp2f(m[r] - base[r]);
      m[r] = mx[r];
    }
PETAL_UNROLL
    for (int j = 0; j < kSTiles; ++j)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) {
        s[j][i] = exp2f(s[j][i] - base[i / 2]);
        rs[i / 2] += s[j][i];
      }
PETAL_UNROLL
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + rs[r];  // this lane's columns only
    if constexpr (kDropout) {  // dropped weights leave P V; l stays the undropped sum
PETAL_UNROLL
      for (int j = 0; j < kSTiles; ++j)
PETAL_UNROLL
        for (int r = 0; r < 2; ++r) {
          const unsigned keep = dropout_keep_pair(a, drop_threshold, pair, qrow[r], kv0 + 8 * j + 2 * tq);
          if ((keep & 1u) == 0) s[j][2 * r] = 0.0f;
          if ((keep & 2u) == 0) s[j][2 * r + 1] = 0.0f;
        }
    }
PETAL_UNROLL
    for (int n = 0; n < kOTiles; ++n)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) o[n][i] *= alpha[i / 2];

    // O += P V: the S accumulator of n-tiles 2kk, 2kk + 1 is the A fragment of k-step kk.
PETAL_UNROLL
    for (int kk = 0; kk < Bc / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
PETAL_UNROLL
      for (int nd = 0; nd < kOTiles / 2; ++nd) {
        uint32_t r[4];
        ptx::ldmatrix_x4_trans(r, vs + a_frag_offset(lane, kk * 16, nd * 16, P));
        const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        mma<T>(o[2 * nd], pa, b0);
        mma<T>(o[2 * nd + 1], pa, b1);
      }
    }
    __syncthreads();  // stage t % 2 is refilled by the next iteration's prefetch
  }

  T* out = static_cast<T*>(a.out);
  float* lse = static_cast<float*>(a.lse);
PETAL_UNROLL
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
PETAL_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int64_t row = q0 + warp * 16 + g + 8 * r;
    if (row >= Sq) continue;
    // A row with every key masked gives 0; dropout scales the kept weights by 1 / (1 - p).
    const float inv = l[r] > 0.0f ? (kDropout ? static_cast<float>(1.0 / (1.0 - a.dropout_p)) : 1.0f) / l[r] : 0.0f;
    T* orow = out + (pair * Sq + row) * dh;
PETAL_UNROLL
    for (int n = 0; n < kOTiles; ++n) {
      const int col = 8 * n + 2 * tq;
      if (col < dh) *reinterpret_cast<uint32_t*>(orow + col) = pack2<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
    if (tq == 0) lse[pair * Sq + row] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

// delta[row] = sum_d dout[row, d] * out[row, d] and a zeroed row in each of the `slices` dQ
// accumulators (1, or one per K/V block in the deterministic mode); one warp per row
// (blockDim.x % 32 == 0).
template <typename T>
static __global__ void flash_attention_backward_prep_kernel(const T* dout, const T* out, float* delta, float* dq_acc,
                                                            int slices, int64_t rows, int64_t dh) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  for (int64_t row = warp; row < rows; row += warps) {
    float s = 0.0f;
    for (int64_t d = lane; d < dh; d += kWarpSize) {
      s += to_acc(dout[row * dh + d]) * to_acc(out[row * dh + d]);
      for (int x = 0; x < slices; ++x) dq_acc[(x * rows + row) * dh + d] = 0.0f;
    }
    s = warp_reduce(s, SumOp());
    if (lane == 0) delta[row] = s;
  }
}

template <typename T, int kD, bool kDropout>
static __global__ void flash_attention_backward_kernel(AttentionArgs a, const T* dout, const float* delta,
                                                       float* dq_acc, int64_t dq_block_stride, T* dk, T* dv) {
  constexpr int P = pitch<kD>();
  constexpr int Br = backward_rows<kD>();
  constexpr int Pd = Br + 8;                    // pitch of dS^T [keys][queries]
  constexpr int kQElems = Br * P;               // one Q or dO tile
  constexpr int kKSteps = kD / 16;
  constexpr int kQTiles = Br / 8;               // n-tiles of S^T and dP^T
  constexpr int kDTiles = kD / 8;               // n-tiles of dK, dV
  constexpr int kRowGroups = Br / 16;           // dQ: warps over 16-row groups x 32-dim groups
  static_assert(kRowGroups * (kD / 32) == 4, "the 4 warps cover the dQ tile");
  PETAL_DYNAMIC_SHARED(T, smem);
  T* ks = smem;                                 // [64][P]
  T* vs = ks + kFlashCols * P;                  // [64][P]
  T* stages = vs + kFlashCols * P;              // 2 x (Q [Br][P], dO [Br][P])
  T* dst = stages + 4 * kQElems;                // [64][Pd]
  float* stats = reinterpret_cast<float*>(dst + kFlashCols * Pd);  // 2 x (lse2 [Br], D [Br])
  const int tid = static_cast<int>(threadIdx.x), lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int g = lane / 4, tq = lane % 4;
  const int64_t H = a.heads, Sq = a.seq_q, Skv = a.seq_kv;
  const int dh = static_cast<int>(a.head_dim);
  const int64_t pair = blockIdx.y, b = pair / H, h = pair % H;
  const int64_t kv0 = static_cast<int64_t>(blockIdx.x) * kFlashCols;
  const T* q = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + h * a.k_strides[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + h * a.v_strides[1];
  const T* dO = dout + pair * Sq * dh;
  const float* lse = static_cast<const float*>(a.lse) + pair * Sq;
  const float* D = delta + pair * Sq;
  const float scale = static_cast<float>(a.scale), scale_log2 = scale * kLog2e;
  const uint32_t drop_threshold = kDropout ? attention_dropout_threshold(a.dropout_p) : 0u;
  const float drop_scale = kDropout ? static_cast<float>(1.0 / (1.0 - a.dropout_p)) : 1.0f;
  const int n_tiles = static_cast<int>((Sq + Br - 1) / Br);
  // Causal: query tiles wholly before this block's first key have P = 0.
  const int t_start = a.causal ? static_cast<int>(kv0 / Br) : 0;
  const float* mask = a.mask != nullptr
                          ? static_cast<const float*>(a.mask) + b * a.mask_strides[0] + h * a.mask_strides[1]
                          : nullptr;

  auto load_query_tile = [&](int tile, int stage) {
    const int64_t r0 = static_cast<int64_t>(tile) * Br;
    T* st = stages + stage * 2 * kQElems;
    load_tile<T, Br, kD>(st, q, r0, Sq, a.q_strides[2], dh);
    load_tile<T, Br, kD>(st + kQElems, dO, r0, Sq, dh, dh);
    float* ss = stats + stage * 2 * Br;
    for (int i = tid; i < Br; i += kFlashThreads) {
      const int64_t row = r0 + i;
      // Padded queries and rows with every key masked (lse = -inf) get P = exp2(x - inf) = 0.
      const float x = row < Sq ? lse[row] : -INFINITY;
      ss[i] = x == -INFINITY ? INFINITY : x * kLog2e;
      ss[Br + i] = row < Sq ? D[row] : 0.0f;
    }
  };

  load_tile<T, kFlashCols, kD>(ks, k, kv0, Skv, a.k_strides[2], dh);
  load_tile<T, kFlashCols, kD>(vs, v, kv0, Skv, a.v_strides[2], dh);
  load_query_tile(t_start, t_start % 2);
  ptx::cp_async_commit_group();

  float dk_acc[kDTiles][4], dv_acc[kDTiles][4];
PETAL_UNROLL
  for (int n = 0; n < kDTiles; ++n)
PETAL_UNROLL
    for (int i = 0; i < 4; ++i) dk_acc[n][i] = dv_acc[n][i] = 0.0f;
  // Key rows of this lane's accumulator elements (i / 2 = 0, 1) and whether they exist.
  const bool key_ok[2] = {kv0 + warp * 16 + g < Skv, kv0 + warp * 16 + g + 8 < Skv};
  const int rg = warp % kRowGroups, dg = warp / kRowGroups;

  for (int t = t_start; t < n_tiles; ++t) {
    if (t + 1 < n_tiles) load_query_tile(t + 1, (t + 1) % 2);
    ptx::cp_async_commit_group();
    ptx::cp_async_wait_group<1>();
    __syncthreads();
    const T* qs = stages + (t % 2) * 2 * kQElems;
    const T* dos = qs + kQElems;
    const float* lse2 = stats + (t % 2) * 2 * Br;
    const float* Ds = lse2 + Br;
    // Dropout: the keep bits of this lane's S^T elements (bit 4 j + i), drawn before the
    // S^T / dP^T accumulators are live (fewer registers at the peak).
    uint32_t keep_bits = 0;
    if constexpr (kDropout) {
      static_assert(kQTiles * 4 <= 32, "one bit per element");
PETAL_UNROLL
      for (int j = 0; j < kQTiles; ++j)
PETAL_UNROLL
        for (int i = 0; i < 4; ++i) {
          const int64_t qi = static_cast<int64_t>(t) * Br + 8 * j + 2 * tq + i % 2;
          const int64_t key = kv0 + warp * 16 + g + 8 * (i / 2);
          if (attention_dropout_keep(a.dropout_seed, a.dropout_offset, drop_threshold, pair, Sq, Skv, qi, key))
            keep_bits |= 1u << (4 * j + i);
        }
    }

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys.
    float st[kQTiles][4], dpt[kQTiles][4];
PETAL_UNROLL
    for (int j = 0; j < kQTiles; ++j)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) st[j][i] = dpt[j][i] = 0.0f;
PETAL_UNROLL
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t ka[4], va[4];
      ptx::ldmatrix_x4(ka, ks + a_frag_offset(lane, warp * 16, kk * 16, P));
      ptx::ldmatrix_x4(va, vs + a_frag_offset(lane, warp * 16, kk * 16, P));
PETAL_UNROLL
      for (int nj = 0; nj < kQTiles / 2; ++nj) {
        uint32_t r[4];
        ptx::ldmatrix_x4(r, qs + b_frag_offset(lane, nj * 16, kk * 16, P));
        const uint32_t q0f[2] = {r[0], r[1]}, q1f[2] = {r[2], r[3]};
        mma<T>(st[2 * nj], ka, q0f);
        mma<T>(st[2 * nj + 1], ka, q1f);
        ptx::ldmatrix_x4(r, dos + b_frag_offset(lane, nj * 16, kk * 16, P));
        const uint32_t d0f[2] = {r[0], r[1]}, d1f[2] = {r[2], r[3]};
        mma<T>(dpt[2 * nj], va, d0f);
        mma<T>(dpt[2 * nj + 1], va, d1f);
      }
    }
    // P^T and dS^T (scaled) in place; keys past the end have P = 0.
PETAL_UNROLL
    for (int j = 0; j < kQTiles; ++j)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int c = 8 * j + 2 * tq + i % 2;
        const int64_t qi = static_cast<int64_t>(t) * Br + c, key = kv0 + warp * 16 + g + 8 * (i / 2);
        float x = st[j][i] * scale_log2;
        bool live = key_ok[i / 2];
        if (a.causal && key > qi) live = false;
        if (live && mask != nullptr && qi < Sq) x += mask[qi * a.mask_strides[2] + key * a.mask_strides[3]] * kLog2e;
        const float p = live ? exp2f(x - lse2[c]) : 0.0f;
        if constexpr (kDropout) {  // P' = P keep / (1 - p) for dV; dS = P (dP' keep / (1 - p) - D)
          const float f = (keep_bits >> (4 * j + i)) & 1u ? drop_scale : 0.0f;
          st[j][i] = p * f;
          dpt[j][i] = p * (f * dpt[j][i] - Ds[c]) * scale;
        } else {
          st[j][i] = p;
          dpt[j][i] = p * (dpt[j][i] - Ds[c]) * scale;
        }
      }
    // dV += P^T dO, dK += dS^T Q: the accumulators of n-tiles 2kk, 2kk + 1 are A fragments.
PETAL_UNROLL
    for (int kk = 0; kk < Br / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(st[2 * kk][0], st[2 * kk][1]), pack2<T>(st[2 * kk][2], st[2 * kk][3]),
                              pack2<T>(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack2<T>(st[2 * kk + 1][2], st[2 * kk + 1][3])};
      const uint32_t da[4] = {pack2<T>(dpt[2 * kk][0], dpt[2 * kk][1]), pack2<T>(dpt[2 * kk][2], dpt[2 * kk][3]),
                              pack2<T>(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                              pack2<T>(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
PETAL_UNROLL
      for (int nd = 0; nd < kDTiles / 2; ++nd) {
        uint32_t r[4];
        ptx::ldmatrix_x4_trans(r, dos + a_frag_offset(lane, kk * 16, nd * 16, P));
        const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        mma<T>(dv_acc[2 * nd], pa, b0);
        mma<T>(dv_acc[2 * nd + 1], pa, b1);
        ptx::ldmatrix_x4_trans(r, qs + a_frag_offset(lane, kk * 16, nd * 16, P));
        const uint32_t c0[2] = {r[0], r[1]}, c1[2] = {r[2], r[3]};
        mma<T>(dk_acc[2 * nd], da, c0);
        mma<T>(dk_acc[2 * nd + 1], da, c1);
      }
    }
    // dS^T [keys][queries] into shared memory for dQ.
PETAL_UNROLL
    for (int j = 0; j < kQTiles; ++j)
PETAL_UNROLL
      for (int r = 0; r < 2; ++r)
        *reinterpret_cast<uint32_t*>(dst + (warp * 16 + g + 8 * r) * Pd + 8 * j + 2 * tq) =
            pack2<T>(dpt[j][2 * r], dpt[j][2 * r + 1]);
    __syncthreads();

    // dQ piece: query rows 16 rg.., dims 32 dg..; A = dS from dS^T by ldmatrix.trans, B = K.
    float dqa[4][4];
PETAL_UNROLL
    for (int n = 0; n < 4; ++n)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) dqa[n][i] = 0.0f;
PETAL_UNROLL
    for (int kk = 0; kk < kFlashCols / 16; ++kk) {
      uint32_t af[4];
      ptx::ldmatrix_x4_trans(af, dst + b_frag_offset(lane, kk * 16, rg * 16, Pd));
PETAL_UNROLL
      for (int nd = 0; nd < 2; ++nd) {
        uint32_t r[4];
        ptx::ldmatrix_x4_trans(r, ks + a_frag_offset(lane, kk * 16, dg * 32 + nd * 16, P));
        const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
        mma<T>(dqa[2 * nd], af, b0);
        mma<T>(dqa[2 * nd + 1], af, b1);
      }
    }
    const int64_t qrow0 = static_cast<int64_t>(t) * Br + rg * 16 + g;
PETAL_UNROLL
    for (int n = 0; n < 4; ++n)
PETAL_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int64_t row = qrow0 + 8 * (i / 2);
        const int col = dg * 32 + 8 * n + 2 * tq + i % 2;
        // Deterministic mode (dq_block_stride != 0): into this block's own zeroed slice, where
        // each element receives this one addition (0 + x = x: no order to depend on).
        if (row < Sq && col < dh)
          atomicAdd(dq_acc + static_cast<int64_t>(blockIdx.x) * dq_block_stride + (pair * Sq + row) * dh + col,
                    dqa[n][i]);
      }
    __syncthreads();  // dS^T and stage t % 2 are rewritten by the next iteration
  }
  ptx::cp_async_wait_all();  // no query tile at all (causal, keys past every query): drain the loads

PETAL_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (!key_ok[r]) continue;
    const int64_t row = pair * Skv + kv0 + warp * 16 + g + 8 * r;
PETAL_UNROLL
    for (int n = 0; n < kDTiles; ++n) {
      const int col = 8 * n + 2 * tq;
      if (col >= dh) continue;
      *reinterpret_cast<uint32_t*>(dk + row * dh + col) = pack2<T>(dk_acc[n][2 * r], dk_acc[n][2 * r + 1]);
      *reinterpret_cast<uint32_t*>(dv + row * dh + col) = pack2<T>(dv_acc[n][2 * r], dv_acc[n][2 * r + 1]);
    }
  }
}

template <typename T>
static __global__ void flash_attention_backward_dq_kernel(const float* dq_acc, T* dq, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dq[i] = from_acc<T>(dq_acc[i]);
}

// Deterministic mode: dq = sum over the K/V blocks x (in order) of their partial dQ slices
// parts[x] (n = rows * dh elements each). Causal: block x skipped the query tiles t below
// x * 64 / Br (its slice holds zeros there), so they are not read.
template <typename T>
static __global__ void flash_attention_backward_dq_reduce_kernel(const float* parts, T* dq, int64_t n, int64_t sq,
                                                                 int64_t dh, int kv_blocks, int br, bool causal) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = (i / dh) % sq / br;  // query tile of this element
    float s = 0.0f;
    for (int x = 0; x < kv_blocks; ++x)
      if (!causal || t >= static_cast<int64_t>(x) * kFlashCols / br) s += parts[x * n + i];
    dq[i] = from_acc<T>(s);
  }
}

inline unsigned tiles(int64_t n, int tile) { return static_cast<unsigned>((n + tile - 1) / tile); }

template <typename T, int kD>
constexpr size_t forward_smem_bytes() {
  return static_cast<size_t>(2 * 2 * forward_cols<kD>() * pitch<kD>()) * sizeof(T);
}
template <typename T, int kD>
constexpr size_t backward_smem_bytes() {
  constexpr int Br = backward_rows<kD>();
  return static_cast<size_t>(2 * kFlashCols * pitch<kD>() + 4 * Br * pitch<kD>() + kFlashCols * (Br + 8)) *
             sizeof(T) +
         static_cast<size_t>(4 * Br) * sizeof(float);
}

template <typename T, int kD, bool kDropout>
void launch_forward(const AttentionArgs& a, Stream stream) {
  constexpr size_t smem = forward_smem_bytes<T, kD>();
  if (smem > 48 * 1024)
    opt_in_dynamic_shared_memory("flash_attention_forward_kernel", flash_attention_forward_kernel<T, kD, kDropout>,
                                 smem);
  PETAL_LAUNCH((flash_attention_forward_kernel<T, kD, kDropout>),
               dim3(tiles(a.seq_q, kFlashRows), static_cast<unsigned>(a.batch * a.heads)), kFlashThreads, smem, stream,
               a);
}

template <typename T, int kD, bool kDropout>
void launch_backward(const AttentionArgs& a, const T* dout, const float* delta, float* dq_acc, T* dk, T* dv,
                     Stream stream) {
  constexpr size_t smem = backward_smem_bytes<T, kD>();
  if (smem > 48 * 1024)
    opt_in_dynamic_shared_memory("flash_attention_backward_kernel", flash_attention_backward_kernel<T, kD, kDropout>,
                                 smem);
  PETAL_LAUNCH((flash_attention_backward_kernel<T, kD, kDropout>),
               dim3(tiles(a.seq_kv, kFlashCols), static_cast<unsigned>(a.batch * a.heads)), kFlashThreads, smem,
               stream, a, dout, delta, dq_acc, a.deterministic ? a.batch * a.heads * a.seq_q * a.head_dim : int64_t(0),
               dk, dv);
}

template <typename T, typename F>
void dispatch_head_dim(int64_t dh, F&& f) {
  if (dh <= 32)
    f(std::integral_constant<int, 32>{});
  else if (dh <= 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool flash_attention_applies(const AttentionArgs& a) {
  if (a.dtype != DType::bf16 && a.dtype != DType::f16) return false;  // the mask is then f32
  if (a.head_dim % 8 != 0 || a.head_dim > 128 || a.head_dim == 0) return false;
  if (!aligned_16(a.q) || !aligned_16(a.k) || !aligned_16(a.v) || !aligned_16(a.out)) return false;
  for (int i = 0; i < 3; ++i)
    if (a.q_strides[i] % 8 != 0 || a.k_strides[i] % 8 != 0 || a.v_strides[i] % 8 != 0) return false;
  return true;
}

void flash_attention_forward(const AttentionArgs& a, Stream stream) {
  const auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_head_dim<T>(a.head_dim, [&](auto d) {
      if (a.dropout_p > 0.0)
        launch_forward<T, decltype(d)::value, true>(a, stream);
      else
        launch_forward<T, decltype(d)::value, false>(a, stream);
    });
  };
  if (a.dtype == DType::bf16)
    run(TypeTag<bf16>{});
  else
    run(TypeTag<f16>{});
}

void flash_attention_backward(CudaBackend& backend, const AttentionArgs& a, const void* dout, void* dq, void* dk,
                              void* dv, Stream stream) {
  const int64_t rows = a.batch * a.heads * a.seq_q;
  const int kv_blocks = static_cast<int>(tiles(a.seq_kv, kFlashCols));
  // The f32 dQ accumulator, or (deterministic) one partial dQ slice per K/V block.
  const int64_t acc_elems = rows * a.head_dim * (a.deterministic ? kv_blocks : 1);
  float* delta = static_cast<float*>(backend.allocate(static_cast<size_t>(rows) * sizeof(float)));
  float* dq_acc = nullptr;
  try {
    dq_acc = static_cast<float*>(backend.allocate(static_cast<size_t>(acc_elems) * sizeof(float)));
    const auto run = [&](auto tag) {
      using T = typename decltype(tag)::type;
      constexpr int kPrepThreads = 128;
      PETAL_LAUNCH((flash_attention_backward_prep_kernel<T>), grid_for(rows * kWarpSize, kPrepThreads),
                   kPrepThreads, 0, stream, static_cast<const T*>(dout), static_cast<const T*>(a.out), delta,
                   dq_acc, a.deterministic ? kv_blocks : 1, rows, a.head_dim);
      dispatch_head_dim<T>(a.head_dim, [&](auto d) {
        constexpr int kD = decltype(d)::value;
        if (a.dropout_p > 0.0)
          launch_backward<T, kD, true>(a, static_cast<const T*>(dout), delta, dq_acc, static_cast<T*>(dk),
                                       static_cast<T*>(dv), stream);
        else
          launch_backward<T, kD, false>(a, static_cast<const T*>(dout), delta, dq_acc, static_cast<T*>(dk),
                                        static_cast<T*>(dv), stream);
        if (a.deterministic)
          PETAL_LAUNCH((flash_attention_backward_dq_reduce_kernel<T>), grid_for(rows * a.head_dim), kBlockSize, 0,
                       stream, static_cast<const float*>(dq_acc), static_cast<T*>(dq), rows * a.head_dim, a.seq_q,
                       a.head_dim, kv_blocks, backward_rows<kD>(), a.causal);
      });
      if (!a.deterministic)
        PETAL_LAUNCH((flash_attention_backward_dq_kernel<T>), grid_for(rows * a.head_dim), kBlockSize, 0, stream,
                     static_cast<const float*>(dq_acc), static_cast<T*>(dq), rows * a.head_dim);
    };
    if (a.dtype == DType::bf16)
      run(TypeTag<bf16>{});
    else
      run(TypeTag<f16>{});
  } catch (...) {
    backend.deallocate(delta);
    if (dq_acc != nullptr) backend.deallocate(dq_acc);
    throw;
  }
  backend.deallocate(delta);  // stream-ordered: freed after the kernels that read them
  backend.deallocate(dq_acc);
}

}  // namespace petal::kernels::PETAL_CUDA_NS
