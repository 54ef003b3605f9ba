// Exact mode (W1.58-A16, float activations) on AVX2 + FMA; compiled with -mavx2 -mfma and called
// only when the CPU has both.  Not bitwise equal to ref.cpp (the FMA sums run in another order);
// tested against it within float rounding.
//
// The register tile of an sgemm (x86/exact_tile.inc, one body for both widths): the 8 float lanes of a
// vector are 8 output rows, a tile of 16 rows is two vectors, and 6 tokens share them: per column, two
// weight loads and six broadcasts feed 12 FMAs into 12 accumulators (15 of the 16 ymm registers).  The
// tile's codes are turned into floats t in {-1, 0, 1} a chunk of K at a time (tile_driver.inc's
// exact_drive), column-major ([c][16 rows], 64 bytes a column), so the weight loads come from L1 and the
// float weights never exist for the whole matrix.
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

namespace tclip::avx2 {
namespace {

#include "core/simd.inc"
#include "core/tile_driver.inc"
#include "x86/exact_tile.inc"

constexpr int kRows = 16;                   // output rows per tile: two vectors
constexpr int kTokens = 6;                  // tokens per register tile
constexpr int64_t kChunk = 256;             // columns of K per chunk: 16 KB of float weights, in L1
constexpr int64_t kBlockBytes = 512 << 10;  // float activation bytes per token block (~ Zen 3's L2)

// 8 rows x 8 columns of codes u -> floats t = u - 1, transposed: out[j * 16 + r] = t of row r, column j.
inline void float_block_8x8(const uint8_t* codes, int64_t kp, float* out) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; ++i) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i * kp));
        r[i] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), one));
    }
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        _mm256_storeu_ps(out + j * kRows, _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
        _mm256_storeu_ps(out + (j + 4) * kRows, _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
    }
}

// Columns [c0, c1) of a tile's 16 rows of codes (kp apart) as floats, column-major: out[(c - c0) * 16 + r]
// = t of row r, column c (0 past n and past k).  c0 and c1 are multiples of 8.
void to_floats(const uint8_t* codes, int64_t kp, int64_t c0, int64_t c1, float* out) {
    for (int64_t c = c0; c < c1; c += 8) {
        float_block_8x8(codes + c, kp, out + (c - c0) * kRows);
        float_block_8x8(codes + 8 * kp + c, kp, out + (c - c0) * kRows + 8);
    }
}

