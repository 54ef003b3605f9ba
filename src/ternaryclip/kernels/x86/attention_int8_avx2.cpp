// The int8 attention (core/attention_int8.h) on AVX2: `vpmaddubsw` (pairs of u8 x s8 products summed to int16)
// then `vpmaddwd` by ones (to int32), L = 127.  Compiled with -mavx2 -mfma on x86-64 Linux; elsewhere, on a
// CPU without AVX2, and for head widths that are not a multiple of 16, the float32 attention runs.
//
// vpmaddubsw saturates a pair's sum at int16: 127 x 127 x 2 fits, 255 x 127 x 2 does not.  So the scores
// take |q| as the unsigned side and k with q's sign (vpsignb), and P has 127 levels.  The layouts are the
// AVX-512 path's (x86/attention_int8_avx512.cpp) at half the width: 8 keys x 4 dims a score line, 8 dims
// x 4 keys a value line, 32 bytes each.
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

namespace tclip::ops_avx2int8 {
namespace {

using namespace tclip::int8_attention;

constexpr int64_t kLanes = 8;  // keys of a score block, dims of a value tile
constexpr int64_t kPad = 16;   // keys padded to 16 (P is packed to bytes 16 at a time)
constexpr int kRows = 4;       // queries per register block
constexpr int kLevels = 127;

// 2^x, exp2_approx op for op.
inline __m256 exp2_8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(kExpFloor));
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kExp2C4), f, _mm256_set1_ps(kExp2C3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23)));
}

inline __m256 abs8(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

// 8 floats times inv, rounded to nearest even and clamped to +-127 (quantize_rows' rounding), as int32.
inline __m256i quantize8(__m256 x, __m256 inv) {
    const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(x, inv));
    return _mm256_max_epi32(_mm256_set1_epi32(-127), _mm256_min_epi32(_mm256_set1_epi32(127), q));
}

// 16 int32 in [-128, 255] (two vectors, in order) -> 16 bytes (signed or unsigned saturation alike).
inline __m128i bytes16(__m256i lo, __m256i hi, bool is_unsigned) {
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
    const __m128i a = _mm256_castsi256_si128(words), b = _mm256_extracti128_si256(words, 1);
    return is_unsigned ? _mm_packus_epi16(a, b) : _mm_packs_epi16(a, b);
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

inline int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

inline float absmax(const float* x, int64_t n) {
    __m256 m = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += kLanes) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + i)));
    return hmax(m);
}

// The first `count` lanes of 8 set (all ones), the others clear.
inline __m256i first_lanes(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(std::clamp<int64_t>(count, 0, kLanes))),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One (sample, head) in the vpmaddubsw layouts; scratch grown once per thread.
struct Head {
    int64_t t, tp, hd;            // tokens, keys padded to 16, head width (a multiple of 16)
    std::vector<int8_t> q;        // Q rows [tq][hd]
    std::vector<float> g;         // per query: (qs * c) * log2(e)
    std::vector<int8_t> k;        // key blocks [tp / 8][hd / 4]: 8 keys x 4 dims a line
    std::vector<float> ks;        // per key scale (0 past the keys)
    std::vector<int8_t> v;        // value tiles [tp / 4][hd / 8]: 8 dims x 4 keys a line
    std::vector<float> vs, vinv;  // per dim: scale, 127 / absmax
    std::vector<float> s;         // scores [kRows][tp]
    std::vector<uint8_t> p;       // weights [kRows][tp]
    int32_t psum[kRows];

    void size(int64_t tokens, int64_t width) {
        t = tokens, hd = width, tp = (tokens + kPad - 1) / kPad * kPad;
        const int64_t tq = (tokens + kRows - 1) / kRows * kRows;
        q.assign(size_t(tq * hd), 0);
        g.assign(size_t(tq), 0.0f);
        k.assign(size_t(tp * hd), 0);
        ks.assign(size_t(tp), 0.0f);
        v.assign(size_t(tp * hd), 0);
        vs.assign(size_t(hd), 0.0f);
        vinv.assign(size_t(hd), 0.0f);
        s.assign(size_t(kRows * tp), 0.0f);
        p.assign(size_t(kRows * tp), 0);
    }
    const int8_t* k_line(int64_t kb, int64_t l) const { return k.data() + (kb * (hd / 4) + l) * 32; }
    const int8_t* v_line(int64_t jq, int64_t dt) const { return v.data() + (jq * (hd / kLanes) + dt) * 32; }

