// AVX-512 VNNI fast path (x86-64; compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni and
// called only when the CPU has them: Intel Ice Lake / Sapphire Rapids and later, AMD Zen 4).
// Over ~350 lines on purpose: the 16 x 16 tile, its partial-tile and small-M kernels, the epilogue they
// share and the quantization are one instruction set's internal-linkage code around one tile layout.
//
// Unlike the AVX2 path, the 16 int32 lanes of a vector are 16 *output rows*, not partial sums of one
// dot product: a tile of 16 weight rows is unpacked and interleaved as [k / 4][16 rows][4 codes], so
// one `vpdpbusd` multiplies 4 consecutive codes of each of the 16 rows by the same 4 int8 activations
// of one token (broadcast from memory) and adds them into that token's 16 row sums.  Per 4 columns:
// one 64-byte weight load feeds 16 tokens.  No horizontal reductions at all, and the epilogue writes
// 16 contiguous outputs of a token with one store.  Integer dots equal ref.cpp bit for bit, and the
// float epilogue performs the reference's operations in its order: (0 + s * dot) * xscale + bias, or
// for groups acc += s_g * dot_g in increasing g, then acc * xscale + bias.
//
// int32 bound: one vpdpbusd lane adds u_a q_a + ... + u_d q_d with u <= 2 and |q| <= 128 (127 after
// quantization; the int_dot test hook may pass -128), so after K columns |lane| <= 2 * 128 * K, which
// is below 2^31 for K <= 2^23 = 8,388,608 columns: no overflow (vpdpbusd wraps, it does not saturate).
// The bindings refuse a larger K.  The per-group sum of q that is subtracted is at most 128 K.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/pool.h"
#include "x86/x86.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include "x86/activation_avx512.h"

