// Mode "bf16" on AMX-BF16 tiles: y = x W^T + b with the activations rounded to bf16 and float32 sums, the
// paper's W1.58-A16 setting (x86-64 Linux; compiled with -mamx-tile -mamx-bf16 -mavx512bf16 and the AVX-512
// flags, called only where the CPU has AMX-BF16 and the kernel granted this process the tile state).
//
// Why: the exact mode's FMA GEMM does 32 float multiply-adds a cycle on a core; one `tdpbf16ps` multiplies a
// 16 x 32 bf16 tile of activations by a 32 x 16 tile of weights, 8,192 multiply-adds in ~16 cycles.  With
// t in {-1, 0, 1} every product is exact in float32, so the result is ref::gemm_bf16 (the exact GEMM of the
// rounded activations) up to the order of the float32 sums.
//
// Weights: the AMX-INT8 path's load-time panels (panel_layout.inc), so one prepared copy serves both modes.
// A call expands a panel's 2-bit codes into int8 code tiles (expand_panel) and each of those into two bf16
// B tiles (to_bf16_tiles): columns 0-31 and 32-63 of the chunk, line l holding the pair of columns 2 l, 2 l + 1
// of each of the 16 rows.  The expanded panel (K x 32 bf16: 192 KB at K = 3072) stays in L2; a batch of up
// to 32 tokens reads every weight tile once, so it expands each chunk just before use instead, into a ring
// of 4 slots that L1 holds, as amx.cpp does.
//
// Activations: rows rounded by vcvtneps2bf16 (the rounding ref::round_bf16 defines), zero padded to kp
// columns and whole token tiles, in a per-call buffer.
//
// Exact mode (terms = 3) runs here too: a float32 x is exactly h + m + l, three bf16 (h = bf16(x),
// m = bf16(x - h), l = x - h - m, each difference exact in float32: 24 significant bits in three pieces
// of 8), so with t in {-1, 0, 1} every product is exact and only the order of the float32 sums differs
// from the FMA reference (the unit also flushes subnormal inputs and sums, below 1.2e-38).  Each weight
// tile then meets three activation tiles: 3 x the bf16 mode's multiplies, still ~5x an AVX-512 FMA
// core's rate per cycle.  Then as amx.cpp: token blocks x panels spread over
// the threads, 32 tokens x 32 rows at a time in four float32 accumulator tiles; the epilogue is the
// reference's: (0 + s * acc) + bias, or for groups (which start on 64-column boundaries, amx::supports)
// acc += s_g * acc_g in increasing g, then + bias.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "core/pool.h"
#include "x86/x86.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__linux__)
#include <immintrin.h>

namespace tclip::amx_bf16 {
namespace {

#include "core/tile_driver.inc"

#include "x86/panel_layout.inc"

#include "x86/amx_tiles.inc"

#include "x86/amx_panels.inc"

constexpr int64_t kHalfChunk = kChunk / 2;           // columns of a bf16 tile line: 32 (16 pairs)
constexpr int64_t kBf16TileWords = 512;              // a bf16 B tile: 16 lines x 32 bf16
constexpr int64_t kChunkWords = 4 * kBf16TileWords;  // a chunk of a panel: 2 row halves x 2 column halves
constexpr int64_t kBlockBytes = int64_t(1) << 20;    // bf16 activation bytes (all terms) per token block (L2: 2 MB)

// Tiles (amx_tiles.inc's configuration): 0-3 the accumulators (token tile a x row half b at 2 a + b), 4-5
// activations, 6-7 weights.

// One expanded int8 code tile (tdpbsud's B order: byte 4 j + c of line l = code u of row j, column 4 l + c)
// as the two bf16 B tiles of tdpbf16ps, 1024 words at dst: int8 line l becomes bf16 lines 2 l (columns 4 l,
// 4 l + 1 of each row) and 2 l + 1 (columns 4 l + 2, 4 l + 3), counted across both tiles, and u becomes
// the bf16 of t = u - 1.
inline void to_bf16_tiles(const uint8_t* codes, uint16_t* dst) {
    // vpermw's table, indexed by the code: bf16 -1, 0, +1
    const __m512i values =
        _mm512_or_si512(_mm512_maskz_set1_epi16(1, int16_t(0xbf80)), _mm512_maskz_set1_epi16(4, 0x3f80));
    // dwords of the (rows 0-7, rows 8-15) word pairs: even ones hold columns 4 l, 4 l + 1; odd ones the others
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int l = 0; l < kTile; ++l) {
        const auto* line = reinterpret_cast<const __m256i*>(codes + 64 * l);
        const __m512i rows_lo = _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(_mm256_load_si256(line)), values);
        const __m512i rows_hi = _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(_mm256_load_si256(line + 1)), values);
        _mm512_store_si512(dst + 64 * l, _mm512_permutex2var_epi32(rows_lo, even, rows_hi));
        _mm512_store_si512(dst + 64 * l + 32, _mm512_permutex2var_epi32(rows_lo, odd, rows_hi));
    }
}

