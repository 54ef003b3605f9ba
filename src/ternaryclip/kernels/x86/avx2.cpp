// AVX2 kernels (x86-64; this file is compiled with -mavx2 -mfma and only called when the CPU has
// both).  Same results as ref.cpp: bitwise equal integer dots and fast-path outputs.
//
// Fast path (W1.58-A8), the same plan as the AVX-512 path: the 8 int32 lanes of a vector are 8
// *output rows*.  A tile of 16 weight rows is unpacked and interleaved as two halves of
// [k / 4][8 rows][4 codes]; per 4 columns two 32-byte weight loads feed 6 tokens, each a
// `vpbroadcastd` of the token's 4 int8 activations and two `maddubs` (u unsigned x q signed) into
// int16 lanes (two per row), so no horizontal reductions and two stores per token and tile.  The
// layout, tiles, epilogue and drivers are avx2_fast.inc's (shared with avxvnni.cpp, whose dots are one
// vpdpbusd); this file has the maddubs dots, the quantization and the load-time preparation.
//
// int16 bound: one maddubs lane is u_a q_a + u_b q_b with u <= 2 and |q| <= 128, so |lane| <= 512.
// A segment is at most 32 steps (128 columns), so |int16 accumulator| <= 32 * 512 = 16384 < 32767:
// no overflow, and maddubs never saturates.  After each segment the two int16 lanes of a row are
// widened and added with `madd(acc, 1)` into int32.  The weights are unsigned codes, so
// sum(u q) = sum(t q) + sum(q): the per-group sum of q is subtracted at the end (the activation
// padding is zero, so padded columns with u = 1 add nothing).
//
// int32 bound: |row sum| <= 2 * 128 * K after K columns, below 2^31 for K <= 2^23 = 8,388,608 (the
// bindings refuse a larger K).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/pool.h"
#include "x86/x86.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx2 {
namespace {

#include "core/tile_driver.inc"
#include "x86/avx2_fast.inc"

constexpr int64_t kSegment = 128;  // columns accumulated in int16 (see the bound above)

// One 4-column step of the 16 x 6 tile kernel at byte offset OFF: the weight words of rows 0-7 are
// in ymm12 and of rows 8-15 in ymm13; each token's 4 activations are broadcast once and feed both.
#define TCLIP_TOKEN(ADDR, LO, HI)              \
    "vpbroadcastd " ADDR                       \
    ", %%ymm14\n\t"                            \
    "vpmaddubsw %%ymm14, %%ymm12, %%ymm15\n\t" \
    "vpaddw %%ymm15, %%ymm" #LO ", %%ymm" #LO  \
    "\n\t"                                     \
    "vpmaddubsw %%ymm14, %%ymm13, %%ymm15\n\t" \
    "vpaddw %%ymm15, %%ymm" #HI ", %%ymm" #HI "\n\t"
#define TCLIP_STEP(WOFF, OFF)                                                                                      \
    "vmovdqu " WOFF                                                                                                \
    "(%[wa]), %%ymm12\n\t"                                                                                         \
    "vmovdqu " WOFF "(%[wb]), %%ymm13\n\t" TCLIP_TOKEN(OFF "(%[p0])", 0, 1) TCLIP_TOKEN(OFF "(%[p0],%[kp])", 2, 3) \
        TCLIP_TOKEN(OFF "(%[p0],%[kp],2)", 4, 5) TCLIP_TOKEN(OFF "(%[p0],%[kp3])", 6, 7)                           \
            TCLIP_TOKEN(OFF "(%[p4])", 8, 9) TCLIP_TOKEN(OFF "(%[p4],%[kp])", 10, 11)
#define TCLIP_FLUSH(R, OFF)                          \
    "vpmaddwd %%ymm12, %%ymm" #R ", %%ymm" #R        \
    "\n\t"                                           \
    "vpaddd " #OFF "(%[acc]), %%ymm" #R ", %%ymm" #R \
    "\n\t"                                           \
    "vmovdqu %%ymm" #R ", " #OFF "(%[acc])\n\t"

// acc[2 t] (rows 0-7) and acc[2 t + 1] (rows 8-15) += sum over columns [k0, k1) of u[row] * q[t] for
// 6 tokens whose int8 rows are kp bytes apart from q0 (k0, k1 multiples of 4); wa, wb: the
// interleaved words of the two 8-row halves.  Why this shape: on AVX2 without VNNI each 32 products
// cost a maddubs and an add on the vector ALUs, and the core also has to issue every broadcast and
// pointer update.  Two weight vectors per broadcast and four steps per loop turn (12 accumulators, all
// 16 registers in use) keep the issue width below the ALU bound: 1.3-1.6x the 8 x 8 tile with one
// step a turn on Zen 3, which was limited by issue, not by the ALUs.  In assembly: with intrinsics
// GCC spilled accumulators and row pointers inside the loop.
inline void tile_dots(const uint32_t* wa, const uint32_t* wb, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1,
                      __m256i* acc) {
    const int64_t kp3 = 3 * kp;
    for (int64_t seg = k0; seg < k1; seg += kSegment) {
        const int64_t end = std::min(k1, seg + kSegment);
        const uint32_t *pa = wa + (seg / 4) * kRows, *pb = wb + (seg / 4) * kRows;
        const int8_t *p0 = q0 + seg, *p4 = p0 + 4 * kp;
        const int8_t *whole = p0 + (end - seg) / 16 * 16, *stop = p0 + (end - seg);
        asm volatile(
            "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
            "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
            "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
            "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
            "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
            "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
            "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
            "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
            "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
            "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
            "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
            "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
            "cmp %[whole], %[p0]\n\t"
            "jae 2f\n\t"
            "1:\n\t"  // four steps (16 columns) a turn
            TCLIP_STEP("", "") TCLIP_STEP("32", "4") TCLIP_STEP("64", "8") TCLIP_STEP("96", "12")
            "add $128, %[wa]\n\t"
            "add $128, %[wb]\n\t"
            "add $16, %[p0]\n\t"
            "add $16, %[p4]\n\t"
            "cmp %[whole], %[p0]\n\t"
            "jb 1b\n\t"
            "2:\n\t"  // the last columns, one step a turn
            "cmp %[stop], %[p0]\n\t"
            "jae 3f\n\t"
            TCLIP_STEP("", "")
            "add $32, %[wa]\n\t"
            "add $32, %[wb]\n\t"
            "add $4, %[p0]\n\t"
            "add $4, %[p4]\n\t"
            "jmp 2b\n\t"
            "3:\n\t"  // widen the int16 pairs into the int32 sums
            "mov $0x00010001, %%eax\n\t"
            "vmovd %%eax, %%xmm12\n\t"
            "vpbroadcastd %%xmm12, %%ymm12\n\t"
            TCLIP_FLUSH(0, 0) TCLIP_FLUSH(1, 32) TCLIP_FLUSH(2, 64) TCLIP_FLUSH(3, 96)
            TCLIP_FLUSH(4, 128) TCLIP_FLUSH(5, 160) TCLIP_FLUSH(6, 192) TCLIP_FLUSH(7, 224)
            TCLIP_FLUSH(8, 256) TCLIP_FLUSH(9, 288) TCLIP_FLUSH(10, 320) TCLIP_FLUSH(11, 352)
            : [wa] "+r"(pa), [wb] "+r"(pb), [p0] "+r"(p0), [p4] "+r"(p4)
            : [kp] "r"(kp), [kp3] "r"(kp3), [whole] "r"(whole), [stop] "r"(stop), [acc] "r"(acc)
            : "cc", "memory", "eax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    }
}
#undef TCLIP_TOKEN
#undef TCLIP_STEP
#undef TCLIP_FLUSH

// Small-M kernel: acc[r * T + t] = dots of prepared tile r (of Tiles consecutive ones: 8 rows
// each) with T <= 8 tokens over columns [k0, k1) (multiples of 4), read straight from the prepared bytes: per
// 16 columns and tile one load and four shift-and-masks, then per token and step one broadcast (shared by the
// tiles) and one maddubs a tile.  The int16 accumulation runs over 128-column segments (the bound above), so
// the integer dots equal the reference bit for bit.
template <int T, int Tiles>
void prepared_dots(const uint8_t* tile, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m256i* acc) {
    const __m256i mask = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    const int64_t tile_bytes = 2 * kp;  // 8 rows of kp / 4 bytes
    for (int i = 0; i < Tiles * T; ++i) acc[i] = _mm256_setzero_si256();
    for (int64_t seg = k0; seg < k1; seg += kSegment) {
        const int64_t end = std::min(k1, seg + kSegment);
        __m256i a16[Tiles * T];
        for (int i = 0; i < Tiles * T; ++i) a16[i] = _mm256_setzero_si256();
        const auto step = [&](const __m256i* wv, int64_t c) {
            for (int t = 0; t < T; ++t) {
                int32_t four;
                std::memcpy(&four, q0 + t * kp + c, 4);
                const __m256i q = _mm256_set1_epi32(four);
                for (int r = 0; r < Tiles; ++r)
                    a16[r * T + t] = _mm256_add_epi16(a16[r * T + t], _mm256_maddubs_epi16(wv[r], q));
            }
        };
        const auto chunk = [&](int r, int64_t c) {
            return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + r * tile_bytes + (c / 16) * 32));
        };
        const auto single = [&](int64_t c) {  // one 4-column step outside a whole chunk
            const __m128i shift = _mm_cvtsi32_si128(int(2 * ((c / 4) % 4)));
            __m256i wv[Tiles];
            for (int r = 0; r < Tiles; ++r) wv[r] = _mm256_and_si256(_mm256_srl_epi16(chunk(r, c), shift), mask);
            step(wv, c);
        };
        int64_t c = seg;
        for (; c < end && c % 16 != 0; c += 4) single(c);
        const int64_t whole = c + (end - c) / 16 * 16;
        for (const uint8_t* wp = tile + (c / 16) * 32; c < whole; c += 16, wp += 32) {
            __m256i v[Tiles], wv[Tiles];
            for (int r = 0; r < Tiles; ++r)
                v[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + r * tile_bytes));
            for (int s = 0; s < 4; ++s) {
                for (int r = 0; r < Tiles; ++r) wv[r] = _mm256_and_si256(_mm256_srli_epi16(v[r], 2 * s), mask);
                step(wv, c + 4 * s);
            }
        }
        for (; c < end; c += 4) single(c);
        for (int i = 0; i < Tiles * T; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a16[i], ones));
    }
}