namespace tclip::avx512 {
namespace {

#include "core/tile_driver.inc"
#include "x86/panel_layout.inc"

constexpr int kRows = 16;  // output rows per tile = int32 lanes

// Rows [n0, n0 + 16) as int32 words of 4 codes u in {0, 1, 2}: out[(k / 4) * 16 + r]; rows past n
// hold u = 1 (value 0).  `rows` is scratch for the unpacked [16][kp] codes.
void pack_tile(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
    unpack_rows(w, n0, kRows, rows);
    // Interleave: word j (4 codes) of row r -> out[j * 16 + r], one 16-row gather per word.
    const __m512i row_offsets = _mm512_mullo_epi32(
        _mm512_set1_epi32(int(w.kp)), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    for (int64_t j = 0; j < w.kp / 4; ++j)
        _mm512_storeu_si512(out + j * kRows, _mm512_i32gather_epi32(row_offsets, rows + j * 4, 1));
}

// acc[t] = sum over columns [k0, k1) of u[row] * q[t] for the 16 rows of the tile and 16 tokens whose
// int8 rows are kp bytes apart starting at q0 (k0, k1 multiples of 4).  In assembly: as intrinsics,
// GCC spilled the 16 row pointers and copied every destructive vpdpbusd accumulator through a spare
// register.  Here the accumulators are pinned to zmm16-zmm31 and each step is one 64-byte weight
// load plus 16 vpdpbusd with the token's 4 activations broadcast from memory ({1to16}).
inline void tile_dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m512i* acc) {
    const uint32_t* wp = wbuf + (k0 / 4) * kRows;
    const int8_t *p0 = q0 + k0, *p4 = p0 + 4 * kp, *p8 = p0 + 8 * kp, *p12 = p0 + 12 * kp;
    const int64_t kp3 = 3 * kp;
    int64_t k = k0;
    asm volatile(
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
        "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
        "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
        "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
        "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
        "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
        "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
        "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
        "cmp %[end], %[k]\n\t"
        "jge 2f\n\t"
        "1:\n\t"
        "vmovdqu32 (%[wp]), %%zmm15\n\t"
        "vpdpbusd (%[p0])%{1to16%}, %%zmm15, %%zmm16\n\t"
        "vpdpbusd (%[p0],%[kp])%{1to16%}, %%zmm15, %%zmm17\n\t"
        "vpdpbusd (%[p0],%[kp],2)%{1to16%}, %%zmm15, %%zmm18\n\t"
        "vpdpbusd (%[p0],%[kp3])%{1to16%}, %%zmm15, %%zmm19\n\t"
        "vpdpbusd (%[p4])%{1to16%}, %%zmm15, %%zmm20\n\t"
        "vpdpbusd (%[p4],%[kp])%{1to16%}, %%zmm15, %%zmm21\n\t"
        "vpdpbusd (%[p4],%[kp],2)%{1to16%}, %%zmm15, %%zmm22\n\t"
        "vpdpbusd (%[p4],%[kp3])%{1to16%}, %%zmm15, %%zmm23\n\t"
        "vpdpbusd (%[p8])%{1to16%}, %%zmm15, %%zmm24\n\t"
        "vpdpbusd (%[p8],%[kp])%{1to16%}, %%zmm15, %%zmm25\n\t"
        "vpdpbusd (%[p8],%[kp],2)%{1to16%}, %%zmm15, %%zmm26\n\t"
        "vpdpbusd (%[p8],%[kp3])%{1to16%}, %%zmm15, %%zmm27\n\t"
        "vpdpbusd (%[p12])%{1to16%}, %%zmm15, %%zmm28\n\t"
        "vpdpbusd (%[p12],%[kp])%{1to16%}, %%zmm15, %%zmm29\n\t"
        "vpdpbusd (%[p12],%[kp],2)%{1to16%}, %%zmm15, %%zmm30\n\t"
        "vpdpbusd (%[p12],%[kp3])%{1to16%}, %%zmm15, %%zmm31\n\t"
        "add $64, %[wp]\n\t"
        "add $4, %[p0]\n\t"
        "add $4, %[p4]\n\t"
        "add $4, %[p8]\n\t"
        "add $4, %[p12]\n\t"
        "add $4, %[k]\n\t"
        "cmp %[end], %[k]\n\t"
        "jl 1b\n\t"
        "2:\n\t"
        "vmovdqu32 %%zmm16, 0(%[acc])\n\t"
        "vmovdqu32 %%zmm17, 64(%[acc])\n\t"
        "vmovdqu32 %%zmm18, 128(%[acc])\n\t"
        "vmovdqu32 %%zmm19, 192(%[acc])\n\t"
        "vmovdqu32 %%zmm20, 256(%[acc])\n\t"
        "vmovdqu32 %%zmm21, 320(%[acc])\n\t"
        "vmovdqu32 %%zmm22, 384(%[acc])\n\t"
        "vmovdqu32 %%zmm23, 448(%[acc])\n\t"
        "vmovdqu32 %%zmm24, 512(%[acc])\n\t"
        "vmovdqu32 %%zmm25, 576(%[acc])\n\t"
        "vmovdqu32 %%zmm26, 640(%[acc])\n\t"
        "vmovdqu32 %%zmm27, 704(%[acc])\n\t"
        "vmovdqu32 %%zmm28, 768(%[acc])\n\t"
        "vmovdqu32 %%zmm29, 832(%[acc])\n\t"
        "vmovdqu32 %%zmm30, 896(%[acc])\n\t"
        "vmovdqu32 %%zmm31, 960(%[acc])\n\t"
        : [k] "+r"(k), [wp] "+r"(wp), [p0] "+r"(p0), [p4] "+r"(p4), [p8] "+r"(p8), [p12] "+r"(p12)
        : [kp] "r"(kp), [kp3] "r"(kp3), [end] "r"(k1), [acc] "r"(acc)
        : "cc", "memory", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
          "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

// tile_dots for the first T < 16 tokens only (a partial token tile: padding tokens cost no vpdpbusd).  Up to
// 4 tokens each keeps two partial sums (even and odd 4-column steps, integer sums: the same bits), or a
// token's single chain would wait on vpdpbusd's latency at every step.
template <int T>
void few_dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m512i* acc) {
    constexpr int kParts = T <= 4 ? 2 : 1;
    __m512i part[kParts][T];
    for (auto& p : part)
        for (auto& v : p) v = _mm512_setzero_si512();
    const uint32_t* wp = wbuf + (k0 / 4) * kRows;
    int64_t k = k0;
    for (; k + 4 * kParts <= k1; k += 4 * kParts, wp += kParts * kRows)
        for (int p = 0; p < kParts; ++p) {
            const __m512i codes = _mm512_loadu_si512(wp + p * kRows);
            for (int t = 0; t < T; ++t) {
                int32_t four;
                std::memcpy(&four, q0 + t * kp + k + 4 * p, 4);
                part[p][t] = _mm512_dpbusd_epi32(part[p][t], codes, _mm512_set1_epi32(four));
            }
        }
    if (k < k1) {  // an odd last step (kParts = 2)
        const __m512i codes = _mm512_loadu_si512(wp);
        for (int t = 0; t < T; ++t) {
            int32_t four;
            std::memcpy(&four, q0 + t * kp + k, 4);
            part[0][t] = _mm512_dpbusd_epi32(part[0][t], codes, _mm512_set1_epi32(four));
        }
    }
    for (int t = 0; t < T; ++t) acc[t] = kParts == 2 ? _mm512_add_epi32(part[0][t], part[kParts - 1][t]) : part[0][t];
}

using FewDots = void (*)(const uint32_t*, const int8_t*, int64_t, int64_t, int64_t, __m512i*);
constexpr FewDots kFewDotsOf[16] = {nullptr,      few_dots<1>,  few_dots<2>,  few_dots<3>, few_dots<4>,  few_dots<5>,
                                    few_dots<6>,  few_dots<7>,  few_dots<8>,  few_dots<9>, few_dots<10>, few_dots<11>,
                                    few_dots<12>, few_dots<13>, few_dots<14>, few_dots<15>};

struct Avx512Tile {
    static constexpr int kRows = 16, kTokens = 16;
    // Token blocks of 512 KB of int8 rows (the AVX2 path's 192 KB suits Zen 3's 512 KB L2): each block
    // expands every weight tile again, and a ViT-B/16 image b8 ran 1.03x faster with 512 KB than with 192
    // (1 MB: 1.01x more, in the host's noise; Zen 4 has 1 MB of L2 a core).
    static constexpr int64_t kBlockBytes = 512 << 10;
    using Acc = __m512i;
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) { pack_tile(w, n0, rows, out); }
    static void dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc) {
        tile_dots(wbuf, q0, kp, k0, k1, acc);
    }
    static constexpr bool kFewDots = true;
    static void few_dots(int real, const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1,
                         Acc* acc) {
        kFewDotsOf[real](wbuf, q0, kp, k0, k1, acc);
    }
    static Acc minus(Acc a, int32_t v) { return _mm512_sub_epi32(a, _mm512_set1_epi32(v)); }
};

// The same tile over the load-time panel layout (panel_layout.inc, shared with AMX): its tiles are,
// line by line, the interleaved words pack_tile builds, so a half panel only needs expanding (four
// loads, shifts and masks a 1024 codes), with no per-call unpacking, gathering or interleaving.
struct Avx512PanelTile : Avx512Tile {
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t*, uint32_t* out) {
        expand_half(w.packed + n0 / kPanel * panel_bytes(w), w.kp / kChunk, int(n0 / kTile % 2),
                    reinterpret_cast<uint8_t*>(out));
    }
};