// `tiles` packed code tiles from src as bf16 B tiles, 1024 words (two tiles) each, into dst.
void expand_panel_bf16(const uint8_t* src, int64_t tiles, uint16_t* dst) {
    alignas(64) uint8_t codes[kTileBytes];
    for (int64_t t = 0; t < tiles; ++t) {
        expand_panel(src + t * kPackedTileBytes, 1, codes);
        to_bf16_tiles(codes, dst + t * 2 * kBf16TileWords);
    }
}

// The activations rounded to bf16: rows of kp columns (zeros past k), m rounded up to whole token tiles;
// with terms = 3 the exact split, term j of the rows `term_words` after term j - 1.
struct Rows {
    const uint16_t* a;
    int64_t m, kp, terms, term_words;
};

inline __m512 from_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// x rounded into a buffer of the calling thread, grown and never shrunk (fresh megabytes every call would
// cost page faults), 64-byte aligned for the tile loads.
Rows round_rows(const float* x, int64_t m, const TernaryWeights& w, int64_t terms) {
    thread_local std::vector<uint16_t> storage;
    const int64_t rows = (m + kTile - 1) / kTile * kTile, term_words = rows * w.kp;
    const int64_t words = terms * term_words + 32;
    if (int64_t(storage.size()) < words) storage.resize(size_t(words));
    uint16_t* a = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64 / 2;
    parallel_for(rows, m * w.k >= kParallelMinElements, [&](int64_t i) {
        const float* xr = x + std::min(i, m - 1) * w.k;
        for (int64_t j = 0; j < w.kp; j += 16) {  // rows past m and columns past k: zeros
            const int64_t left = i < m ? std::clamp<int64_t>(w.k - j, 0, 16) : 0;
            __m512 v = _mm512_maskz_loadu_ps(__mmask16((1u << left) - 1u), xr + j);
            for (int64_t term = 0; term < terms; ++term) {  // x, then what it leaves, exactly
                const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
                _mm256_store_si256(reinterpret_cast<__m256i*>(a + term * term_words + i * w.kp + j), h);
                v = _mm512_sub_ps(v, from_bf16(h));
            }
        }
    });
    return Rows{a, m, w.kp, terms, term_words};
}

// Writes one accumulator tile (16 tokens from i x 16 rows from n0) into y: the running sum over groups
// lives in y itself, exactly the reference's float sequence.
void finish(const Rows& x, const TernaryWeights& w, const float* acc, int64_t i, int64_t n0, const RowHalf& h,
            int64_t g, Output out) {
    if (h.real == 0) return;
    const __m512 vs = _mm512_load_ps(h.scale), vb = _mm512_load_ps(h.bias);
    const __mmask16 rows_mask = __mmask16((1u << h.real) - 1u);
    const bool first = g == 0, last = g + 1 == w.scale_cols;
    const int tokens = int(std::min<int64_t>(kTile, x.m - i));
    for (int t = 0; t < tokens; ++t) {
        float* yr = out.y + (i + t) * w.n + n0;
        const __m512 before = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows_mask, yr);
        __m512 v = _mm512_add_ps(before, _mm512_mul_ps(vs, _mm512_load_ps(acc + t * kTile)));
        if (last) v = _mm512_add_ps(v, vb);
        put_row(out, yr, rows_mask, h.real == kTile, v);
    }
}

