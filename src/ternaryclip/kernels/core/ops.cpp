// Float operations of the transformer around the ternary GEMMs: LayerNorm, GELU / QuickGELU,
// multi-head attention.  Plain loops written so that the compiler vectorizes them, and explicit AVX2 /
// AVX-512 / NEON vectors (core/simd.inc's vocabulary) for LayerNorm, the softmax's reductions and the two
// attention products.  This file is compiled once per instruction set (see CMakeLists.txt): generic into
// tclip::ops_generic (the reference, any CPU), with AVX2 + FMA into tclip::ops_avx2 and with AVX-512 into
// tclip::ops_avx512 (on aarch64: NEON into tclip::ops_neon, with TCLIP_OPS_NEON); the dispatcher picks one at
// run time.  Over 350 lines on purpose: one source for every width is what keeps their bits equal.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "core/pool.h"
#include "core/parallel.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
#include "x86/activation_avx512.h"
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#ifndef TCLIP_OPS_NS
#error "compile with -DTCLIP_OPS_NS=ops_generic, ops_avx2 or ops_avx512"
#endif

namespace tclip::TCLIP_OPS_NS {

// exp(x) for float: Cody-Waite range reduction x = n ln2 + r and a degree-6 polynomial (Cephes expf),
// relative error ~1e-7; branch-free so that loops calling it vectorize (libm's expf does not).
static inline float exp_approx(float x) {
    x = std::min(88.3762626647949f, std::max(-87.3365447504019f, x));
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = (int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// erf(x) as x P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float beyond), max abs error ~1e-7.
static inline float erf_approx(float x) {
    x = std::min(4.0f, std::max(-4.0f, x));
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

// Sum and maximum with eight independent partial results, so that the loops vectorize without
// letting the compiler reassociate floating point everywhere.
static inline float sum8(const float* x, int64_t n) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) part[l] += x[j + l];
    float total = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; j < n; ++j) total += x[j];
    return total;
}

static inline float max8(const float* x, int64_t n) {
    const float lowest = -std::numeric_limits<float>::infinity();
    float part[8] = {lowest, lowest, lowest, lowest, lowest, lowest, lowest, lowest};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) part[l] = std::max(part[l], x[j + l]);
    float best = lowest;
    for (int l = 0; l < 8; ++l) best = std::max(best, part[l]);
    for (; j < n; ++j) best = std::max(best, x[j]);
    return best;
}

#if defined(__AVX512F__)
// Explicit vectors (activation_avx512.h), the tail masked: every element goes through the very
// instructions the AMX GEMM's epilogue uses when it applies the activation itself.
template <__m512 (*F)(__m512)>
static void apply16(float* x, int64_t n) {
    constexpr int64_t kBlock = 1024;
    parallel_for((n + kBlock - 1) / kBlock, n >= kParallelMinElements, [&](int64_t b) {
        const int64_t end = std::min(n, (b + 1) * kBlock);
        for (int64_t i = b * kBlock; i < end; i += 16) {
            const __mmask16 m = end - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (end - i)) - 1u);
            _mm512_mask_storeu_ps(x + i, m, F(_mm512_maskz_loadu_ps(m, x + i)));
        }
    });
}

void gelu(float* x, int64_t n) { apply16<avx512_math::gelu16>(x, n); }

void quick_gelu(float* x, int64_t n) { apply16<avx512_math::quick_gelu16>(x, n); }
#else
void gelu(float* x, int64_t n) {
    parallel_for(n, n >= kParallelMinElements,
                 [&](int64_t i) { x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118654752f)); });
}

void quick_gelu(float* x, int64_t n) {
    parallel_for(n, n >= kParallelMinElements, [&](int64_t i) { x[i] = x[i] / (1.0f + exp_approx(-1.702f * x[i])); });
}
#endif

