// AMX-INT8 fast path (x86-64 Linux; compiled with -mamx-tile -mamx-int8 and the AVX-512 flags, called only
// where the CPU has AMX and the kernel granted this process the tile state: Intel Sapphire Rapids and later).
//
// Why: one `tdpbsud` multiplies a 16 x 64 int8 tile of activations by a 64 x 16 tile of weight codes,
// 16,384 multiply-adds in ~16 cycles, eight times what the VNNI path's vpdpbusd pair does in that time.
// The int8 dot product stops being the wall; unpacking the 2-bit codes and the epilogue become it.
//
// Load-time layout (`prepare`): panel_layout.inc, 2 bits a weight in panels of 32 rows x chunks of 64
// columns, each 16-row half a B tile in the unit's order once expanded (shared with the AVX-512 VNNI path).
//
// A call expands one panel at a time into a per-thread buffer (K x 32 bytes: 96 KB at K = 3072, kept in
// L2) and runs every token tile of the current token block over it, 32 tokens x 32 rows at a time in four
// int32 accumulator tiles.  The codes are unsigned (u = t + 1), the activations signed, so `tdpbsud`
// sums q u and the epilogue subtracts the per-group sum of q, as the VNNI path does.  Integer dots equal
// ref.cpp bit for bit; the float epilogue is the reference's: (0 + s * dot) * xscale + bias, or for
// groups acc += s_g * dot_g in increasing g, then acc * xscale + bias.
//
// int32 bound: a lane adds at most 2 * 128 * K, below 2^31 for K <= 2^23 (the bindings refuse more).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/pool.h"
#include "x86/x86.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "x86/activation_avx512.h"

namespace tclip::amx {
namespace {

#include "core/tile_driver.inc"

#include "x86/panel_layout.inc"

#include "x86/amx_tiles.inc"

#include "x86/amx_panels.inc"

constexpr int64_t kBlockBytes = int64_t(1) << 20;  // int8 activation bytes per token block (L2: 2 MB a core)

// Tiles (amx_tiles.inc's configuration): 0-3 the accumulators (token half a x row half b at 2 a + b), 4-5
// activations, 6-7 weights.

// Writes the dots of one accumulator tile (16 tokens from i x 16 rows from n0) into y: the running
// sum over groups lives in y itself, exactly the reference's float sequence.
void finish(const QuantizedRows& x, const TernaryWeights& w, const int32_t* dots, int64_t i, int64_t n0,
            const RowHalf& h, int64_t g, Output out) {
    float* y = out.y;
    if (h.real == 0) return;
    const __m512 vs = _mm512_load_ps(h.scale), vb = _mm512_load_ps(h.bias);
    const __mmask16 rows_mask = __mmask16((1u << h.real) - 1u);
    const bool first = g == 0, last = g + 1 == w.scale_cols;
    const int tokens = int(std::min<int64_t>(kTile, x.m - i));
    for (int t = 0; t < tokens; ++t) {
        float* yr = y + (i + t) * w.n + n0;
        const __m512i dot = _mm512_sub_epi32(_mm512_load_si512(dots + t * kTile),
                                             _mm512_set1_epi32(x.qsum[(i + t) * w.scale_cols + g]));
        const __m512 before = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows_mask, yr);
        __m512 v = _mm512_add_ps(before, _mm512_mul_ps(vs, _mm512_cvtepi32_ps(dot)));
        if (last) {
            v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(x.xscale[i + t])), vb);
            if (out.activation == Activation::gelu) v = avx512_math::gelu16(v);
            if (out.activation == Activation::quick_gelu) v = avx512_math::quick_gelu16(v);
        }
        put_row(out, yr, rows_mask, h.real == kTile, v);
    }
}