// Tokens [i, i + 16 * TokenTiles) x the panel at n0, chunks [c0, c1) of group g.  The weight tiles come
// from the expanded panel `tiles`, or with Streamed from the packed panel, each chunk expanded just before
// its tile loads into a ring of 4 slots in `tiles`.
template <int TokenTiles, bool Streamed>
void panel_tokens(const Rows& x, const TernaryWeights& w, const uint8_t* packed, uint16_t* tiles, int64_t i, int64_t n0,
                  int64_t c0, int64_t c1, int64_t g, const RowHalf* halves, Output y) {
    const uint16_t* a = x.a + i * x.kp;
    const int64_t stride = x.kp * int64_t(sizeof(uint16_t));
    zero_accumulators<TokenTiles>();
    for (int64_t c = c0; c < c1; ++c) {
        uint16_t* b = tiles + (Streamed ? c % 4 : c) * kChunkWords;
        if constexpr (Streamed) expand_panel_bf16(packed + c * 2 * kPackedTileBytes, 2, b);
        for (int64_t half = 0; half < 2; ++half) {  // columns [32 half, 32 half + 32) of the chunk
            _tile_loadd(6, b + half * kBf16TileWords, 64);
            _tile_loadd(7, b + 2 * kBf16TileWords + half * kBf16TileWords, 64);
            for (int64_t term = 0; term < x.terms; ++term) {
                const uint16_t* at = a + term * x.term_words + c * kChunk + half * kHalfChunk;
                _tile_loadd(4, at, stride);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                if constexpr (TokenTiles == 2) {
                    _tile_loadd(5, at + kTile * x.kp, stride);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
        }
    }
    alignas(64) float acc[4][kTile * kTile];
    store_accumulators<TokenTiles>(acc);
    for (int t = 0; t < TokenTiles; ++t)
        for (int r = 0; r < 2; ++r) finish(x, w, acc[2 * t + r], i + t * kTile, n0 + r * kTile, halves[r], g, y);
}

// The bf16 GEMM's pieces for run_panels.
struct Bf16Panel {
    using Word = uint16_t;
    const Rows& x;
    const TernaryWeights& w;
    Output y;
    void expand(const uint8_t* packed, int64_t tiles, uint16_t* dst) const { expand_panel_bf16(packed, tiles, dst); }
    template <int TokenTiles, bool Streamed>
    void tokens(const uint8_t* packed, uint16_t* tiles, int64_t i, int64_t n0, int64_t c0, int64_t c1, int64_t g,
                const RowHalf* halves) const {
        panel_tokens<TokenTiles, Streamed>(x, w, packed, tiles, i, n0, c0, c1, g, halves, y);
    }
};

}  // namespace

// Rows of x a pass rounds: its bf16 rows (terms x kp x 2 bytes each) stay under ~16 MB of scratch.  A batch
// of 32 images at K = 3072 would otherwise hold 116 MB of exact-mode terms for the process's lifetime.
constexpr int64_t kPassBytes = int64_t(16) << 20;

void gemm_prepared(const float* x_, int64_t m, const TernaryWeights& w, const uint8_t* prepared, float* y_, bool add,
                   int terms) {
    const int64_t row_bytes = terms * w.kp * int64_t(sizeof(uint16_t));
    const int64_t pass = std::max<int64_t>(2 * kTile, kPassBytes / row_bytes / (2 * kTile) * (2 * kTile));
    // tiles of tokens per block, even: pairs of token tiles share each weight tile load
    const int64_t block = std::max<int64_t>(2, kBlockBytes / row_bytes / kTile / 2 * 2);
    for (int64_t r0 = 0; r0 < m; r0 += pass) {
        const int64_t rows = std::min(pass, m - r0);
        const Rows x = round_rows(x_ + r0 * w.k, rows, w, terms);
        const Output y = output_for(y_ + r0 * w.n, rows, w, add);
        run_panels(Bf16Panel{x, w, y}, rows, w, prepared, block, w.kp / kChunk * kChunkWords, y.stream);
    }
}

}  // namespace tclip::amx_bf16

#else  // not x86-64 Linux: never called (no table holds it there); the reference, on the 2bit file layout

namespace tclip::amx_bf16 {
void gemm_prepared(const float* x, int64_t m, const TernaryWeights& w, const uint8_t*, float* y, bool add, int terms) {
    std::vector<float> t(size_t(m * w.n));
    (terms == 1 ? ref::gemm_bf16 : ref::gemm_exact)(x, m, w, t.data());
    for (size_t i = 0; i < t.size(); ++i) y[i] = add ? y[i] + t[i] : t[i];
}
}  // namespace tclip::amx_bf16

#endif