// The 4 x 2-vector FMA block both attention products are made of, over this build's width of the vector
// vocabulary (core/simd.inc):
//   out[r, j] = sum over c < steps of a[r * lda + c] * b[c * ldb + j]   for r < 4, j < cols,
// cols a multiple of two vectors.  8 accumulators, one broadcast per (row, step), two loads per step.
#include "core/simd.inc"

// This build's width of the vocabulary, and how many vectors wide its widest attention block is.
#if defined(__AVX512F__)
struct Vec : F32x16 {
    static constexpr int kWideVectors = 4;
};
#define TCLIP_HAVE_VEC 1
#elif defined(__AVX2__) && defined(__FMA__)
struct Vec : F32x8 {
    static constexpr int kWideVectors = 2;
};
#define TCLIP_HAVE_VEC 1
#elif defined(__aarch64__) && defined(TCLIP_OPS_NEON)
struct Vec : F32x4 {
    static constexpr int kWideVectors = 4;
};
#define TCLIP_HAVE_VEC 1
#endif

#if defined(TCLIP_HAVE_VEC)
// One column block of NV vectors: 4 x NV accumulators, NV loads and 4 broadcasts per step.  With
// Accumulate the sums go on from what out holds (a pass over the next steps, in the same order).
template <class V, int NV, bool Accumulate>
static inline void rows4_times_columns(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t steps,
                                       float* out, int64_t ldo) {
    constexpr int W = V::kWidth;
    typename V::T acc[4][NV];
    for (int r = 0; r < 4; ++r)
        for (int u = 0; u < NV; ++u) acc[r][u] = Accumulate ? V::load(out + r * ldo + u * W) : V::zero();
    for (int64_t c = 0; c < steps; ++c) {
        typename V::T bv[NV];
        for (int u = 0; u < NV; ++u) bv[u] = V::load(b + c * ldb + u * W);
        for (int r = 0; r < 4; ++r) {
            const typename V::T x = V::broadcast(a + r * lda + c);
            for (int u = 0; u < NV; ++u) acc[r][u] = V::fmadd(x, bv[u], acc[r][u]);
        }
    }
    for (int r = 0; r < 4; ++r)
        for (int u = 0; u < NV; ++u) V::store(out + r * ldo + u * W, acc[r][u]);
}

// Columns [0, cols) in blocks of kWideVectors vectors, then of two (cols a multiple of two vectors).
template <class V, bool Accumulate>
static inline void rows4_times_panel(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t steps,
                                     int64_t cols, float* out, int64_t ldo) {
    constexpr int W = V::kWidth, Wide = V::kWideVectors;
    int64_t j = 0;
    if constexpr (Wide > 2)
        for (; j + Wide * W <= cols; j += Wide * W)
            rows4_times_columns<V, Wide, Accumulate>(a, lda, b + j, ldb, steps, out + j, ldo);
    for (; j < cols; j += 2 * W) rows4_times_columns<V, 2, Accumulate>(a, lda, b + j, ldb, steps, out + j, ldo);
}
#endif

// A row reduced in P partials (column j into partial j % P, P a multiple of the vector width), the partials
// added up in lane order, then the tail in order: the softmax's maximum and sum (P = one vector: the compiler
// kept max8's and sum8's eight partials scalar) and LayerNorm's sums (P = kNormPartials whatever the width).
enum class Reduce { max, sum, squares };  // squares: of x - center