// Tokens [i, i + 16 * TokenTiles) x the panel at n0, chunks [c0, c1) of group g.  The weight tiles come
// from the expanded panel `tiles`, or with Streamed from the packed panel, each chunk expanded just before
// its tile loads into a ring of 4 slots in `tiles` (a batch of one or two token tiles reads every weight
// tile once: expanding the whole panel first would write it to a buffer that, at K = 3072, L1 cannot hold).
template <int TokenTiles, bool Streamed>
void panel_tokens(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* packed, uint8_t* tiles, int64_t i,
                  int64_t n0, int64_t c0, int64_t c1, int64_t g, const RowHalf* halves, Output y) {
    const int8_t* q = x.q + i * x.kp;
    const int64_t stride = x.kp;
    zero_accumulators<TokenTiles>();
    for (int64_t c = c0; c < c1; ++c) {
        const uint8_t* b = tiles + (Streamed ? c % 4 : c) * 2 * kTileBytes;
        if constexpr (Streamed) expand_panel(packed + c * 2 * kPackedTileBytes, 2, tiles + (c % 4) * 2 * kTileBytes);
        _tile_loadd(4, q + c * kChunk, stride);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + kTileBytes, 64);
        _tile_dpbsud(0, 4, 6);
        _tile_dpbsud(1, 4, 7);
        if constexpr (TokenTiles == 2) {
            _tile_loadd(5, q + kTile * stride + c * kChunk, stride);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
    }
    alignas(64) int32_t dots[4][kTile * kTile];
    store_accumulators<TokenTiles>(dots);
    for (int a = 0; a < TokenTiles; ++a)
        for (int b = 0; b < 2; ++b) finish(x, w, dots[2 * a + b], i + a * kTile, n0 + b * kTile, halves[b], g, y);
}

}  // namespace

bool compiled() { return true; }

bool request_tile_state() {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // <asm/prctl.h>, spelled out for old headers
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % kChunk == 0; }

int64_t prepared_bytes(const TernaryWeights& w) { return panels(w) * panel_bytes(w); }

void prepare(const TernaryWeights& w, uint8_t* out) { prepare_panels(w, out); }

namespace {

// The int8 GEMM's pieces for run_panels.
struct Int8Panel {
    using Word = uint8_t;
    const QuantizedRows& x;
    const TernaryWeights& w;
    Output y;
    void expand(const uint8_t* packed, int64_t tiles, uint8_t* dst) const { expand_panel(packed, tiles, dst); }
    template <int TokenTiles, bool Streamed>
    void tokens(const uint8_t* packed, uint8_t* tiles, int64_t i, int64_t n0, int64_t c0, int64_t c1, int64_t g,
                const RowHalf* halves) const {
        panel_tokens<TokenTiles, Streamed>(x, w, packed, tiles, i, n0, c0, c1, g, halves, y);
    }
};

void gemm(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y_, Fusion fusion) {
    Output y = output_for(y_, x.m, w, fusion.add);
    y.activation = fusion.activation;
    // tiles of tokens per block, even: pairs of token tiles share each weight tile load
    const int64_t block = std::max<int64_t>(2, kBlockBytes / w.kp / kTile / 2 * 2);
    run_panels(Int8Panel{x, w, y}, x.m, w, prepared, block, w.kp / kChunk * 2 * kTileBytes, y.stream);
}

}  // namespace

void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y) {
    gemm(x, w, prepared, y, Fusion{});
}

void gemm_fast_prepared_fused(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y,
                              Fusion fusion) {
    gemm(x, w, prepared, y, fusion);  // the bindings call it with per-row or per-tensor scales only
}

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    std::vector<uint8_t> prepared(size_t(prepared_bytes(w)));
    prepare(w, prepared.data());
    gemm_fast_prepared(x, w, prepared.data(), y);
}

}  // namespace tclip::amx

#else  // not x86-64 Linux

namespace tclip::amx {
bool compiled() { return false; }
bool request_tile_state() { return false; }
bool supports(const TernaryWeights&) { return false; }
int64_t prepared_bytes(const TernaryWeights&) { return 0; }
void prepare(const TernaryWeights&, uint8_t*) {}
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t*, float* y) {
    ref::gemm_fast(x, w, y);
}
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
void gemm_fast_prepared_fused(const QuantizedRows&, const TernaryWeights&, const uint8_t*, float*, Fusion) {
    throw std::logic_error("the AMX GEMM is not compiled into this build");  // never in a table here
}
}  // namespace tclip::amx

#endif
