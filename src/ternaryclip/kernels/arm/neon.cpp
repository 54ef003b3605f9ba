// aarch64 baseline kernels (ARMv8.0 Advanced SIMD, built for plain armv8-a) and the aarch64 dispatch
// tables.  Same results as ref.cpp: bitwise equal integer dots and fast-path outputs.
//
// Fast path: tiles of 8 weight rows x 4 tokens in the AVX2 layout ([k / 4][8 rows][4 codes], two
// 16-byte loads per 4 columns).  Per token and 4 columns: one `ld1r` of its 4 int8 activations and
// four `smlal` (8 products each, u x q widened to int16) into 4 int16x8 accumulators holding
// [row r: 4 columns][row r + 1: 4 columns].  After each segment two pairwise widening adds per
// accumulator (`saddlp`, `addp`) give one int32 lane per row.
//
// int16 bound: one lane gains one product per 4 columns, |u q| <= 2 * 128 = 256; a segment is 32
// steps (128 columns), so |lane| <= 8192 < 32767.  int32 bound as on x86 (K <= 2^23).  The codes are
// unsigned, so sum(u q) = sum(t q) + sum(q): the driver subtracts the group's sum of q.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "arm/arm.h"
#include "core/cpu_features.h"
#include "core/parallel.h"
#include "core/pool.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace tclip::neon {
namespace {

#include "core/tile_driver.inc"
#include "arm/neon_tile.inc"

constexpr int64_t kSegment = 128;  // columns accumulated in int16 (see the bound above)

struct NeonTile {
    static constexpr int kRows = kTileRows, kTokens = 4;
    using Acc = Rows8;
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
        pack_words(w, n0, rows, out);
    }
    static void dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc);
    static Acc minus(Acc a, int32_t v) { return rows8_minus(a, v); }
};

void NeonTile::dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc) {
    for (int t = 0; t < kTokens; ++t) acc[t] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int64_t seg = k0; seg < k1; seg += kSegment) {
        const int64_t end = std::min(k1, seg + kSegment);
        int16x8_t s[kTokens][4];  // [token][rows 0-1, 2-3, 4-5, 6-7]
        for (auto& token : s)
            for (auto& v : token) v = vdupq_n_s16(0);
        const int8_t* wp = reinterpret_cast<const int8_t*>(wbuf + seg / 4 * kRows);
        for (int64_t k = seg; k < end; k += 4, wp += 32) {
            const int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16);
            const int8x8_t w0l = vget_low_s8(w0), w1l = vget_low_s8(w1);
            for (int t = 0; t < kTokens; ++t) {
                const int8x16_t q = vreinterpretq_s8_u32(vdupq_n_u32(load_u32(q0 + t * kp + k)));
                const int8x8_t ql = vget_low_s8(q);
                s[t][0] = vmlal_s8(s[t][0], w0l, ql);
                s[t][1] = vmlal_high_s8(s[t][1], w0, q);
                s[t][2] = vmlal_s8(s[t][2], w1l, ql);
                s[t][3] = vmlal_high_s8(s[t][3], w1, q);
            }
        }
        for (int t = 0; t < kTokens; ++t) {
            acc[t].lo = vaddq_s32(acc[t].lo, vpaddq_s32(vpaddlq_s16(s[t][0]), vpaddlq_s16(s[t][1])));
            acc[t].hi = vaddq_s32(acc[t].hi, vpaddq_s32(vpaddlq_s16(s[t][2]), vpaddlq_s16(s[t][3])));
        }
    }
}

// 16 floats -> 16 int8 as the reference rounds and clamps them.  maxnm / minnm return the number
// when one operand is NaN, which is what std::max(-127, NaN) and std::min(127, .) give in ref.cpp.
inline int8x16_t quantize16(const float* x, float32x4_t inv) {
    const float32x4_t hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
    int16x4_t h[4];
    for (int s = 0; s < 4; ++s) {
        const float32x4_t f = vrndnq_f32(vmulq_f32(vld1q_f32(x + 4 * s), inv));
        h[s] = vqmovn_s32(vcvtq_s32_f32(vminnmq_f32(hi, vmaxnmq_f32(lo, f))));
    }
    return vcombine_s8(vqmovn_s16(vcombine_s16(h[0], h[1])), vqmovn_s16(vcombine_s16(h[2], h[3])));
}

}  // namespace

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 4 == 0; }

void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum) {
    parallel_for(m, m * k >= kParallelMinElements, [&](int64_t i) {
        const float* xr = x + i * k;
        int8_t* qr = q + i * kp;
        float32x4_t vmax = vdupq_n_f32(0.0f);
        int64_t j = 0;
        for (; j + 4 <= k; j += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(xr + j)));
        float absmax = vmaxnmvq_f32(vmax);
        for (; j < k; ++j) absmax = std::max(absmax, std::fabs(xr[j]));
        const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
        xscale[i] = absmax / 127.0f;
        const float32x4_t vinv = vdupq_n_f32(inv);
        for (j = 0; j + 16 <= k; j += 16) vst1q_s8(qr + j, quantize16(xr + j, vinv));
        finish_quantized_row(xr, inv, j, k, kp, groups, group_size, qr, qsum + i * groups);
    });
}

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<NeonTile>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { gemm_fast_rows8<NeonTile>(x, w, y); }

}  // namespace tclip::neon

#endif  // __aarch64__
