// AVX2 kernels (x86-64; this file is compiled with -mavx2 -mfma and only called when the CPU has
// both).  Same results as ref.cpp: bitwise equal integer dots and fast-path outputs.
//
// Fast path (W1.58-A8), the same plan as the AVX-512 path: the 8 int32 lanes of a vector are 8
// *output rows*.  A tile of 8 weight rows is unpacked and interleaved as [k / 4][8 rows][4 codes];
// per 4 columns one 32-byte weight load feeds 8 tokens, each a `vpbroadcastd` of the token's 4 int8
// activations and one `maddubs` (u unsigned x q signed) into int16 lanes (two per row), so no
// horizontal reductions and one store per token and tile.
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
#include <vector>

#include "ternary_gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx2 {
namespace {

#include "tile_driver.h"

constexpr int kRows = 8;             // output rows per tile = int32 lanes
constexpr int64_t kSegment = 128;    // columns accumulated in int16 (see the bound above)

// Rows [n0, n0 + 8) interleaved: word j (4 codes) of row r -> out[j * 8 + r].
void pack_tile(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
    unpack_rows(w, n0, kRows, rows);
    const __m256i offsets = _mm256_mullo_epi32(_mm256_set1_epi32(int(w.kp)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t j = 0; j < w.kp / 4; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j * kRows),
                            _mm256_i32gather_epi32(reinterpret_cast<const int*>(rows + j * 4), offsets, 1));
}

// acc[t] += sum over columns [k0, k1) of u[row] * q[t] for the 8 rows of the tile and 8 tokens whose
// int8 rows are kp bytes apart from q0 (k0, k1 multiples of 4).  The step is in assembly: with
// intrinsics GCC spilled accumulators and row pointers inside the loop.
inline void tile_dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m256i* acc) {
    const int64_t kp3 = 3 * kp;
    for (int64_t seg = k0; seg < k1; seg += kSegment) {
        const int64_t end = std::min(k1, seg + kSegment);
        const uint32_t* wp = wbuf + (seg / 4) * kRows;
        const int8_t *p0 = q0 + seg, *p4 = p0 + 4 * kp;
        int64_t k = seg;
        asm volatile(
            "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
            "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
            "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
            "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
            "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
            "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
            "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
            "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
            "mov $0x00010001, %%eax\n\t"
            "vmovd %%eax, %%xmm11\n\t"
            "vpbroadcastd %%xmm11, %%ymm11\n\t"
            "1:\n\t"
            "vmovdqu (%[wp]), %%ymm8\n\t"
            "vpbroadcastd (%[p0]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm0, %%ymm0\n\t"
            "vpbroadcastd (%[p0],%[kp]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm1, %%ymm1\n\t"
            "vpbroadcastd (%[p0],%[kp],2), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm2, %%ymm2\n\t"
            "vpbroadcastd (%[p0],%[kp3]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm3, %%ymm3\n\t"
            "vpbroadcastd (%[p4]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm4, %%ymm4\n\t"
            "vpbroadcastd (%[p4],%[kp]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm5, %%ymm5\n\t"
            "vpbroadcastd (%[p4],%[kp],2), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm6, %%ymm6\n\t"
            "vpbroadcastd (%[p4],%[kp3]), %%ymm9\n\t"
            "vpmaddubsw %%ymm9, %%ymm8, %%ymm10\n\t"
            "vpaddw %%ymm10, %%ymm7, %%ymm7\n\t"
            "add $32, %[wp]\n\t"
            "add $4, %[p0]\n\t"
            "add $4, %[p4]\n\t"
            "add $4, %[k]\n\t"
            "cmp %[end], %[k]\n\t"
            "jl 1b\n\t"
            "vpmaddwd %%ymm11, %%ymm0, %%ymm0\n\t"
            "vpaddd 0(%[acc]), %%ymm0, %%ymm0\n\t"
            "vmovdqu %%ymm0, 0(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm1, %%ymm1\n\t"
            "vpaddd 32(%[acc]), %%ymm1, %%ymm1\n\t"
            "vmovdqu %%ymm1, 32(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm2, %%ymm2\n\t"
            "vpaddd 64(%[acc]), %%ymm2, %%ymm2\n\t"
            "vmovdqu %%ymm2, 64(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm3, %%ymm3\n\t"
            "vpaddd 96(%[acc]), %%ymm3, %%ymm3\n\t"
            "vmovdqu %%ymm3, 96(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm4, %%ymm4\n\t"
            "vpaddd 128(%[acc]), %%ymm4, %%ymm4\n\t"
            "vmovdqu %%ymm4, 128(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm5, %%ymm5\n\t"
            "vpaddd 160(%[acc]), %%ymm5, %%ymm5\n\t"
            "vmovdqu %%ymm5, 160(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm6, %%ymm6\n\t"
            "vpaddd 192(%[acc]), %%ymm6, %%ymm6\n\t"
            "vmovdqu %%ymm6, 192(%[acc])\n\t"
            "vpmaddwd %%ymm11, %%ymm7, %%ymm7\n\t"
            "vpaddd 224(%[acc]), %%ymm7, %%ymm7\n\t"
            "vmovdqu %%ymm7, 224(%[acc])\n\t"
            : [k] "+r"(k), [wp] "+r"(wp), [p0] "+r"(p0), [p4] "+r"(p4)
            : [kp] "r"(kp), [kp3] "r"(kp3), [end] "r"(end), [acc] "r"(acc)
            : "cc", "memory", "eax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11");
    }
}

struct Avx2Tile {
    static constexpr int kRows = 8, kTokens = 8;
    using Acc = __m256i;
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) { pack_tile(w, n0, rows, out); }
    static void dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc) {
        for (int t = 0; t < kTokens; ++t) acc[t] = _mm256_setzero_si256();
        tile_dots(wbuf, q0, kp, k0, k1, acc);
    }
    static Acc minus(Acc a, int32_t v) { return _mm256_sub_epi32(a, _mm256_set1_epi32(v)); }
};

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

}  // namespace

bool compiled() { return true; }

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 4 == 0; }

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

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<Avx2Tile>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    drive<Avx2Tile>(x, w, [&](int64_t i, int real, int64_t n0, int real_rows, int64_t g, const __m256i* acc) {
        alignas(32) float scale[kRows], bias[kRows];
        alignas(32) int32_t lane_mask[kRows];
        for (int r = 0; r < kRows; ++r) {
            scale[r] = r < real_rows ? w.scale(n0 + r, g) : 0.0f;
            bias[r] = r < real_rows && w.bias ? w.bias[n0 + r] : 0.0f;
            lane_mask[r] = r < real_rows ? -1 : 0;
        }
        const __m256 vs = _mm256_load_ps(scale), vb = _mm256_load_ps(bias);
        const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_mask));
        const bool first = g == 0, last = g + 1 == w.scale_cols;
        for (int t = 0; t < real; ++t) {
            float* yr = y + (i + t) * w.n + n0;
            // the running sum over groups lives in y itself: exactly the reference's float sequence
            const __m256 before = first ? _mm256_setzero_ps() : _mm256_maskload_ps(yr, mask);
            __m256 v = _mm256_add_ps(before, _mm256_mul_ps(vs, _mm256_cvtepi32_ps(acc[t])));
            if (last) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(x.xscale[i + t])), vb);
            _mm256_maskstore_ps(yr, mask, v);
        }
    });
}

constexpr int kExactRows = 4;

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
    constexpr int NR = kExactRows;
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
                unpack_rows(w, n0, kExactRows, codes.data());
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
