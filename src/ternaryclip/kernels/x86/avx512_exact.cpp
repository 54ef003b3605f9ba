// Exact mode (W1.58-A16, float activations) on AVX-512; compiled with the AVX-512 F/BW/VL/DQ flags and
// called only when the CPU has them.  Like avx2_exact.cpp, not bitwise equal to ref.cpp (FMA sums in
// another order), tested against it within float rounding.
//
// The register tile of an sgemm (x86/exact_tile.inc: the body avx2_exact.cpp runs at half the width),
// twice AVX2's: the 16 float lanes of a vector are 16 output rows, a tile of 32 rows is two vectors, and
// 12 tokens share them: per column, two weight loads and twelve broadcasts feed 24 FMAs into 24 of the 32
// zmm registers.  The tile's codes become floats t in
// {-1, 0, 1} a chunk of K at a time (tile_driver.inc's exact_drive), column-major ([c][32 rows], 128 bytes
// a column), through 16 x 16 transposes in registers.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/pool.h"
#include "x86/x86.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx512 {
namespace {

#include "core/simd.inc"
#include "core/tile_driver.inc"
#include "x86/exact_tile.inc"

constexpr int kRows = 32;                   // output rows per tile: two vectors
constexpr int kTokens = 12;                 // tokens per register tile
constexpr int64_t kChunk = 256;             // columns of K per chunk: 32 KB of float weights, in L1
constexpr int64_t kBlockBytes = 768 << 10;  // float activation bytes per token block (Zen 4: 1 MB of L2)

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
        const __m512 c = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x88),
                     d = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xDD);
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

constexpr auto kTokenTiles = exact_token_tiles<F32x16, ExactDots<F32x16>>(std::make_integer_sequence<int, kTokens>{});

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
