// The int8 attention (core/attention_int8.h) with AVX-512 VNNI `vpdpbusd`: the fast mode's attention on CPUs
// with VNNI but no AMX (Zen 4, Ice Lake), L = 255.  Compiled with the AVX-512 VNNI flags on x86-64 Linux;
// elsewhere, on a CPU without VNNI, and for head widths that are not a multiple of 16, the float32 attention
// runs.
//
// Why: one vpdpbusd does 64 multiply-adds (16 lanes x 4 bytes), twice vdpbf16ps, on operands a quarter of
// float32's bytes.  vpdpbusd multiplies unsigned by signed bytes: Q is stored as q + 128 and each score
// takes 128 x (its key's sum) back off (exact); P is unsigned already.
//
// Per (sample, head), spread over threads: the head gathered into the layouts below, whose 64-byte lines
// are the vectors vpdpbusd takes (16 keys x 4 dims for the scores; 16 dims x 4 keys for the values).  Then
// per 4 queries: the scores 4 queries x 4 key blocks at a time (16 accumulators, a query's 4 dims
// broadcast), the softmax writing P as bytes, and P V 4 queries x up to 4 dim tiles at a time.
//
// Over 350 lines on purpose: the products are inline assembly (GCC copied the intrinsic version's
// accumulators), beside the gather and the softmax that share their layouts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/attention_int8.h"
#include "core/cpu_features.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "core/pool.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__linux__)
#include <immintrin.h>

namespace tclip::ops_avx512vnni {
namespace {

using namespace tclip::int8_attention;

constexpr int64_t kLanes = 16;  // keys of a score block, dims of a value tile
constexpr int kRows = 4;        // queries per register block
constexpr int kLevels = 255;

// 2^x, exp2_approx op for op.
inline __m512 exp2_16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(kExpFloor));
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kExp2C4), f, _mm512_set1_ps(kExp2C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23)));
}

// 16 floats times inv, rounded to nearest even and clamped to +-127 (quantize_rows' rounding), as int32.
inline __m512i quantize16(__m512 x, __m512 inv) {
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(x, inv));
    return _mm512_max_epi32(_mm512_set1_epi32(-127), _mm512_min_epi32(_mm512_set1_epi32(127), q));
}

// acc[4 r + b] = sum over steps s of vpdpbusd(the 4 bytes at a + r * lda + 4 s in every lane (unsigned), the line
// at lines + b * bstride + s * sstride (signed)), for 4 rows r and 4 lines b: both attention products' 4 x 4 block.
// In assembly as the fast GEMM's tile_dots (avx512.cpp): as intrinsics, GCC copied every destructive vpdpbusd
// accumulator through a spare register (the scores ran at half the speed of the same count of dots in P V).
inline void dots4x4(const uint8_t* a, int64_t lda, const int8_t* lines, int64_t bstride, int64_t sstride, int64_t steps,
                    __m512i* acc) {
    const int64_t lda3 = 3 * lda, bstride3 = 3 * bstride;
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
        "test %[steps], %[steps]\n\t"
        "jle 2f\n\t"
        "1:\n\t"
        "vmovdqu32 (%[lines]), %%zmm12\n\t"
        "vmovdqu32 (%[lines],%[bs]), %%zmm13\n\t"
        "vmovdqu32 (%[lines],%[bs],2), %%zmm14\n\t"
        "vmovdqu32 (%[lines],%[bs3]), %%zmm15\n\t"
        "vpbroadcastd (%[a]), %%zmm8\n\t"
        "vpbroadcastd (%[a],%[lda]), %%zmm9\n\t"
        "vpbroadcastd (%[a],%[lda],2), %%zmm10\n\t"
        "vpbroadcastd (%[a],%[lda3]), %%zmm11\n\t"
        "vpdpbusd %%zmm12, %%zmm8, %%zmm16\n\t"
        "vpdpbusd %%zmm13, %%zmm8, %%zmm17\n\t"
        "vpdpbusd %%zmm14, %%zmm8, %%zmm18\n\t"
        "vpdpbusd %%zmm15, %%zmm8, %%zmm19\n\t"
        "vpdpbusd %%zmm12, %%zmm9, %%zmm20\n\t"
        "vpdpbusd %%zmm13, %%zmm9, %%zmm21\n\t"
        "vpdpbusd %%zmm14, %%zmm9, %%zmm22\n\t"
        "vpdpbusd %%zmm15, %%zmm9, %%zmm23\n\t"
        "vpdpbusd %%zmm12, %%zmm10, %%zmm24\n\t"
        "vpdpbusd %%zmm13, %%zmm10, %%zmm25\n\t"
        "vpdpbusd %%zmm14, %%zmm10, %%zmm26\n\t"
        "vpdpbusd %%zmm15, %%zmm10, %%zmm27\n\t"
        "vpdpbusd %%zmm12, %%zmm11, %%zmm28\n\t"
        "vpdpbusd %%zmm13, %%zmm11, %%zmm29\n\t"
        "vpdpbusd %%zmm14, %%zmm11, %%zmm30\n\t"
        "vpdpbusd %%zmm15, %%zmm11, %%zmm31\n\t"
        "add $4, %[a]\n\t"
        "add %[ss], %[lines]\n\t"
        "dec %[steps]\n\t"
        "jnz 1b\n\t"
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
        : [a] "+r"(a), [lines] "+r"(lines), [steps] "+r"(steps)
        : [lda] "r"(lda), [lda3] "r"(lda3), [bs] "r"(bstride), [bs3] "r"(bstride3), [ss] "r"(sstride), [acc] "r"(acc)
        : "cc", "memory", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17",
          "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
          "xmm30", "xmm31");
}