// exact_dots (exact_tile.inc) for a whole tile of six tokens, the sums in and out through `sums` ([6][2][8] floats,
// 32-byte aligned).  In assembly because GCC, with the sums carried in and out of the loop, stored all 12 accumulators
// to the stack on every column (12 + two weight vectors + a broadcast fill the 16 ymm registers).  The same FMAs in the
// same order: w * x + acc, column after column.
inline void dots6(const float* wt, const float* x, int64_t k, int64_t c0, int64_t c1, float* sums) {
    const float* p0 = x + c0;
    const float* p3 = p0 + 3 * k;
    const int64_t stride = k * int64_t(sizeof(float));
    int64_t columns = c1 - c0;
    if (columns <= 0) return;
    asm volatile(
        "vmovaps 0(%[s]), %%ymm4\n\t"
        "vmovaps 32(%[s]), %%ymm5\n\t"
        "vmovaps 64(%[s]), %%ymm6\n\t"
        "vmovaps 96(%[s]), %%ymm7\n\t"
        "vmovaps 128(%[s]), %%ymm8\n\t"
        "vmovaps 160(%[s]), %%ymm9\n\t"
        "vmovaps 192(%[s]), %%ymm10\n\t"
        "vmovaps 224(%[s]), %%ymm11\n\t"
        "vmovaps 256(%[s]), %%ymm12\n\t"
        "vmovaps 288(%[s]), %%ymm13\n\t"
        "vmovaps 320(%[s]), %%ymm14\n\t"
        "vmovaps 352(%[s]), %%ymm15\n\t"
        "1:\n\t"
        "vmovups (%[wp]), %%ymm0\n\t"
        "vmovups 32(%[wp]), %%ymm1\n\t"
        "vbroadcastss (%[p0]), %%ymm2\n\t"
        "vfmadd231ps %%ymm2, %%ymm0, %%ymm4\n\t"
        "vfmadd231ps %%ymm2, %%ymm1, %%ymm5\n\t"
        "vbroadcastss (%[p0],%[ks]), %%ymm3\n\t"
        "vfmadd231ps %%ymm3, %%ymm0, %%ymm6\n\t"
        "vfmadd231ps %%ymm3, %%ymm1, %%ymm7\n\t"
        "vbroadcastss (%[p0],%[ks],2), %%ymm2\n\t"
        "vfmadd231ps %%ymm2, %%ymm0, %%ymm8\n\t"
        "vfmadd231ps %%ymm2, %%ymm1, %%ymm9\n\t"
        "vbroadcastss (%[p3]), %%ymm3\n\t"
        "vfmadd231ps %%ymm3, %%ymm0, %%ymm10\n\t"
        "vfmadd231ps %%ymm3, %%ymm1, %%ymm11\n\t"
        "vbroadcastss (%[p3],%[ks]), %%ymm2\n\t"
        "vfmadd231ps %%ymm2, %%ymm0, %%ymm12\n\t"
        "vfmadd231ps %%ymm2, %%ymm1, %%ymm13\n\t"
        "vbroadcastss (%[p3],%[ks],2), %%ymm3\n\t"
        "vfmadd231ps %%ymm3, %%ymm0, %%ymm14\n\t"
        "vfmadd231ps %%ymm3, %%ymm1, %%ymm15\n\t"
        "add $64, %[wp]\n\t"
        "add $4, %[p0]\n\t"
        "add $4, %[p3]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vmovaps %%ymm4, 0(%[s])\n\t"
        "vmovaps %%ymm5, 32(%[s])\n\t"
        "vmovaps %%ymm6, 64(%[s])\n\t"
        "vmovaps %%ymm7, 96(%[s])\n\t"
        "vmovaps %%ymm8, 128(%[s])\n\t"
        "vmovaps %%ymm9, 160(%[s])\n\t"
        "vmovaps %%ymm10, 192(%[s])\n\t"
        "vmovaps %%ymm11, 224(%[s])\n\t"
        "vmovaps %%ymm12, 256(%[s])\n\t"
        "vmovaps %%ymm13, 288(%[s])\n\t"
        "vmovaps %%ymm14, 320(%[s])\n\t"
        "vmovaps %%ymm15, 352(%[s])\n\t"
        : [wp] "+r"(wt), [p0] "+r"(p0), [p3] "+r"(p3), [n] "+r"(columns)
        : [ks] "r"(stride), [s] "r"(sums)
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
          "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

// exact_dots, but whole tiles of six tokens through dots6: the same FMAs in the same order.
struct Avx2Dots {
    template <int T>
    static void run(const float* wt, const float* x, int64_t k, int64_t c0, int64_t c1, __m256 acc[T][2]) {
        if constexpr (T == kTokens) {
            alignas(32) float sums[T][2][8];
            for (int t = 0; t < T; ++t) {
                F32x8::store_aligned(sums[t][0], acc[t][0]);
                F32x8::store_aligned(sums[t][1], acc[t][1]);
            }
            dots6(wt, x, k, c0, c1, &sums[0][0][0]);
            for (int t = 0; t < T; ++t) {
                acc[t][0] = F32x8::load_aligned(sums[t][0]);
                acc[t][1] = F32x8::load_aligned(sums[t][1]);
            }
        } else {
            exact_dots<F32x8, T>(wt, x, k, c0, c1, acc);
        }
    }
};

constexpr auto kTokenTiles = exact_token_tiles<F32x8, Avx2Dots>(std::make_integer_sequence<int, kTokens>{});

}  // namespace

void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) {
    exact_drive<kRows, kTokens, kChunk, kBlockBytes>(x, m, w, y, to_floats, kTokenTiles);
}

}  // namespace tclip::avx2

#endif
