// Multi-head attention on AMX-BF16 tiles: the fast mode's attention where the CPU has them (x86-64
// Linux; compiled with -mamx-tile -mamx-bf16 -mavx512bf16 and the AVX-512 flags: Sapphire Rapids and
// later).  Elsewhere attention_avx512bf16.cpp's vdpbf16ps version runs, and for head widths that are not
// a multiple of 32 (or without AVX512-BF16) the float32 attention.
//
// Why: once the GEMMs run on AMX-INT8, the two attention products are ~30% of a ViT-B/16 image.  One
// tdpbf16ps does 16 x 16 x 32 multiply-adds in ~16 cycles, four times an AVX-512 FMA pair.  Q, K, V and
// the softmax weights P are rounded to bf16 (8-bit mantissa); the sums, the softmax and the output stay
// float32.  The fast mode already rounds the GEMMs' activations to int8, and its bound (cosine >= 0.995
// to exact) holds with room (tests/test_attention_bf16.py); the exact mode keeps float32 attention.
//
// Per (sample, head), spread over threads: Q (scaled) as bf16 rows; K as B tiles of 16 keys x 32 dims in
// the unit's pair order (line l holds dims 2l, 2l + 1 of each of the 16 keys); V as B tiles of 32 keys x
// 16 dims (line l holds keys 2l, 2l + 1 of each of the 16 dims).  Then per 16 queries: the scores into
// float rows, the softmax writing P as bf16, and P V into up to four accumulator tiles at once.  Keys are
// padded to 32 with zeros (zero weights: the sums do not change); causal queries stop at the last
// 32-key step they can see.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "core/pool.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__linux__)
#include <immintrin.h>

#include "x86/activation_avx512.h"