#if defined(TCLIP_HAVE_VEC)
template <class V, int P, Reduce R>
static inline float row_partials(const float* x, int64_t n, float center = 0.0f) {
    constexpr int W = V::kWidth, NV = P / W;
    const float init = R == Reduce::max ? -std::numeric_limits<float>::infinity() : 0.0f;
    const typename V::T c = V::set1(center);
    typename V::T part[NV];
    for (int u = 0; u < NV; ++u) part[u] = V::set1(init);
    int64_t j = 0;
    for (; j + P <= n; j += P)
        for (int u = 0; u < NV; ++u) {
            const typename V::T v = V::load(x + j + u * W);
            part[u] = R == Reduce::max       ? V::max(part[u], v)
                      : R == Reduce::squares ? V::fmadd(V::sub(v, c), V::sub(v, c), part[u])
                                             : V::add(part[u], v);
        }
    alignas(64) float lanes[P];
    for (int u = 0; u < NV; ++u) V::store(lanes + u * W, part[u]);
    float result = init;
    for (int l = 0; l < P; ++l) result = R == Reduce::max ? std::max(result, lanes[l]) : result + lanes[l];
    for (; j < n; ++j)
        result = R == Reduce::max       ? std::max(result, x[j])
                 : R == Reduce::squares ? std::fma(x[j] - center, x[j] - center, result)
                                        : result + x[j];
    return result;
}
static inline float row_max(const float* x, int64_t n) { return row_partials<Vec, Vec::kWidth, Reduce::max>(x, n); }
static inline float row_sum(const float* x, int64_t n) { return row_partials<Vec, Vec::kWidth, Reduce::sum>(x, n); }
#else
static inline float row_max(const float* x, int64_t n) { return max8(x, n); }
static inline float row_sum(const float* x, int64_t n) { return sum8(x, n); }
#endif

// LayerNorm, a row at a time: (x - mean) / sqrt(var + eps) * w + b, the mean and the variance summed in
// 32 partials (column j into partial j % 32), whatever the vector width, added up in one order, the
// squares and the output with explicit fused multiply-adds: the AVX2, AVX-512 and NEON builds give the
// same bits (the bf16 mode rounds LayerNorm's output to bf16, where one ulp of difference shows).  Why
// not plain loops: the compiler kept sum8's partials scalar, and the AVX-512 build of those loops took
// 180 us for an image's 197 x 768 rows (the AVX2 build 67 us, the reference 95).
#if defined(TCLIP_HAVE_VEC)
constexpr int kNormPartials = 32;

static void layer_norm_row(const float* xr, int64_t d, const float* w, const float* b, float eps, float* yr) {
    constexpr int W = Vec::kWidth;
    const float mean = row_partials<Vec, kNormPartials, Reduce::sum>(xr, d) / float(d);
    const float inv = 1.0f / std::sqrt(row_partials<Vec, kNormPartials, Reduce::squares>(xr, d, mean) / float(d) + eps);
    const Vec::T vmean = Vec::set1(mean), vinv = Vec::set1(inv);
    int64_t j = 0;
    for (; j + W <= d; j += W)
        Vec::store(yr + j,
                   Vec::fmadd(Vec::mul(Vec::sub(Vec::load(xr + j), vmean), vinv), Vec::load(w + j), Vec::load(b + j)));
    for (; j < d; ++j) yr[j] = std::fma((xr[j] - mean) * inv, w[j], b[j]);
}
#else
static void layer_norm_row(const float* xr, int64_t d, const float* w, const float* b, float eps, float* yr) {
    const float mean = sum8(xr, d) / float(d);
    float* centered = yr;  // reuse the output row as scratch
    for (int64_t j = 0; j < d; ++j) centered[j] = (xr[j] - mean) * (xr[j] - mean);
    const float var = sum8(centered, d);
    const float inv = 1.0f / std::sqrt(var / float(d) + eps);
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
}
#endif

void layer_norm(const float* x, int64_t m, int64_t d, const float* w, const float* b, float eps, float* y) {
    parallel_for(m, m * d >= kParallelMinElements,
                 [&](int64_t i) { layer_norm_row(x + i * d, d, w, b, eps, y + i * d); });
}

// The same block in plain loops (the reference build, and shapes the vector block does not cover).
static inline void rows4_times_panel_scalar(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t steps,
                                            int64_t cols, float* out, int64_t ldo, bool accumulate) {
    for (int r = 0; r < 4; ++r) {
        float* orow = out + r * ldo;
        if (!accumulate) std::fill(orow, orow + cols, 0.0f);
        for (int64_t c = 0; c < steps; ++c) {
            const float ac = a[r * lda + c];
            for (int64_t j = 0; j < cols; ++j) orow[j] += ac * b[c * ldb + j];
        }
    }
}