    // Q, K and V of one head from qkv rows 3 * width apart, quantized into the layouts above: one pass over the
    // rows for Q, K and V's column maxima with the rows kAhead ahead prefetched, then V from L2 (as the AVX-512
    // path does).
    void gather(const float* base, int64_t width, float c) {
        constexpr int64_t kAhead = 4;
        alignas(32) int8_t row[1024];           // hd <= 1024 (checked by the caller)
        std::fill(vs.begin(), vs.end(), 0.0f);  // V's column maxima until the end of the pass
        for (int64_t i = 0; i < t; ++i) {
            if (i + kAhead < t)
                for (int part = 0; part < 3; ++part)
                    for (int64_t d = 0; d < hd; d += 16)
                        _mm_prefetch(reinterpret_cast<const char*>(base + (i + kAhead) * 3 * width + part * width + d),
                                     _MM_HINT_T0);
            const float* qr = base + i * 3 * width;
            const float* kr = qr + width;
            const float qa = absmax(qr, hd), ka = absmax(kr, hd);
            const __m256 qinv = _mm256_set1_ps(qa > 0.0f ? 127.0f / qa : 0.0f);
            const __m256 kinv = _mm256_set1_ps(ka > 0.0f ? 127.0f / ka : 0.0f);
            for (int64_t d = 0; d < hd; d += 2 * kLanes) {
                _mm_storeu_si128(reinterpret_cast<__m128i*>(q.data() + i * hd + d),
                                 bytes16(quantize8(_mm256_loadu_ps(qr + d), qinv),
                                         quantize8(_mm256_loadu_ps(qr + d + kLanes), qinv), false));
                _mm_store_si128(reinterpret_cast<__m128i*>(row + d),
                                bytes16(quantize8(_mm256_loadu_ps(kr + d), kinv),
                                        quantize8(_mm256_loadu_ps(kr + d + kLanes), kinv), false));
            }
            for (int64_t d = 0; d < hd; d += kLanes)
                _mm256_storeu_ps(vs.data() + d,
                                 _mm256_max_ps(_mm256_loadu_ps(vs.data() + d), abs8(_mm256_loadu_ps(kr + width + d))));
            g[i] = ((qa / 127.0f) * c) * kLog2e;
            ks[i] = ka / 127.0f;
            // key i, dims 4l.. -> block i / 8, line l, word i % 8
            auto* k32 = reinterpret_cast<uint32_t*>(k.data());
            for (int64_t l = 0; l < hd / 4; ++l) {
                uint32_t quad;
                std::memcpy(&quad, row + 4 * l, sizeof quad);
                k32[((i / kLanes) * (hd / 4) + l) * kLanes + i % kLanes] = quad;
            }
        }
        // V per column, 4 keys at a time interleaved into the tiles (16 dims at a time: two 8-dim tiles, adjacent
        // in memory).
        for (int64_t d = 0; d < hd; d += kLanes) {
            const __m256 m = _mm256_loadu_ps(vs.data() + d);
            const __m256 live = _mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ);
            _mm256_storeu_ps(vinv.data() + d, _mm256_and_ps(live, _mm256_div_ps(_mm256_set1_ps(127.0f), m)));
            _mm256_storeu_ps(vs.data() + d, _mm256_div_ps(m, _mm256_set1_ps(127.0f)));
        }
        for (int64_t j0 = 0; j0 < t; j0 += 4) {
            for (int64_t d = 0; d < hd; d += 2 * kLanes) {
                const __m256 lo = _mm256_loadu_ps(vinv.data() + d), hi = _mm256_loadu_ps(vinv.data() + d + kLanes);
                __m128i r[4];
                for (int64_t a = 0; a < 4; ++a) {
                    const float* x = base + (j0 + a) * 3 * width + 2 * width + d;
                    r[a] = j0 + a < t ? bytes16(quantize8(_mm256_loadu_ps(x), lo),
                                                quantize8(_mm256_loadu_ps(x + kLanes), hi), false)
                                      : _mm_setzero_si128();
                }
                const __m128i ab_lo = _mm_unpacklo_epi8(r[0], r[1]), ab_hi = _mm_unpackhi_epi8(r[0], r[1]);
                const __m128i cd_lo = _mm_unpacklo_epi8(r[2], r[3]), cd_hi = _mm_unpackhi_epi8(r[2], r[3]);
                auto* dst = reinterpret_cast<__m128i*>(v.data() + (j0 / 4 * (hd / kLanes) + d / kLanes) * 32);
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
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[kRows][Blocks];
        for (auto& row : acc)
            for (auto& a : row) a = _mm256_setzero_si256();
        const int8_t* qr = q.data() + q0 * hd;
        for (int64_t l = 0; l < hd / 4; ++l) {
            __m256i keys[Blocks];
            for (int b = 0; b < Blocks; ++b)
                keys[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k_line(kb + b, l)));
            for (int r = 0; r < kRows; ++r) {
                int32_t quad;
                std::memcpy(&quad, qr + r * hd + 4 * l, sizeof quad);
                const __m256i query = _mm256_set1_epi32(quad), magnitude = _mm256_abs_epi8(query);
                for (int b = 0; b < Blocks; ++b) {
                    const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(keys[b], query));
                    acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for (int b = 0; b < Blocks; ++b) {
            const int64_t j = (kb + b) * kLanes;
            const __m256 scale = _mm256_loadu_ps(ks.data() + j);
            for (int r = 0; r < kRows; ++r) {
                const __m256 dot = _mm256_cvtepi32_ps(acc[r][b]);
                _mm256_storeu_ps(s.data() + r * tp + j,
                                 _mm256_mul_ps(_mm256_mul_ps(dot, scale), _mm256_set1_ps(g[q0 + r])));
            }
        }
    }

    // Row r's weights over its first `keys` keys into p (bytes, zero up to `seen`), their sum into psum.
    void softmax_row(int r, int64_t keys, int64_t seen) {
        const float* sr = s.data() + r * tp;
        uint8_t* pr = p.data() + r * tp;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int64_t j = 0; j < keys; j += kLanes) {
            const __m256 live = _mm256_castsi256_ps(first_lanes(keys - j));
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_loadu_ps(sr + j), live));
        }
        const __m256 top = _mm256_set1_ps(hmax(mx));
        __m256i sum = _mm256_setzero_si256();
        for (int64_t j = 0; j < seen; j += 2 * kLanes) {
            __m256i w[2];
            for (int h = 0; h < 2; ++h) {
                const __m256 e = exp2_8(_mm256_sub_ps(_mm256_loadu_ps(sr + j + h * kLanes), top));
                w[h] = _mm256_and_si256(first_lanes(keys - j - h * kLanes),
                                        _mm256_cvtps_epi32(_mm256_mul_ps(e, _mm256_set1_ps(float(kLevels)))));
                sum = _mm256_add_epi32(sum, w[h]);
            }
            _mm_storeu_si128(reinterpret_cast<__m128i*>(pr + j), bytes16(w[0], w[1], true));
        }
        psum[r] = hsum(sum);
    }

    // Output rows of queries [q0, q0 + 4) over dim tiles [dt, dt + Blocks) = P V over key quads [0, quads).
    template <int Blocks>
    void weighted_values(int64_t q0, int64_t quads, int64_t dt, float* out, int64_t width) const {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[kRows][Blocks];
        for (auto& row : acc)
            for (auto& a : row) a = _mm256_setzero_si256();
        for (int64_t jq = 0; jq < quads; ++jq) {
            __m256i values[Blocks];
            for (int b = 0; b < Blocks; ++b)
                values[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v_line(jq, dt + b)));
            for (int r = 0; r < kRows; ++r) {
                int32_t quad;
                std::memcpy(&quad, p.data() + r * tp + 4 * jq, sizeof quad);
                const __m256i weights = _mm256_set1_epi32(quad);
                for (int b = 0; b < Blocks; ++b)
                    acc[r][b] =
                        _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(_mm256_maddubs_epi16(weights, values[b]), ones));
            }
        }
        for (int r = 0; r < kRows && q0 + r < t; ++r) {
            const __m256 inv = _mm256_set1_ps(1.0f / float(psum[r]));
            float* dst = out + (q0 + r) * width + dt * kLanes;
            for (int b = 0; b < Blocks; ++b) {
                const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(vs.data() + (dt + b) * kLanes), inv);
                _mm256_storeu_ps(dst + b * kLanes, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][b]), scale));
            }
        }
    }

    // Queries [q0, q0 + 4) into out (row i of the head at out + i * width).
    void query_block(int64_t q0, bool causal, float* out, int64_t width) {
        const int64_t seen = causal ? std::min(tp, (q0 + kRows + kPad - 1) / kPad * kPad) : tp;
        for (int64_t kb = 0; kb < seen / kLanes; kb += 2) scores<2>(q0, kb);  // seen: a multiple of 16 keys
        for (int r = 0; r < kRows; ++r) {
            const int64_t query = q0 + r, keys = query >= t ? 0 : causal ? query + 1 : t;
            if (keys == 0) {
                psum[r] = 1;
                continue;
            }
            softmax_row(r, keys, seen);
        }
        for (int64_t dt = 0; dt < hd / kLanes; dt += 2) weighted_values<2>(q0, seen / 4, dt, out, width);
    }
};

}  // namespace

void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    const int64_t hd = width / heads;
    if (!cpu_features().avx2 || hd % 16 != 0 || hd > 1024)
        return ops_avx2::attention(qkv, batch, t, width, heads, causal, out);
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

}  // namespace tclip::ops_avx2int8

#else  // not x86-64 Linux

namespace tclip::ops_avx2int8 {
void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    ops_generic::attention(qkv, batch, t, width, heads, causal, out);
}
}  // namespace tclip::ops_avx2int8

#endif
