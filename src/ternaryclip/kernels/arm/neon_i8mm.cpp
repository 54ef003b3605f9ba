// aarch64 i8mm kernels (ARMv8.6 `smmla`; only this file's own code is built for +i8mm and only called
// when the CPU's hwcaps have it).  Bitwise equal to ref.cpp.
//
// `smmla` multiplies a 2 x 8 int8 block by the transpose of another into a 2 x 2 int32 block: here
// 2 weight rows x 8 columns by 2 tokens x 8 columns.  A tile of 8 rows is laid out per 8 columns as
// 4 row pairs of 16 bytes ([k / 8][pair][row 2p: 8 codes][row 2p + 1: 8 codes]); per 8 columns:
// four weight loads, per token pair two 8-byte activation loads joined into one vector, and 16
// `smmla` (4 row pairs x 4 token pairs) into int32.  Groups are 4-aligned, not 8: a half-covered
// 8-column chunk at either end of a group zeroes the activations of the columns outside it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "arm/arm.h"
#include "core/pool.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// From here on (and in nothing the headers above define) the compiler may emit i8mm instructions.
// The file itself is built for the armv8-a baseline: inline functions of the standard headers that
// the linker could share with the other files keep baseline code.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("i8mm"))), apply_to = function)
#else
#pragma GCC target("arch=armv8.6-a+i8mm")
#endif

namespace tclip::neon_i8mm {
namespace {

#include "core/tile_driver.inc"
#include "arm/neon_tile.inc"

// Rows [n0, n0 + 8) as [k / 8][row pair p][row 2p: 8 codes][row 2p + 1: 8 codes] (kp * 8 bytes, the
// size of the driver's interleave buffer).
void pack_pairs(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
    unpack_rows(w, n0, kTileRows, rows);
    uint8_t* dst = reinterpret_cast<uint8_t*>(out);
    for (int64_t c = 0; c < w.kp / 8; ++c)
        for (int r = 0; r < kTileRows; ++r) std::memcpy(dst + c * 64 + r * 8, rows + r * w.kp + c * 8, 8);
}

struct I8mmTile {
    static constexpr int kRows = kTileRows, kTokens = 8;
    using Acc = Rows8;
    static void pack(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
        pack_pairs(w, n0, rows, out);
    }
    static void dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc);
    static Acc minus(Acc a, int32_t v) { return rows8_minus(a, v); }
};

// a[p][tp] += rows 2p, 2p + 1 x tokens 2tp, 2tp + 1 over the 8 columns at c, activations ANDed with keep.
template <bool kMasked>
inline void chunk(const int8_t* wp, const int8_t* q0, int64_t kp, int64_t c, int8x16_t keep, int32x4_t a[4][4]) {
    int8x16_t w[4];
    for (int p = 0; p < 4; ++p) w[p] = vld1q_s8(wp + 16 * p);
    for (int tp = 0; tp < 4; ++tp) {
        const int8_t* qr = q0 + 2 * tp * kp + c;
        int8x16_t q = vcombine_s8(vld1_s8(qr), vld1_s8(qr + kp));
        if (kMasked) q = vandq_s8(q, keep);
        for (int p = 0; p < 4; ++p) a[p][tp] = vmmlaq_s32(a[p][tp], w[p], q);
    }
}

void I8mmTile::dots(const uint32_t* wbuf, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, Acc* acc) {
    int32x4_t a[4][4];  // [row pair][token pair]: lanes (r0 t0, r0 t1, r1 t0, r1 t1)
    for (auto& pair : a)
        for (auto& v : pair) v = vdupq_n_s32(0);
    const int8_t* base = reinterpret_cast<const int8_t*>(wbuf);
    const int8x16_t low_half = vreinterpretq_s8_u64(vcombine_u64(vdup_n_u64(0xffffffffull), vdup_n_u64(0xffffffffull)));
    int64_t c = k0 / 8 * 8;
    if (c < k0) {  // the group starts mid-chunk (k0 = c + 4 < k1): keep the upper 4 columns
        chunk<true>(base + c * 8, q0, kp, c, vmvnq_s8(low_half), a);
        c += 8;
    }
    for (; c + 8 <= k1; c += 8) chunk<false>(base + c * 8, q0, kp, c, low_half, a);
    if (c < k1) chunk<true>(base + c * 8, q0, kp, c, low_half, a);  // the group ends mid-chunk
    for (int tp = 0; tp < 4; ++tp) {
        acc[2 * tp] = {vuzp1q_s32(a[0][tp], a[1][tp]), vuzp1q_s32(a[2][tp], a[3][tp])};
        acc[2 * tp + 1] = {vuzp2q_s32(a[0][tp], a[1][tp]), vuzp2q_s32(a[2][tp], a[3][tp])};
    }
}

}  // namespace

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<I8mmTile>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { gemm_fast_rows8<I8mmTile>(x, w, y); }

}  // namespace tclip::neon_i8mm

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif  // __aarch64__