// The float epilogue of a 16-row tile: the reference's operations in its order.  With a fusion (one scale
// column only), then the activation (activation_avx512.h: ops_avx512's own pass) and y + the result, the
// bits of the separate passes without their trips over y.
constexpr int64_t kPrefetchOutputs = int64_t(1) << 20;  // floats of y from which the epilogue prefetches it

struct Epilogue {
    const QuantizedRows& x;
    const TernaryWeights& w;
    float* y;
    Fusion fusion{};

    void operator()(int64_t i, int real, int64_t n0, int real_rows, int64_t g, const __m512i* acc) const {
        // the tile's scales and biases, rows past n zero: masked loads where they are contiguous (one scale
        // column), else gathered one by one (a call a 16 x 16 tile: 32 scalar loads cost ~1%)
        const __mmask16 rows_mask = __mmask16((1u << real_rows) - 1u);
        const __m512 vb = w.bias ? _mm512_maskz_loadu_ps(rows_mask, w.bias + n0) : _mm512_setzero_ps();
        __m512 vs;
        if (w.scale_rows == 1) {
            vs = _mm512_maskz_mov_ps(rows_mask, _mm512_set1_ps(w.scales[g]));
        } else if (w.scale_cols == 1) {
            vs = _mm512_maskz_loadu_ps(rows_mask, w.scales + n0);
        } else {
            alignas(64) float scale[kRows];
            for (int r = 0; r < kRows; ++r) scale[r] = r < real_rows ? w.scale(n0 + r, g) : 0.0f;
            vs = _mm512_load_ps(scale);
        }
        // members in locals: the stores to y may alias them, so the loop reloaded each one every token
        const bool first = g == 0, last = g + 1 == w.scale_cols;
        const int64_t n = w.n;
        float* const y0 = y + i * n + n0;
        const float* const xscale = x.xscale + i;
        const Activation activation = fusion.activation;
        const bool add = fusion.add;
        // An output past the caches (4 MB and more: an image batch): the next token tile's rows of y, asked for
        // now, arrive during its ~3000 cycles of dots instead of stalling its stores.
        const int64_t ahead = x.m * n >= kPrefetchOutputs ? std::min<int64_t>(kRows, x.m - i - kRows) : 0;
        for (int64_t t = 0; t < ahead; ++t) {
            _mm_prefetch(reinterpret_cast<const char*>(y0 + (kRows + t) * n), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(y0 + (kRows + t) * n + kRows - 1), _MM_HINT_T0);
        }
        if (first && last && activation == Activation::none && !add) {  // one scale column, nothing fused
            for (int t = 0; t < real; ++t) {
                __m512 v = _mm512_add_ps(_mm512_setzero_ps(), _mm512_mul_ps(vs, _mm512_cvtepi32_ps(acc[t])));
                v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(xscale[t])), vb);
                _mm512_mask_storeu_ps(y0 + t * n, rows_mask, v);
            }
            return;
        }
        for (int t = 0; t < real; ++t) {
            float* yr = y0 + t * n;
            // running sum over groups lives in y itself: exactly the reference's float sequence
            const __m512 before = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows_mask, yr);
            __m512 v = _mm512_add_ps(before, _mm512_mul_ps(vs, _mm512_cvtepi32_ps(acc[t])));
            if (last) {
                v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(xscale[t])), vb);
                if (activation == Activation::gelu) v = avx512_math::gelu16(v);
                if (activation == Activation::quick_gelu) v = avx512_math::quick_gelu16(v);
                if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(rows_mask, yr), v);
            }
            _mm512_mask_storeu_ps(yr, rows_mask, v);
        }
    }
};