// Both attention products for 4 query rows: out[r, j] (+)= sum over c < steps of a[r * lda + c] *
// b[c * ldb + j], j < cols; the vector block where cols is a multiple of two vectors.
static void rows4_product(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t steps, int64_t cols,
                          float* out, int64_t ldo, bool accumulate) {
#if defined(TCLIP_HAVE_VEC)
    if (cols % (2 * Vec::kWidth) == 0) {
        if (accumulate) return rows4_times_panel<Vec, true>(a, lda, b, ldb, steps, cols, out, ldo);
        return rows4_times_panel<Vec, false>(a, lda, b, ldb, steps, cols, out, ldo);
    }
#endif
    rows4_times_panel_scalar(a, lda, b, ldb, steps, cols, out, ldo, accumulate);
}

// Keys are padded to a multiple of the vector block's width (two vectors), with zero keys and values.
#if defined(TCLIP_HAVE_VEC)
constexpr int64_t kKeyBlock = 2 * Vec::kWidth;
#else
constexpr int64_t kKeyBlock = 4;
#endif
constexpr int64_t kQueryTile = 16;  // queries whose products share each chunk of K^T and V (at most)
constexpr int64_t kKeyChunk = 64;   // keys per chunk (a multiple of kKeyBlock): 16 KB of K^T or V at hd 64
constexpr int64_t kL1Bytes = 32 << 10;

// Queries per tile: 16 where K^T and V of a head do not fit in L1 together (an image's 197 keys), so
// that a chunk of them read from L2 serves four groups; otherwise 4, one group, whose scores, softmax
// and P V follow each other on rows still in L1 (a caption's 77 keys: measured 0.87x with 16).
inline int64_t query_tile(int64_t tp, int64_t hd) {
    return 2 * tp * hd * int64_t(sizeof(float)) > kL1Bytes ? kQueryTile : 4;
}

// One head of qkv rows (3 * width apart from base) into the attention's scratch: Q scaled [tq][hd], K^T
// [hd][tp] and V [tp][hd], zero past the t real tokens.  Q and V are row copies the compiler vectorizes;
// K is transposed in blocks of 16 keys x 16 dims, so that the rows read and the lines written stay in L1
// (K^T of a ViT head is 57 KB: transposed row by row, every store of a key went to another line).
static void gather_head(const float* base, int64_t t, int64_t width, int64_t hd, int64_t tp, float scale, float* q,
                        float* kt, float* v) {
    constexpr int64_t kBlock = 16;
    const int64_t tq = (t + 3) / 4 * 4;
    constexpr int64_t kAhead = 8;  // rows: each one is on a new page, which no prefetcher runs ahead of
    for (int64_t i = 0; i < t; ++i) {
        const float* row = base + i * 3 * width;
        if (i + kAhead < t)
            for (int64_t part = 0; part < 3; ++part)
                for (int64_t c = 0; c < hd; c += 16) __builtin_prefetch(row + kAhead * 3 * width + part * width + c);
        for (int64_t c = 0; c < hd; ++c) q[i * hd + c] = row[c] * scale;
        for (int64_t c = 0; c < hd; ++c) v[i * hd + c] = row[2 * width + c];
    }
    std::fill(q + t * hd, q + tq * hd, 0.0f);
    std::fill(v + t * hd, v + tp * hd, 0.0f);
    for (int64_t i0 = 0; i0 < t; i0 += kBlock)
        for (int64_t c0 = 0; c0 < hd; c0 += kBlock)
            for (int64_t c = c0; c < std::min(hd, c0 + kBlock); ++c)
                for (int64_t i = i0; i < std::min(t, i0 + kBlock); ++i)
                    kt[c * tp + i] = base[i * 3 * width + width + c];
    for (int64_t c = 0; c < hd; ++c) std::fill(kt + c * tp + t, kt + (c + 1) * tp, 0.0f);
}

