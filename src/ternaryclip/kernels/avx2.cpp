// AVX2 kernels (x86-64; this file is compiled with -mavx2 -mfma and only called when the CPU has
// both).  Same results as ref.cpp: bitwise equal integer dots and fast-path outputs.
//
// Fast path (W1.58-A8).  A tile of 4 weight rows is unpacked once into a small uint8 buffer of codes
// u = t + 1 in {0, 1, 2} and reused for every token (reusing unpacked rows across tokens measured
// ~10% faster than unpacking in registers per token).  Two tokens at a time, 32 columns per step:
// 2 activation loads + 4 weight loads feed 8 `maddubs` (u unsigned x q signed), accumulated in int16.
//
// int16 bound: one maddubs lane is u_a q_a + u_b q_b with u <= 2 and |q| <= 128, so |lane| <= 512.
// A segment is at most 32 steps (1024 columns), so |int16 accumulator| <= 32 * 512 = 16384 < 32767:
// no overflow, and maddubs never saturates.  After each segment the int16 lanes are widened to int32
// with `madd(acc, 1)`.  The weights are unsigned codes, so sum(u q) = sum(t q) + sum(q): the
// per-group sum of q is subtracted at the end (the activation padding is zero, so padded columns
// with u = 1 add nothing).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ternary_gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx2 {
namespace {

#include "gemm_driver.h"


constexpr int64_t kSegment = 1024;    // columns accumulated in int16 before widening (see bound above)

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

// One segment (<= kSegment columns, multiples of 32) of the 4 rows x 2 tokens tile: int16 sums, then
// widened and added to acc[8] (order r0t0, r0t1, r1t0, r1t1, ...).  Kept out of line so that the
// eight int32 totals live in memory: with them in registers as well (8 + 8 accumulators) the
// compiler spilled inside the hot loop.
__attribute__((noinline)) void segment_4x2(const uint8_t* buf, int64_t kp, const int8_t* q0, const int8_t* q1,
                                           int64_t c0, int64_t c1, __m256i* acc) {
    const uint8_t *b0 = buf, *b1 = buf + kp, *b2 = buf + 2 * kp, *b3 = buf + 3 * kp;
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    if (c0 < c1) {
        // The step written in assembly: GCC kept spilling an accumulator and reloading weights here.
        // Per 32 columns: 2 activation loads, 4 weight loads, 8 maddubs (w unsigned, x signed), 8 adds.
        int64_t c = c0;
        __m256i x0, x1, w, t;
        asm volatile(
            "1:\n\t"
            "vmovdqu (%[q0],%[c]), %[x0]\n\t"
            "vmovdqu (%[q1],%[c]), %[x1]\n\t"
            "vmovdqu (%[b0],%[c]), %[w]\n\t"
            "vpmaddubsw %[x0], %[w], %[t]\n\t"
            "vpaddw %[t], %[a00], %[a00]\n\t"
            "vpmaddubsw %[x1], %[w], %[t]\n\t"
            "vpaddw %[t], %[a01], %[a01]\n\t"
            "vmovdqu (%[b1],%[c]), %[w]\n\t"
            "vpmaddubsw %[x0], %[w], %[t]\n\t"
            "vpaddw %[t], %[a10], %[a10]\n\t"
            "vpmaddubsw %[x1], %[w], %[t]\n\t"
            "vpaddw %[t], %[a11], %[a11]\n\t"
            "vmovdqu (%[b2],%[c]), %[w]\n\t"
            "vpmaddubsw %[x0], %[w], %[t]\n\t"
            "vpaddw %[t], %[a20], %[a20]\n\t"
            "vpmaddubsw %[x1], %[w], %[t]\n\t"
            "vpaddw %[t], %[a21], %[a21]\n\t"
            "vmovdqu (%[b3],%[c]), %[w]\n\t"
            "vpmaddubsw %[x0], %[w], %[t]\n\t"
            "vpaddw %[t], %[a30], %[a30]\n\t"
            "vpmaddubsw %[x1], %[w], %[t]\n\t"
            "vpaddw %[t], %[a31], %[a31]\n\t"
            "add $32, %[c]\n\t"
            "cmp %[end], %[c]\n\t"
            "jl 1b\n\t"
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20),
              [a21] "+x"(a21), [a30] "+x"(a30), [a31] "+x"(a31), [c] "+r"(c), [x0] "=&x"(x0), [x1] "=&x"(x1),
              [w] "=&x"(w), [t] "=&x"(t)
            : [q0] "r"(q0), [q1] "r"(q1), [b0] "r"(b0), [b1] "r"(b1), [b2] "r"(b2), [b3] "r"(b3), [end] "r"(c1)
            : "cc", "memory");
    }
    const __m256i ones = _mm256_set1_epi16(1);
    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(a00, ones));
    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(a01, ones));
    acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(a10, ones));
    acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(a11, ones));
    acc[4] = _mm256_add_epi32(acc[4], _mm256_madd_epi16(a20, ones));
    acc[5] = _mm256_add_epi32(acc[5], _mm256_madd_epi16(a21, ones));
    acc[6] = _mm256_add_epi32(acc[6], _mm256_madd_epi16(a30, ones));
    acc[7] = _mm256_add_epi32(acc[7], _mm256_madd_epi16(a31, ones));
}

struct MaddubsDots {
    static constexpr int64_t kStep = 32;
    static constexpr int kTokens = 2;
    // Segments of <= kSegment columns, each widened into int32 totals (see the bound above).
    static void dots(const uint8_t* buf, int64_t kp, const int8_t* const* q, int64_t c0, int64_t c1, __m256i* out) {
        alignas(32) __m256i acc[8];
        for (auto& a : acc) a = _mm256_setzero_si256();
        for (int64_t seg = c0; seg < c1; seg += kSegment)
            segment_4x2(buf, kp, q[0], q[1], seg, seg + kSegment < c1 ? seg + kSegment : c1, acc);
        out[0] = reduce8(acc);
    }
};

}  // namespace