inline float absmax(const float* x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += kLanes) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    return _mm512_reduce_max_ps(m);
}

// One (sample, head) in the vpdpbusd layouts; scratch grown once per thread.
struct Head {
    int64_t t, tp, hd;            // tokens, keys padded to 16, head width (a multiple of 16)
    std::vector<uint8_t> q;       // Q rows [tq][hd] as q + 128
    std::vector<float> g;         // per query: (qs * c) * log2(e)
    std::vector<int8_t> k;        // key blocks [tp / 16][hd / 4]: 16 keys x 4 dims a line
    std::vector<int32_t> kbias;   // per key: 128 x the sum of its codes
    std::vector<float> ks;        // per key scale (0 past the keys)
    std::vector<int8_t> v;        // value tiles [tp / 4][hd / 16]: 16 dims x 4 keys a line
    std::vector<float> vs, vinv;  // per dim: scale, 127 / absmax
    std::vector<float> s;         // scores [kRows][tp]
    std::vector<uint8_t> p;       // weights [kRows][tp]
    int32_t psum[kRows];

    void size(int64_t tokens, int64_t width) {
        t = tokens, hd = width, tp = (tokens + kLanes - 1) / kLanes * kLanes;
        const int64_t tq = (tokens + kRows - 1) / kRows * kRows;
        q.assign(size_t(tq * hd), 128);
        g.assign(size_t(tq), 0.0f);
        k.assign(size_t(tp * hd), 0);
        kbias.assign(size_t(tp), 0);
        ks.assign(size_t(tp), 0.0f);
        v.assign(size_t(tp * hd), 0);
        vs.assign(size_t(hd), 0.0f);
        vinv.assign(size_t(hd), 0.0f);
        s.assign(size_t(kRows * tp), 0.0f);
        p.assign(size_t(kRows * tp), 0);
    }
    const int8_t* k_line(int64_t kb, int64_t l) const { return k.data() + (kb * (hd / 4) + l) * 64; }
    const int8_t* v_line(int64_t jq, int64_t dt) const { return v.data() + (jq * (hd / kLanes) + dt) * 64; }