// Under 16 tokens, T of them straight from the packed panel: a 64-byte load of a packed tile, shifted
// and masked four ways, is four of its lines (16 rows x 4 columns), each multiplied by every token's 4
// int8s of those columns with one vpdpbusd.  Nothing is expanded to memory and no padding token costs
// a multiply (the tile kernel computes 16 tokens whatever the batch).  Groups must be whole chunks.
//
// With few tokens each keeps several partial sums (by shift, summed at the end: integer sums, the same
// bits): vpdpbusd adds into its accumulator, and one chain a token waited on the instruction's latency
// at each of its 16 dots a chunk.  M = 1 on Zen 4 (K = 512 / 768, N = 512-3072): 1.4x-1.7x.
//
// Scaled (T <= 2, groups of at most kScaledColumns): the codes of shift sh are only masked in place, u << 2 sh
// (at most 128: still an unsigned byte), into partial sum sh, which is then 4^sh times its dots exactly and
// shifted back (arithmetic, exact) at the end: 12 of the 28 unpacking instructions a chunk fewer.  Its bound:
// a quarter of the group's columns, products of |u q| <= 128 * 128, sum to at most 2^12 * columns < 2^31.
constexpr int64_t kScaledColumns = int64_t(1) << 19;
template <int T, bool Scaled = false>
void small_m_half(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* panel, int half, int64_t n0,
                  const Epilogue& finish) {
    static_assert(!Scaled || T <= 2, "a scaled partial sum per shift: four of them a token");
    constexpr int kParts = T <= 2 ? 4 : T <= 7 ? 2 : 1;
    const __m512i mask = _mm512_set1_epi8(3);
    const int real_rows = int(std::min<int64_t>(kRows, w.n - n0));
    for (int64_t g = 0; g < w.scale_cols; ++g) {
        __m512i part[kParts][T];
        for (auto& p : part)
            for (auto& v : p) v = _mm512_setzero_si512();
        const int64_t c1 = (w.group_end(g) + kChunk - 1) / kChunk;
        for (int64_t c = w.group_begin(g) / kChunk; c < c1; ++c) {
            const uint8_t* src = panel + (c * 2 + half) * kPackedTileBytes;
            for (int v = 0; v < 4; ++v) {
                const __m512i bits = _mm512_loadu_si512(src + 64 * v);
                for (int sh = 0; sh < 4; ++sh) {
                    const __m512i codes = Scaled ? _mm512_and_si512(bits, _mm512_set1_epi8(char(3 << 2 * sh)))
                                                 : _mm512_and_si512(_mm512_srli_epi16(bits, 2 * sh), mask);
                    const int64_t column = c * kChunk + 4 * (4 * sh + v);  // line 4 sh + v of the chunk
                    for (int t = 0; t < T; ++t) {
                        int32_t four;
                        std::memcpy(&four, x.q + t * x.kp + column, 4);
                        __m512i& acc = part[sh % kParts][t];
                        acc = _mm512_dpbusd_epi32(acc, codes, _mm512_set1_epi32(four));
                    }
                }
            }
        }
        __m512i acc[T];
        for (int t = 0; t < T; ++t) {
            acc[t] = part[0][t];
            for (int p = 1; p < kParts; ++p)
                acc[t] = _mm512_add_epi32(acc[t], Scaled ? _mm512_srai_epi32(part[p][t], 2 * p) : part[p][t]);
            acc[t] = _mm512_sub_epi32(acc[t], _mm512_set1_epi32(x.qsum[t * w.scale_cols + g]));
        }
        finish(0, T, n0, real_rows, g, acc);
    }
}