// The vpmaddubsw + vpmaddwd dots for avx2_fast.inc.
struct MaddubsDots {
    static void tile(const uint32_t* wa, const uint32_t* wb, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1,
                     __m256i* acc) {
        for (int i = 0; i < 2 * kTileTokens; ++i) acc[i] = _mm256_setzero_si256();
        tile_dots(wa, wb, q0, kp, k0, k1, acc);
    }
    template <int T, int Tiles>
    static void prepared(const uint8_t* tile, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m256i* acc) {
        prepared_dots<T, Tiles>(tile, q0, kp, k0, k1, acc);
    }
};

}  // namespace

bool compiled() { return true; }

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 4 == 0; }

void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    parallel_for(m, m * k >= kParallelMinElements, [&](int64_t i) {
        const float* xr = x + i * k;
        int8_t* qr = q + i * kp;
        // four partial maxima, as avx512.cpp's (one vmaxps chain waits on its latency; same maximum)
        __m256 part[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        int64_t j = 0;
        for (; j + 32 <= k; j += 32)
            for (int u = 0; u < 4; ++u)
                part[u] = _mm256_max_ps(part[u], _mm256_and_ps(_mm256_loadu_ps(xr + j + 8 * u), abs_mask));
        __m256 vmax = _mm256_max_ps(_mm256_max_ps(part[0], part[1]), _mm256_max_ps(part[2], part[3]));
        for (; j + 8 <= k; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(xr + j), abs_mask));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 0x55));
        float absmax = _mm_cvtss_f32(m4);
        for (; j < k; ++j) absmax = std::max(absmax, std::fabs(xr[j]));
        const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
        xscale[i] = absmax / 127.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
        j = 0;
        for (; j + 32 <= k; j += 32) {
            __m256i v[4];
            for (int s = 0; s < 4; ++s) {
                __m256 f = _mm256_mul_ps(_mm256_loadu_ps(xr + j + 8 * s), vinv);
                f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v[s] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(f, lo)));  // NaN -> -127 (ref.cpp)
            }
            const __m256i w16a = _mm256_packs_epi32(v[0], v[1]), w16b = _mm256_packs_epi32(v[2], v[3]);
            const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), order);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + j), b8);
        }
        finish_quantized_row(xr, inv, j, k, kp, groups, group_size, qr, qsum + i * groups);
    });
}

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) {
    int_dots_file_layout<MaddubsDots>(x, w, out);
}

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { fast_file_layout<MaddubsDots>(x, w, y); }

