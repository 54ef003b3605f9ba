// aarch64 dotprod kernels (ARMv8.2 `sdot`; only this file's own code is built for +dotprod and only called
// when the CPU's hwcaps have it).  Bitwise equal to ref.cpp.
//
// Tiles of 8 weight rows x 8 tokens in the AVX2 layout ([k / 4][8 rows][4 codes]).  Per 16 columns:
// eight 16-byte weight loads (4 codes x 4 rows each), and per token one 16-byte load of its int8
// activations and eight `sdot ... .4b[lane]`: lane l of the activations (columns 4l..4l+3) dotted
// with the 4 codes of 4 rows, straight into int32 (no int16 stage, no segment).  A 4-column tail
// (groups are 4-aligned) broadcasts the token's word.  Codes u in {0, 1, 2} are valid signed int8;
// the driver subtracts the group's sum of q (sum(t q) = sum(u q) - sum(q)).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "arm/arm.h"
#include "core/pool.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// From here on (and in nothing the headers above define) the compiler may emit dotprod instructions.
// The file itself is built for the armv8-a baseline: inline functions of the standard headers that
// the linker could share with the other files keep baseline code.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

namespace tclip::neon_dotprod {
namespace {

#include "core/tile_driver.inc"
#include "arm/neon_tile.inc"

struct DotprodTile {
    static constexpr int kRows = kTileRows, kTokens = 8;
    using Acc = Rows8;
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
        pack_words(w, n0, rows, out);
    }
    static void dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc);
    static Acc minus(Acc a, int32_t v) { return rows8_minus(a, v); }
};

void DotprodTile::dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc) {
    int32x4_t lo[kTokens], hi[kTokens];
    for (int t = 0; t < kTokens; ++t) lo[t] = hi[t] = vdupq_n_s32(0);
    const int8_t* wp = reinterpret_cast<const int8_t*>(wbuf + k0 / 4 * kRows);
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16, wp += 128) {
        int8x16_t w[8];  // w[2 l]: rows 0-3, w[2 l + 1]: rows 4-7 of columns k + 4 l .. + 3
        for (int j = 0; j < 8; ++j) w[j] = vld1q_s8(wp + 16 * j);
        for (int t = 0; t < kTokens; ++t) {
            const int8x16_t q = vld1q_s8(q0 + t * kp + k);
            lo[t] = vdotq_laneq_s32(lo[t], w[0], q, 0);
            hi[t] = vdotq_laneq_s32(hi[t], w[1], q, 0);
            lo[t] = vdotq_laneq_s32(lo[t], w[2], q, 1);
            hi[t] = vdotq_laneq_s32(hi[t], w[3], q, 1);
            lo[t] = vdotq_laneq_s32(lo[t], w[4], q, 2);
            hi[t] = vdotq_laneq_s32(hi[t], w[5], q, 2);
            lo[t] = vdotq_laneq_s32(lo[t], w[6], q, 3);
            hi[t] = vdotq_laneq_s32(hi[t], w[7], q, 3);
        }
    }
    for (; k < k1; k += 4, wp += 32) {
        const int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16);
        for (int t = 0; t < kTokens; ++t) {
            const int8x16_t q = vreinterpretq_s8_u32(vdupq_n_u32(load_u32(q0 + t * kp + k)));
            lo[t] = vdotq_s32(lo[t], w0, q);
            hi[t] = vdotq_s32(hi[t], w1, q);
        }
    }
    for (int t = 0; t < kTokens; ++t) acc[t] = {lo[t], hi[t]};
}

}  // namespace

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<DotprodTile>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { gemm_fast_rows8<DotprodTile>(x, w, y); }

}  // namespace tclip::neon_dotprod

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif  // __aarch64__