using SmallM = void (*)(const QuantizedRows&, const TernaryWeights&, const uint8_t*, int, int64_t, const Epilogue&);
constexpr SmallM kSmallM[16] = {nullptr,          small_m_half<1>,  small_m_half<2>,  small_m_half<3>,
                                small_m_half<4>,  small_m_half<5>,  small_m_half<6>,  small_m_half<7>,
                                small_m_half<8>,  small_m_half<9>,  small_m_half<10>, small_m_half<11>,
                                small_m_half<12>, small_m_half<13>, small_m_half<14>, small_m_half<15>};
constexpr SmallM kSmallMScaled[3] = {nullptr, small_m_half<1, true>, small_m_half<2, true>};

}  // namespace

bool compiled() { return true; }

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 4 == 0; }

// Per-row absmax int8 quantization, the reference's numbers: q = clamp(nearbyint(x * (127 / absmax)),
// -127, 127).  Why a version of its own: at batch 32 the fast mode quantizes 34 M activations a ViT-B/16
// layer, ~10% of an image batch with AVX2's eight lanes.  The conversion rounds to nearest even (the
// MXCSR default, as nearbyint), and the clamp comes after it in integers: the same values, and a NaN
// (0 * inf: a row holding inf) becomes -127 as in ref.cpp (INT_MIN, then the max).
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum) {
    const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127), flip = _mm512_set1_epi8(char(0x80));
    parallel_for(m, m * k >= kParallelMinElements, [&](int64_t i) {
        const float* xr = x + i * k;
        int8_t* qr = q + i * kp;
        // four partial maxima: one chain of vmaxps would wait on its latency at every vector (the max
        // is the same in any order)
        __m512 vmax[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        int64_t j = 0;
        for (; j + 64 <= k; j += 64)
            for (int u = 0; u < 4; ++u)
                vmax[u] = _mm512_max_ps(vmax[u], _mm512_abs_ps(_mm512_loadu_ps(xr + j + 16 * u)));
        for (; j + 16 <= k; j += 16) vmax[0] = _mm512_max_ps(vmax[0], _mm512_abs_ps(_mm512_loadu_ps(xr + j)));
        float absmax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(vmax[0], vmax[1]), _mm512_max_ps(vmax[2], vmax[3])));
        for (; j < k; ++j) absmax = std::max(absmax, std::fabs(xr[j]));
        const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
        xscale[i] = absmax / 127.0f;
        const __m512 vinv = _mm512_set1_ps(inv);
        for (j = 0; j + 16 <= k; j += 16) {
            const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xr + j), vinv));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + j),
                             _mm512_cvtsepi32_epi8(_mm512_min_epi32(hi, _mm512_max_epi32(lo, v))));
        }
        if (groups != 1) {
            finish_quantized_row(xr, inv, j, k, kp, groups, group_size, qr, qsum + i * groups);
            return;
        }
        // one group: its sum of q in vectors, each byte moved to unsigned (q + 128, by xor) and summed by
        // vpsadbw, then 128 kp taken back (the zero padding to kp counts 128 a byte): the same integer
        finish_quantized_row(xr, inv, j, k, kp, 0, group_size, qr, nullptr);
        __m512i sums = _mm512_setzero_si512();
        int64_t c = 0;
        for (; c + 64 <= kp; c += 64)
            sums = _mm512_add_epi64(
                sums, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(qr + c), flip), _mm512_setzero_si512()));
        int64_t sum = _mm512_reduce_add_epi64(sums) - 128 * c;
        for (; c < kp; ++c) sum += qr[c];
        qsum[i] = int32_t(sum);
    });
}

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<Avx512Tile>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    drive<Avx512Tile>(x, w, Epilogue{x, w, y});
}

