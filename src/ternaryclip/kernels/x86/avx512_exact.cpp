// Exact mode (W1.58-A16, float activations) on AVX-512; compiled with the AVX-512 F/BW/VL/DQ flags and
// called only when the CPU has them.  Like avx2_exact.cpp, not bitwise equal to ref.cpp (FMA sums in
// another order), tested against it within float rounding.
//
// The register tile of an sgemm, twice AVX2's: the 16 float lanes of a vector are 16 output rows, a
// tile of 32 rows is two vectors, and 12 tokens share them: per column, two weight loads and twelve
// broadcasts feed 24 FMAs into 24 of the 32 zmm registers.  The tile's codes become floats t in
// {-1, 0, 1} a chunk of K at a time (tile_driver.inc's exact_drive), column-major ([c][32 rows], 128 bytes
// a column), through 16 x 16 transposes in registers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/pool.h"
#include "x86/x86.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx512 {
namespace {

#include "core/tile_driver.inc"

constexpr int kRows = 32;    // output rows per tile: two vectors
constexpr int kTokens = 12;  // tokens per register tile
constexpr int64_t kChunk = 256;               // columns of K per chunk: 32 KB of float weights, in L1
constexpr int64_t kBlockBytes = 768 << 10;    // float activation bytes per token block (Zen 4: 1 MB of L2)

// 16 rows x 16 columns of codes u -> floats t = u - 1, transposed: out[j * 32 + r] = t of row r, column j.
inline void float_block_16x16(const uint8_t* codes, int64_t kp, float* out) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i * kp));
        r[i] = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), one);
    }
    for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved by element
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // then by pairs of elements
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // r[4 q + s] holds, in 128-bit lane L, column 4 L + s of rows 4 q..4 q + 3; then a 4 x 4 transpose of
    // lanes per s gathers column 4 L + s of all 16 rows into t[4 L + s]
    for (int s = 0; s < 4; ++s) {
        const __m512 a = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x88), b = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xDD);
        const __m512 c = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x88), d = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xDD);
        t[s] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[4 + s] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[8 + s] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[12 + s] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(out + i * kRows, t[i]);  // t[i] is column i
}

// Columns [c0, c1) of a tile's 32 rows of codes (kp apart) as floats, column-major: out[(c - c0) * 32 + r]
// = t of row r, column c (0 past n and past k).  c0 and c1 are multiples of 16.
void to_floats(const uint8_t* codes, int64_t kp, int64_t c0, int64_t c1, float* out) {
    for (int64_t c = c0; c < c1; c += 16) {
        float_block_16x16(codes + c, kp, out + (c - c0) * kRows);
        float_block_16x16(codes + 16 * kp + c, kp, out + (c - c0) * kRows + 16);
    }
}

// acc[t][h] += sum over columns [c0, c1) of wt[c - c0][16 h + lane] * x[t][c] for T tokens k floats apart.
template <int T>
inline void dots(const float* wt, const float* x, int64_t k, int64_t c0, int64_t c1, __m512 acc[T][2]) {
    const float* wp = wt;
    for (int64_t c = c0; c < c1; ++c, wp += kRows) {
        const __m512 w0 = _mm512_loadu_ps(wp), w1 = _mm512_loadu_ps(wp + 16);
        for (int t = 0; t < T; ++t) {
            const __m512 xv = _mm512_set1_ps(x[t * k + c]);
            acc[t][0] = _mm512_fmadd_ps(w0, xv, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, xv, acc[t][1]);
        }
    }
}

// T tokens from row i through the tile at n0 over the chunk [c0, c1) whose floats are wt (exact_drive):
// the dots go on from the sums y holds (unless c0 = 0) and wait there, or with the last chunk become
// y = sum over groups of s_g * dot_g, + bias (groups come as one chunk, the whole K).
template <int T>
void token_tile(const float* x, int64_t i, const TernaryWeights& w, const float* wt, int64_t n0, float* y, int64_t c0,
                int64_t c1) {
    const int real_rows = int(std::min<int64_t>(kRows, w.n - n0));
    const __mmask16 m0 = __mmask16(real_rows >= 16 ? 0xffff : (1u << real_rows) - 1u);
    const __mmask16 m1 = __mmask16(real_rows >= 32 ? 0xffff : real_rows <= 16 ? 0 : (1u << (real_rows - 16)) - 1u);
    alignas(64) float scale[kRows], bias[kRows];
    __m512 total[T][2], acc[T][2];
    for (int t = 0; t < T; ++t) {
        const float* yr = y + (i + t) * w.n + n0;
        acc[t][0] = c0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, yr);
        acc[t][1] = c0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, yr + 16);
        total[t][0] = total[t][1] = _mm512_setzero_ps();
    }
    for (int64_t g = 0; g < w.scale_cols; ++g) {
        if (w.scale_cols > 1)
            for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
        dots<T>(wt + (std::max(c0, w.group_begin(g)) - c0) * kRows, x + i * w.k, w.k, std::max(c0, w.group_begin(g)),
                std::min(c1, w.group_end(g)), acc);
        if (c1 < w.k) continue;  // a chunk before the last: the sums wait in y
        for (int r = 0; r < kRows; ++r) scale[r] = r < real_rows ? w.scale(n0 + r, g) : 0.0f;
        const __m512 s0 = _mm512_load_ps(scale), s1 = _mm512_load_ps(scale + 16);
        for (int t = 0; t < T; ++t) {
            total[t][0] = _mm512_add_ps(total[t][0], _mm512_mul_ps(s0, acc[t][0]));
            total[t][1] = _mm512_add_ps(total[t][1], _mm512_mul_ps(s1, acc[t][1]));
        }
    }
    if (c1 < w.k) {
        for (int t = 0; t < T; ++t) {
            float* yr = y + (i + t) * w.n + n0;
            _mm512_mask_storeu_ps(yr, m0, acc[t][0]);
            _mm512_mask_storeu_ps(yr + 16, m1, acc[t][1]);
        }
        return;
    }
    for (int r = 0; r < kRows; ++r) bias[r] = r < real_rows && w.bias ? w.bias[n0 + r] : 0.0f;
    const __m512 b0 = _mm512_load_ps(bias), b1 = _mm512_load_ps(bias + 16);
    for (int t = 0; t < T; ++t) {
        float* yr = y + (i + t) * w.n + n0;
        _mm512_mask_storeu_ps(yr, m0, _mm512_add_ps(total[t][0], b0));
        _mm512_mask_storeu_ps(yr + 16, m1, _mm512_add_ps(total[t][1], b1));
    }
}

using TokenTile = void (*)(const float*, int64_t, const TernaryWeights&, const float*, int64_t, float*, int64_t, int64_t);
constexpr TokenTile kTokenTiles[kTokens + 1] = {nullptr,        token_tile<1>, token_tile<2>,  token_tile<3>,
                                                token_tile<4>,  token_tile<5>, token_tile<6>,  token_tile<7>,
                                                token_tile<8>,  token_tile<9>, token_tile<10>, token_tile<11>,
                                                token_tile<12>};

}  // namespace

void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) {
    exact_drive<kRows, kTokens, kChunk, kBlockBytes>(x, m, w, y, to_floats, kTokenTiles);
}

}  // namespace tclip::avx512

#else  // not x86-64

namespace tclip::avx512 {
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) { ref::gemm_exact(x, m, w, y); }
}  // namespace tclip::avx512

#endif