    // Q, K and V of one head from qkv rows 3 * width apart, quantized into the layouts above.  One pass over
    // the rows for Q, K and V's column maxima, the rows kAhead ahead fetched meanwhile (a row of the head is 3 x
    // 256 bytes every 9 KB at ViT-B, a new page each time: attention_bf16_head.inc), then V from L2.
    void gather(const float* base, int64_t width, float c) {
        constexpr int64_t kAhead = 4;
        alignas(64) int8_t row[1024];           // hd <= 1024 (checked by the caller)
        std::fill(vs.begin(), vs.end(), 0.0f);  // V's column maxima until the end of the pass
        for (int64_t i = 0; i < t; ++i) {
            if (i + kAhead < t)
                for (int part = 0; part < 3; ++part)
                    for (int64_t d = 0; d < hd; d += kLanes)
                        _mm_prefetch(reinterpret_cast<const char*>(base + (i + kAhead) * 3 * width + part * width + d),
                                     _MM_HINT_T0);
            const float* qr = base + i * 3 * width;
            const float* kr = qr + width;
            const float qa = absmax(qr, hd), ka = absmax(kr, hd);
            const __m512 qinv = _mm512_set1_ps(qa > 0.0f ? 127.0f / qa : 0.0f);
            const __m512 kinv = _mm512_set1_ps(ka > 0.0f ? 127.0f / ka : 0.0f);
            __m512i ksum = _mm512_setzero_si512();
            for (int64_t d = 0; d < hd; d += kLanes) {
                const __m512i qq = quantize16(_mm512_loadu_ps(qr + d), qinv);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(q.data() + i * hd + d),
                                 _mm512_cvtepi32_epi8(_mm512_add_epi32(qq, _mm512_set1_epi32(128))));
                const __m512i kq = quantize16(_mm512_loadu_ps(kr + d), kinv);
                ksum = _mm512_add_epi32(ksum, kq);
                _mm_store_si128(reinterpret_cast<__m128i*>(row + d), _mm512_cvtepi32_epi8(kq));
                const __m512 va = _mm512_abs_ps(_mm512_loadu_ps(kr + width + d));
                _mm512_storeu_ps(vs.data() + d, _mm512_max_ps(_mm512_loadu_ps(vs.data() + d), va));
            }
            g[i] = ((qa / 127.0f) * c) * kLog2e;
            ks[i] = ka / 127.0f;
            kbias[i] = 128 * _mm512_reduce_add_epi32(ksum);
            // key i, dims 4l.. -> block i / 16, line l, word i % 16
            auto* k32 = reinterpret_cast<uint32_t*>(k.data());
            for (int64_t l = 0; l < hd / 4; ++l) {
                uint32_t quad;
                std::memcpy(&quad, row + 4 * l, sizeof quad);
                k32[((i / kLanes) * (hd / 4) + l) * kLanes + i % kLanes] = quad;
            }
        }
        // V per column, 4 keys at a time interleaved into the tiles.
        for (int64_t d = 0; d < hd; d += kLanes) {
            const __m512 m = _mm512_loadu_ps(vs.data() + d);
            const __mmask16 live = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ);
            _mm512_storeu_ps(vinv.data() + d, _mm512_maskz_div_ps(live, _mm512_set1_ps(127.0f), m));
            _mm512_storeu_ps(vs.data() + d, _mm512_div_ps(m, _mm512_set1_ps(127.0f)));
        }
        for (int64_t j0 = 0; j0 < t; j0 += 4) {
            for (int64_t dt = 0; dt < hd / kLanes; ++dt) {
                const __m512 inv = _mm512_loadu_ps(vinv.data() + dt * kLanes);
                __m128i r[4];
                for (int64_t a = 0; a < 4; ++a)
                    r[a] = j0 + a < t
                               ? _mm512_cvtepi32_epi8(quantize16(
                                     _mm512_loadu_ps(base + (j0 + a) * 3 * width + 2 * width + dt * kLanes), inv))
                               : _mm_setzero_si128();
                const __m128i ab_lo = _mm_unpacklo_epi8(r[0], r[1]), ab_hi = _mm_unpackhi_epi8(r[0], r[1]);
                const __m128i cd_lo = _mm_unpacklo_epi8(r[2], r[3]), cd_hi = _mm_unpackhi_epi8(r[2], r[3]);
                auto* dst = reinterpret_cast<__m128i*>(v.data() + (j0 / 4 * (hd / kLanes) + dt) * 64);
                _mm_storeu_si128(dst + 0, _mm_unpacklo_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(dst + 1, _mm_unpackhi_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(dst + 2, _mm_unpacklo_epi16(ab_hi, cd_hi));
                _mm_storeu_si128(dst + 3, _mm_unpackhi_epi16(ab_hi, cd_hi));
            }
        }
    }

    // Scores of queries [q0, q0 + 4) against key blocks [kb, kb + Blocks) into s.
    template <int Blocks>
    void scores(int64_t q0, int64_t kb) {
        __m512i acc[kRows][Blocks];
        const uint8_t* qr = q.data() + q0 * hd;
        if constexpr (Blocks == 4) {
            dots4x4(qr, hd, k_line(kb, 0), 16 * hd, 64, hd / 4, &acc[0][0]);
        } else {
            for (auto& row : acc)
                for (auto& a : row) a = _mm512_setzero_si512();
            for (int64_t l = 0; l < hd / 4; ++l) {
                __m512i keys[Blocks];
                for (int b = 0; b < Blocks; ++b) keys[b] = _mm512_loadu_si512(k_line(kb + b, l));
                for (int r = 0; r < kRows; ++r) {
                    int32_t quad;
                    std::memcpy(&quad, qr + r * hd + 4 * l, sizeof quad);
                    const __m512i query = _mm512_set1_epi32(quad);
                    for (int b = 0; b < Blocks; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], query, keys[b]);
                }
            }
        }
        for (int b = 0; b < Blocks; ++b) {
            const int64_t j = (kb + b) * kLanes;
            const __m512i bias = _mm512_loadu_si512(kbias.data() + j);
            const __m512 scale = _mm512_loadu_ps(ks.data() + j);
            for (int r = 0; r < kRows; ++r) {
                const __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], bias));
                _mm512_storeu_ps(s.data() + r * tp + j,
                                 _mm512_mul_ps(_mm512_mul_ps(dot, scale), _mm512_set1_ps(g[q0 + r])));
            }
        }
    }

    // Row r's weights over its first `keys` keys into p (bytes, zero up to `seen`), their sum into psum.
    void softmax_row(int r, int64_t keys, int64_t seen) {
        const float* sr = s.data() + r * tp;
        uint8_t* pr = p.data() + r * tp;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < keys; j += kLanes) {
            const __mmask16 m = keys - j >= kLanes ? __mmask16(0xffff) : __mmask16((1u << (keys - j)) - 1u);
            mx = _mm512_mask_max_ps(mx, m, mx, _mm512_loadu_ps(sr + j));
        }
        const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512i sum = _mm512_setzero_si512();
        for (int64_t j = 0; j < seen; j += kLanes) {
            const __mmask16 m = j >= keys            ? __mmask16(0)
                                : keys - j >= kLanes ? __mmask16(0xffff)
                                                     : __mmask16((1u << (keys - j)) - 1u);
            const __m512 e = exp2_16(_mm512_sub_ps(_mm512_loadu_ps(sr + j), top));
            const __m512i w = _mm512_maskz_cvtps_epi32(m, _mm512_mul_ps(e, _mm512_set1_ps(float(kLevels))));
            sum = _mm512_add_epi32(sum, w);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(pr + j), _mm512_cvtepi32_epi8(w));
        }
        psum[r] = _mm512_reduce_add_epi32(sum);
    }

    // Output rows of queries [q0, q0 + 4) over dim tiles [dt, dt + Blocks) = P V over key quads [0, quads).
    template <int Blocks>
    void weighted_values(int64_t q0, int64_t quads, int64_t dt, float* out, int64_t width) const {
        __m512i acc[kRows][Blocks];
        if constexpr (Blocks == 4) {
            dots4x4(p.data(), tp, v_line(0, dt), 64, 4 * hd, quads, &acc[0][0]);
        } else {
            for (auto& row : acc)
                for (auto& a : row) a = _mm512_setzero_si512();
            for (int64_t jq = 0; jq < quads; ++jq) {
                __m512i values[Blocks];
                for (int b = 0; b < Blocks; ++b) values[b] = _mm512_loadu_si512(v_line(jq, dt + b));
                for (int r = 0; r < kRows; ++r) {
                    int32_t quad;
                    std::memcpy(&quad, p.data() + r * tp + 4 * jq, sizeof quad);
                    const __m512i weights = _mm512_set1_epi32(quad);
                    for (int b = 0; b < Blocks; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], weights, values[b]);
                }
            }
        }
        for (int r = 0; r < kRows && q0 + r < t; ++r) {
            const __m512 inv = _mm512_set1_ps(1.0f / float(psum[r]));
            float* dst = out + (q0 + r) * width + dt * kLanes;
            for (int b = 0; b < Blocks; ++b) {
                const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(vs.data() + (dt + b) * kLanes), inv);
                _mm512_storeu_ps(dst + b * kLanes, _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][b]), scale));
            }
        }
    }

    // Queries [q0, q0 + 4) into out (row i of the head at out + i * width).
    void query_block(int64_t q0, bool causal, float* out, int64_t width) {
        const int64_t seen = causal ? std::min(tp, (q0 + kRows + kLanes - 1) / kLanes * kLanes) : tp;
        // Key blocks 4 at a time; a tail of 1-3 blocks past at least 4 repeats the last 4 (the same scores again).
        const int64_t blocks = seen / kLanes;
        int64_t kb = 0;
        for (; kb + 4 <= blocks; kb += 4) scores<4>(q0, kb);
        if (kb < blocks && blocks >= 4) {
            scores<4>(q0, blocks - 4);
            kb = blocks;
        }
        switch (blocks - kb) {
            case 3:
                scores<3>(q0, kb);
                break;
            case 2:
                scores<2>(q0, kb);
                break;
            case 1:
                scores<1>(q0, kb);
                break;
            default:
                break;
        }
        for (int r = 0; r < kRows; ++r) {
            const int64_t query = q0 + r, keys = query >= t ? 0 : causal ? query + 1 : t;
            if (keys == 0) {
                psum[r] = 1;
                continue;
            }
            softmax_row(r, keys, seen);
        }
        const int64_t tiles = hd / kLanes;  // the same overlap for a tail of dim tiles
        int64_t dt = 0;
        for (; dt + 4 <= tiles; dt += 4) weighted_values<4>(q0, seen / 4, dt, out, width);
        if (dt < tiles && tiles >= 4) {
            weighted_values<4>(q0, seen / 4, tiles - 4, out, width);
            dt = tiles;
        }
        switch (tiles - dt) {
            case 3:
                weighted_values<3>(q0, seen / 4, dt, out, width);
                break;
            case 2:
                weighted_values<2>(q0, seen / 4, dt, out, width);
                break;
            case 1:
                weighted_values<1>(q0, seen / 4, dt, out, width);
                break;
            default:
                break;
        }
    }
};

}  // namespace

void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    const int64_t hd = width / heads;
    if (!cpu_features().avx512_vnni || hd % kLanes != 0 || hd > 1024)
        return ops_avx512::attention(qkv, batch, t, width, heads, causal, out);
    const float c = 1.0f / std::sqrt(float(hd));
    Items items(batch * heads);
    run_parallel(2 * batch * heads * t * t * hd >= kParallelMinFlops, [&] {
        thread_local Head h;
        h.size(t, hd);
        auto mine = items.join();
        for (int64_t bh; mine.next(bh);) {
            const int64_t bi = bh / heads, head = bh % heads;
            h.gather(qkv + bi * t * 3 * width + head * hd, width, c);
            for (int64_t q0 = 0; q0 < t; q0 += kRows)
                h.query_block(q0, causal, out + bi * t * width + head * hd, width);
        }
    });
}

}  // namespace tclip::ops_avx512vnni

#else  // not x86-64 Linux

namespace tclip::ops_avx512vnni {
void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    ops_generic::attention(qkv, batch, t, width, heads, causal, out);
}
}  // namespace tclip::ops_avx512vnni

#endif