namespace tclip::ops_amx {
namespace {

using avx512_math::exp16;

constexpr int kTile = 16;      // lines of a tile; keys (scores) or dims (values) of a B tile
constexpr int64_t kLine = 32;  // bf16 values in a 64-byte tile line

#include "x86/amx_tiles.inc"

#include "x86/attention_bf16_head.inc"

// out rows of 16 queries from q0 (stride ldo floats) = P V over key steps [0, steps), dim tiles [dt, dt + Tiles).
template <int Tiles>
void weighted_values(const Head& h, int64_t steps, int64_t dt, float* out, int64_t ldo) {
    _tile_zero(0);
    if constexpr (Tiles > 1) _tile_zero(1);
    if constexpr (Tiles > 2) _tile_zero(2);
    if constexpr (Tiles > 3) _tile_zero(3);
    for (int64_t ks = 0; ks < steps; ++ks) {
        _tile_loadd(4, h.p.data() + ks * kLine, h.tp * 2);
        _tile_loadd(5, h.v_tile(ks, dt), 64);
        _tile_dpbf16ps(0, 4, 5);
        if constexpr (Tiles > 1) {
            _tile_loadd(6, h.v_tile(ks, dt + 1), 64);
            _tile_dpbf16ps(1, 4, 6);
        }
        if constexpr (Tiles > 2) {
            _tile_loadd(7, h.v_tile(ks, dt + 2), 64);
            _tile_dpbf16ps(2, 4, 7);
        }
        if constexpr (Tiles > 3) {
            _tile_loadd(5, h.v_tile(ks, dt + 3), 64);
            _tile_dpbf16ps(3, 4, 5);
        }
    }
    const int64_t stride = ldo * int64_t(sizeof(float));
    _tile_stored(0, out + dt * kTile, stride);
    if constexpr (Tiles > 1) _tile_stored(1, out + (dt + 1) * kTile, stride);
    if constexpr (Tiles > 2) _tile_stored(2, out + (dt + 2) * kTile, stride);
    if constexpr (Tiles > 3) _tile_stored(3, out + (dt + 3) * kTile, stride);
}

// Queries [q0, q0 + 16) of one head into out (row i of the head at out + i * width).
// Scores of queries [q0, q0 + 16) against key tiles [0, seen / 16) into h.s, for head widths of 32 or 64:
// the query tiles (one per 32 dims) loaded once and held, two key tiles at a time into two accumulators.
// Each score tile sums its dim steps in the same order as the general loop below: the same bits.
template <int Steps>
void scores_held(Head& h, int64_t q0, int64_t seen) {
    const int64_t ldq = h.hd * 2, lds = h.tp * int64_t(sizeof(float));
    _tile_loadd(4, h.q.data() + q0 * h.hd, ldq);
    if constexpr (Steps == 2) _tile_loadd(5, h.q.data() + q0 * h.hd + kLine, ldq);
    for (int64_t kt = 0; kt < seen / kTile; kt += 2) {  // seen is a multiple of 32 keys
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(6, h.k_tile(kt, 0), 64);
        _tile_loadd(7, h.k_tile(kt + 1, 0), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if constexpr (Steps == 2) {
            _tile_loadd(6, h.k_tile(kt, 1), 64);
            _tile_loadd(7, h.k_tile(kt + 1, 1), 64);
            _tile_dpbf16ps(0, 5, 6);
            _tile_dpbf16ps(1, 5, 7);
        }
        _tile_stored(0, h.s.data() + kt * kTile, lds);
        _tile_stored(1, h.s.data() + (kt + 1) * kTile, lds);
    }
}

void query_tile(Head& h, int64_t q0, bool causal, float* out, int64_t width) {
    const int64_t seen = causal ? std::min(h.tp, (q0 + kTile + kLine - 1) / kLine * kLine) : h.tp;
    if (h.hd == kLine)
        scores_held<1>(h, q0, seen);
    else if (h.hd == 2 * kLine)
        scores_held<2>(h, q0, seen);
    else
        for (int64_t kt = 0; kt < seen / kTile; ++kt) {
            _tile_zero(0);
            for (int64_t d = 0; d < h.hd / kLine; ++d) {
                _tile_loadd(4, h.q.data() + q0 * h.hd + d * kLine, h.hd * 2);
                _tile_loadd(5, h.k_tile(kt, d), 64);
                _tile_dpbf16ps(0, 4, 5);
            }
            _tile_stored(0, h.s.data() + kt * kTile, h.tp * int64_t(sizeof(float)));
        }
    for (int r = 0; r < kTile; ++r) {
        const int64_t query = q0 + r, keys = query >= h.t ? 0 : causal ? query + 1 : h.t;
        h.softmax_row(r, keys, seen);
    }
    int64_t dt = 0;
    for (; dt + 4 <= h.hd / kTile; dt += 4) weighted_values<4>(h, seen / kLine, dt, h.o.data(), h.hd);
    if (h.hd / kTile - dt == 2) weighted_values<2>(h, seen / kLine, dt, h.o.data(), h.hd);
    // Out of the tiles into L1 first, then to the output rows (3 KB apart at ViT-B: a page every row or
    // two) with whole-line stores that skip the read for ownership: a tile stored straight there waited
    // on 16 lines fetched from memory for a batch whose output is past the caches.
    const int64_t rows = std::min<int64_t>(kTile, h.t - q0);
    const bool stream = reinterpret_cast<uintptr_t>(out) % 64 == 0 && width % 16 == 0;
    for (int64_t r = 0; r < rows; ++r) {
        float* dst = out + (q0 + r) * width;
        const float* src = h.o.data() + r * h.hd;
        if (stream)
            for (int64_t c = 0; c < h.hd; c += kTile) _mm512_stream_ps(dst + c, _mm512_loadu_ps(src + c));
        else
            std::memcpy(dst, src, size_t(h.hd) * sizeof(float));
    }
}

}  // namespace

void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    if (!cpu_features().amx_bf16 || (width / heads) % kLine != 0)
        return ops_avx512bf16::attention_bf16(qkv, batch, t, width, heads, causal, out);
    run_heads(
        qkv, batch, t, width, heads, causal, out, query_tile, [] { configure_tiles(kTile); }, [] { _tile_release(); });
}

}  // namespace tclip::ops_amx

#else  // not x86-64 Linux

namespace tclip::ops_amx {
void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    ops_generic::attention(qkv, batch, t, width, heads, causal, out);
}
}  // namespace tclip::ops_amx

#endif