bool compiled() { return true; }

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 32 == 0; }

void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups,
                   int8_t* q, float* xscale, int32_t* qsum) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
        const float* xr = x + i * k;
        int8_t* qr = q + i * kp;
        __m256 vmax = _mm256_setzero_ps();
        int64_t j = 0;
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
                v[s] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, f)));
            }
            const __m256i w16a = _mm256_packs_epi32(v[0], v[1]), w16b = _mm256_packs_epi32(v[2], v[3]);
            const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), order);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + j), b8);
        }
        for (; j < k; ++j) {
            const float v = std::nearbyint(xr[j] * inv);
            qr[j] = int8_t(std::min(127.0f, std::max(-127.0f, v)));
        }
        std::memset(qr + k, 0, size_t(kp - k));
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t end = g + 1 == groups ? k : (g + 1) * group_size;
            int32_t s = 0;
            for (int64_t c = g * group_size; c < end; ++c) s += qr[c];
            qsum[i * groups + g] = s;
        }
    }
}

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<MaddubsDots>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { gemm_fast_driver<MaddubsDots>(x, w, y); }

// Exact mode (float activations): the 4 tile rows as floats t in {-1, 0, 1}, then per group a
// 4 rows x 2 tokens FMA micro-kernel (2 activation + 4 weight loads per 8 FMAs), tokens in blocks
// whose float rows fit in L2 like the fast path.
namespace {

inline void exact_group_4x2(const float* tvals, int64_t kp, const float* x0, const float* x1, int64_t c0,
                            int64_t c1, float out[4][2]) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const float *t0 = tvals, *t1 = tvals + kp, *t2 = tvals + 2 * kp, *t3 = tvals + 3 * kp;
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
        const __m256 v0 = _mm256_loadu_ps(x0 + c), v1 = _mm256_loadu_ps(x1 + c);
        __m256 w = _mm256_loadu_ps(t0 + c);
        a00 = _mm256_fmadd_ps(w, v0, a00); a01 = _mm256_fmadd_ps(w, v1, a01);
        w = _mm256_loadu_ps(t1 + c);
        a10 = _mm256_fmadd_ps(w, v0, a10); a11 = _mm256_fmadd_ps(w, v1, a11);
        w = _mm256_loadu_ps(t2 + c);
        a20 = _mm256_fmadd_ps(w, v0, a20); a21 = _mm256_fmadd_ps(w, v1, a21);
        w = _mm256_loadu_ps(t3 + c);
        a30 = _mm256_fmadd_ps(w, v0, a30); a31 = _mm256_fmadd_ps(w, v1, a31);
    }
    const __m256 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    for (int r = 0; r < 4; ++r)
        for (int t = 0; t < 2; ++t) {
            const float* xr = t == 0 ? x0 : x1;
            float dot = hsum_ps(acc[r][t]);
            for (int64_t cc = c; cc < c1; ++cc) dot += tvals[r * kp + cc] * xr[cc];
            out[r][t] = dot;
        }
}

}  // namespace

void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) {
    const int64_t tiles = (w.n + NR - 1) / NR;
    const int64_t block = std::max<int64_t>(2, kTokenBlockBytes / (4 * std::max<int64_t>(w.k, 1)) / 2 * 2);
#pragma omp parallel
    {
        std::vector<uint8_t> codes(size_t(NR * w.kp));
        std::vector<float> tvals(size_t(NR * w.kp));
        for (int64_t m0 = 0; m0 < m; m0 += block) {
            const int64_t m1 = std::min(m, m0 + block);
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < tiles; ++tile) {
                const int64_t n0 = tile * NR;
                unpack_tile(w, n0, codes.data());
                for (int64_t c = 0; c < NR * w.kp; ++c) tvals[size_t(c)] = float(int(codes[size_t(c)]) - 1);
                for (int64_t i = m0; i < m1; i += 2) {
                    const int64_t i1 = std::min(i + 1, m1 - 1);
                    float total[4][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
                    for (int64_t g = 0; g < w.scale_cols; ++g) {
                        float dots[4][2];
                        exact_group_4x2(tvals.data(), w.kp, x + i * w.k, x + i1 * w.k, w.group_begin(g),
                                        w.group_end(g), dots);
                        for (int r = 0; r < NR && n0 + r < w.n; ++r)
                            for (int t = 0; t < 2; ++t) total[r][t] += w.scale(n0 + r, g) * dots[r][t];
                    }
                    for (int r = 0; r < NR && n0 + r < w.n; ++r) {
                        const float b = w.bias ? w.bias[n0 + r] : 0.0f;
                        y[i * w.n + n0 + r] = total[r][0] + b;
                        y[i1 * w.n + n0 + r] = total[r][1] + b;
                    }
                }
            }
        }
    }
}

}  // namespace tclip::avx2

#else  // not x86-64: no AVX2 path; the dispatcher never calls these.

namespace tclip::avx2 {
bool compiled() { return false; }
bool supports(const TernaryWeights&) { return false; }
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t gs, int64_t groups, int8_t* q,
                   float* xs, int32_t* qsum) { ref::quantize_rows(x, m, k, kp, gs, groups, q, xs, qsum); }
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { ref::int_dot(x, w, out); }
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) { ref::gemm_exact(x, m, w, y); }
}  // namespace tclip::avx2

#endif