// qkv [batch, t, 3 * width] (q | k | v, heads split inside each) -> out [batch, t, width].
// Per (sample, head): gather Q (scaled), K^T and V into zero-padded scratch, then 4 query rows at a
// time: scores, softmax (masked past the keys, and causally), weighted sum of values.
void attention(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    const int64_t hd = width / heads;
    const int64_t tp = (t + kKeyBlock - 1) / kKeyBlock * kKeyBlock, tq = (t + 3) / 4 * 4;
    const float scale = 1.0f / std::sqrt(float(hd));
    const int64_t tile = query_tile(tp, hd);
    Items items(batch * heads);
    run_parallel(2 * batch * heads * t * t * hd >= kParallelMinFlops, [&] {
        std::vector<float> q(static_cast<size_t>(tq * hd)), kt(static_cast<size_t>(hd * tp));
        std::vector<float> v(static_cast<size_t>(tp * hd)), s(static_cast<size_t>(kQueryTile * tp)),
            o(static_cast<size_t>(kQueryTile * hd));
        auto mine = items.join();
        for (int64_t bh; mine.next(bh);) {
            const int64_t bi = bh / heads, h = bh % heads;
            const float* base = qkv + bi * t * 3 * width + h * hd;
            gather_head(base, t, width, hd, tp, scale, q.data(), kt.data(), v.data());
            for (int64_t i0 = 0; i0 < t; i0 += tile) {
                // Groups of 4 queries.  With a causal mask a group sees keys up to its last query only:
                // its products stop at the key block holding it (about half the work of a caption's
                // attention).  Past the real keys the weights are exact zeros, so the sums are the same.
                const int groups = int(std::min(tile, tq - i0) / 4);  // at least one: i0 < t <= tq, both steps of 4
                int64_t seen[kQueryTile / 4] = {};
                for (int g = 0; g < groups; ++g)
                    seen[g] = causal ? std::min(tp, (i0 + 4 * g + 4 + kKeyBlock - 1) / kKeyBlock * kKeyBlock) : tp;
                // Scores and then P V a chunk of keys at a time, the chunk of K^T or V kept in L1 for
                // every group of the tile (a whole K^T or V of a ViT head is 57 KB); P V's sums go on
                // from chunk to chunk in the order of one pass.
                for (int64_t j0 = 0; j0 < seen[groups - 1]; j0 += kKeyChunk)
                    for (int g = 0; g < groups; ++g)
                        if (j0 < seen[g])
                            rows4_product(q.data() + (i0 + 4 * g) * hd, hd, kt.data() + j0, tp, hd,
                                          std::min(kKeyChunk, seen[g] - j0), s.data() + 4 * g * tp + j0, tp, false);
                for (int r = 0; r < 4 * groups; ++r) {
                    float* sr = s.data() + r * tp;
                    const int64_t keys = causal ? std::min(i0 + r + 1, t) : t;
                    const float mx = row_max(sr, keys);
                    for (int64_t j = 0; j < keys; ++j) sr[j] = exp_approx(sr[j] - mx);
                    const float sum = row_sum(sr, keys);
                    const float inv = 1.0f / sum;
                    for (int64_t j = 0; j < keys; ++j) sr[j] *= inv;
                    std::fill(sr + keys, sr + seen[r / 4], 0.0f);
                }
                for (int64_t j0 = 0; j0 < seen[groups - 1]; j0 += kKeyChunk)
                    for (int g = 0; g < groups; ++g)
                        if (j0 < seen[g])
                            rows4_product(s.data() + 4 * g * tp + j0, tp, v.data() + j0 * hd, hd,
                                          std::min(kKeyChunk, seen[g] - j0), hd, o.data() + 4 * g * hd, hd, j0 > 0);
                for (int64_t r = 0; r < 4 * groups && i0 + r < t; ++r)
                    std::memcpy(out + (bi * t + i0 + r) * width + h * hd, o.data() + r * hd,
                                size_t(hd) * sizeof(float));
            }
        }
    });
}

}  // namespace tclip::TCLIP_OPS_NS