int64_t prepared_bytes(const TernaryWeights& w) { return panels(w) * panel_bytes(w); }

void prepare(const TernaryWeights& w, uint8_t* out) { prepare_panels(w, out); }

void gemm_fast_prepared_fused(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y,
                              Fusion fusion) {
    TernaryWeights wp = w;
    wp.packed = prepared;
    const Epilogue finish{x, wp, y, fusion};
    if (x.m >= kRows || (w.scale_cols > 1 && w.group_size % kChunk != 0)) {
        drive<Avx512PanelTile>(x, wp, finish);
        return;
    }
    const int64_t halves = (w.n + kRows - 1) / kRows;
    const SmallM kernel = x.m < 3 && w.group_size <= kScaledColumns ? kSmallMScaled[x.m] : kSmallM[x.m];
    Items items(halves);
    run_parallel(halves > 1, [&] {
        auto mine = items.join();
        for (int64_t h; mine.next(h);) kernel(x, wp, prepared + h / 2 * panel_bytes(w), int(h % 2), h * kRows, finish);
    });
}

void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y) {
    gemm_fast_prepared_fused(x, w, prepared, y, Fusion{});
}

}  // namespace tclip::avx512

#else  // not x86-64

namespace tclip::avx512 {
bool compiled() { return false; }
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t gs, int64_t groups, int8_t* q, float* xs,
                   int32_t* qsum) {
    ref::quantize_rows(x, m, k, kp, gs, groups, q, xs, qsum);
}
bool supports(const TernaryWeights&) { return false; }
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { ref::int_dot(x, w, out); }
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
int64_t prepared_bytes(const TernaryWeights&) { return 0; }
void prepare(const TernaryWeights&, uint8_t*) {}
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t*, float* y) {
    ref::gemm_fast(x, w, y);
}
void gemm_fast_prepared_fused(const QuantizedRows&, const TernaryWeights&, const uint8_t*, float*, Fusion) {
    throw std::logic_error("the AVX-512 GEMM is not compiled into this build");  // never in a table here
}
}  // namespace tclip::avx512

#endif