int64_t prepared_bytes(const TernaryWeights& w) { return (w.n + kRows - 1) / kRows * kRows * (w.kp / 4); }

void prepare(const TernaryWeights& w, uint8_t* out) {
    const int64_t tiles = (w.n + kRows - 1) / kRows;
    Items items(tiles);
    run_parallel(true, [&] {
        std::vector<uint8_t> rows(size_t(kRows * w.kp));
        auto mine = items.join();
        for (int64_t tile; mine.next(tile);) {
            unpack_rows(w, tile * kRows, kRows, rows.data());  // rows past n: u = 1 (t = 0)
            uint8_t* dst = out + tile * kRows * (w.kp / 4);
            for (int64_t j = 0; j < w.kp / 16; ++j)
                for (int r = 0; r < kRows; ++r)
                    for (int c = 0; c < 4; ++c) {
                        const uint8_t* u = rows.data() + r * w.kp + 16 * j + c;
                        dst[j * 32 + 4 * r + c] = uint8_t(u[0] | (u[4] << 2) | (u[8] << 4) | (u[12] << 6));
                    }
        }
    });
}

void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y) {
    fast_prepared<MaddubsDots>(x, w, prepared, y);
}

}  // namespace tclip::avx2

#else  // not x86-64: no AVX2 path; the dispatcher never calls these.

namespace tclip::avx2 {
bool compiled() { return false; }
bool supports(const TernaryWeights&) { return false; }
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t gs, int64_t groups, int8_t* q, float* xs,
                   int32_t* qsum) {
    ref::quantize_rows(x, m, k, kp, gs, groups, q, xs, qsum);
}
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { ref::int_dot(x, w, out); }
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) { ref::gemm_exact(x, m, w, y); }
int64_t prepared_bytes(const TernaryWeights&) { return 0; }
void prepare(const TernaryWeights&, uint8_t*) {}
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t*, float* y) {
    ref::gemm_fast(x, w, y);
}
}  // namespace tclip::avx2

#endif
