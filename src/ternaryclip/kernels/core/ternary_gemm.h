// Ternary GEMM kernels: Y[M, N] = X[M, K] . (scale * T[N, K])^T + bias.
//
// Weight layout (the .tclip "2bit" packing, see src/ternaryclip/pack/bits.py): row n of T is padded
// to Kp = ceil(K / 128) * 128 codes u = t + 1 in {0, 1, 2} (padding u = 1, i.e. t = 0) and stored as
// Kp / 4 bytes.  Block b of a row (128 codes) is 32 bytes; byte j of the block holds the codes of
// columns 128 b + j, + 32, + 64, + 96 in bit pairs 0-1, 2-3, 4-5, 6-7.
//
// Scales: scale_rows in {1, N} (per tensor or per output row), scale_cols = ceil(K / group_size)
// groups along K (1 when not grouped).
//
// Every SIMD kernel has a scalar reference here (ref.cpp) with the same results: the integer dot
// products of the fast path are bitwise equal, and the float epilogue performs the same IEEE
// operations in the same order (both files are built with -ffp-contract=off).
#pragma once

#include <cstdint>

namespace tclip {

constexpr int64_t kBlock = 128;  // codes per 32-byte block

inline int64_t padded_k(int64_t k) { return (k + kBlock - 1) / kBlock * kBlock; }

struct TernaryWeights {
    const uint8_t* packed;  // [n, kp / 4]
    int64_t n, k, kp;
    const float* scales;  // [scale_rows, scale_cols]
    int64_t scale_rows, scale_cols, group_size;
    const float* bias;  // [n] or nullptr

    float scale(int64_t row, int64_t group) const { return scales[(scale_rows == 1 ? 0 : row) * scale_cols + group]; }
    int64_t group_begin(int64_t g) const { return g * group_size; }
    int64_t group_end(int64_t g) const { return g + 1 == scale_cols ? k : (g + 1) * group_size; }
};

// Activations quantized per row (token) to int8 by absmax: q = round(x * 127 / absmax), |q| <= 127,
// xscale = absmax / 127.  q is padded with zeros to kp columns; qsum[m * groups + g] = sum of q over
// group g (the correction for unsigned weight codes).  The tile kernels read q in whole tiles of
// tokens (AVX-512: 16, AVX2: 6, NEON: 4 or 8): the buffer holds m rows rounded up to a multiple of
// all of them, the ones past m zero (kTokenPad).
constexpr int64_t kTokenPad = 48;
inline int64_t padded_rows(int64_t m) { return (m + kTokenPad - 1) / kTokenPad * kTokenPad; }

// What a fast GEMM may do in its epilogue beyond y = x W^T + b (gemm_fast_prepared_fused): add the
// result to y (a residual stream) and apply an activation, y = act(x W^T + b) [+ y].
enum class Activation : int { none, gelu, quick_gelu };
struct Fusion {
    bool add = false;
    Activation activation = Activation::none;
};

struct QuantizedRows {
    const int8_t* q;      // [m, kp]
    const float* xscale;  // [m]
    const int32_t* qsum;  // [m, groups]
    int64_t m, kp;
};

namespace ref {
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum);
// out[m, n, g] = sum over k in group g of t[n, k] * q[m, k]
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y);
// x rounded to bfloat16 (8-bit mantissa), as the float32 it stands for (the low 16 bits zero): round to
// nearest even, as vcvtneps2bf16 does, so that the reference and the AMX path see the same activations:
// subnormals become zeros of their sign (|x| < 2^-126, far below any activation), NaNs stay NaN, made
// quiet; a finite value past bf16's largest becomes infinity.
float round_bf16(float x);
void round_bf16(const float* x, int64_t count, float* out);
// Mode "bf16" (W1.58-A16 with bf16 activations): gemm_exact on x rounded to bf16.  Every product t x is
// exact in float32, so any path computes these numbers up to the order of its float32 sums.
void gemm_bf16(const float* x, int64_t m, const TernaryWeights& w, float* y);
}  // namespace ref

}  // namespace tclip
