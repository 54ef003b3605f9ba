// Multi-head attention with AVX512-BF16 `vdpbf16ps`: the fast mode's attention on CPUs that have the
// instruction but no AMX tiles (AMD Zen 4 and later, Intel Cooper Lake), and the AMX attention's fallback.
// Compiled with -mavx512bf16 and the AVX-512 flags on x86-64 Linux; elsewhere, on a CPU without it, and
// for head widths that are not a multiple of 32, the float32 attention runs.
//
// Why: on the AVX-512 VNNI path the two attention products are ~22% of a ViT-B/16 image.  One
// vdpbf16ps does 32 multiply-adds (16 lanes x a pair of bf16), twice an FMA of float32 lanes, and its
// operands are half as many bytes.  The numbers are attention_amx.cpp's definition: Q (scaled), K, V and
// the softmax weights P rounded to bf16, the products exact, the sums, the softmax and the output float32
// (only the order of the float32 sums differs from the tiles').
//
// Per (sample, head), spread over threads: the head gathered into attention_bf16_head.inc's layout, whose
// 64-byte lines are exactly the vectors vdpbf16ps takes (16 keys x a pair of dims; 16 dims x a pair of
// keys).  Then per 16 queries: the scores 4 queries x 4 key lines at a time (16 accumulators, a query's
// pair of dims broadcast), the shared softmax writing P as bf16, and P V 4 queries x up to 4 dim lines at a
// time, stored straight to the output rows.
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

namespace tclip::ops_avx512bf16 {
namespace {

using avx512_math::exp16;

constexpr int kTile = 16;      // lines of a block; keys (scores) or dims (values) of a line
constexpr int64_t kLine = 32;  // bf16 values in a 64-byte line
constexpr int kRows = 4;       // queries per register block

#include "x86/attention_bf16_head.inc"

// The pair of bf16 at p, in every 32-bit lane.
inline __m512bh pair_everywhere(const uint16_t* p) {
    uint32_t pair;
    std::memcpy(&pair, p, sizeof pair);
    return (__m512bh)_mm512_set1_epi32(int(pair));
}

inline __m512bh line(const uint16_t* block, int64_t l) { return (__m512bh)_mm512_loadu_si512(block + l * 2 * kTile); }

// Scores of queries [q0, q0 + 4) against key blocks [kt, kt + Blocks) into h.s rows r0.. (16 keys a block).
template <int Blocks>
void scores(Head& h, int64_t q0, int r0, int64_t kt) {
    __m512 acc[kRows][Blocks];
    for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t d = 0; d < h.hd / kLine; ++d) {
        const uint16_t* k[Blocks];
        for (int b = 0; b < Blocks; ++b) k[b] = h.k_tile(kt + b, d);
        const uint16_t* q = h.q.data() + (q0 + r0) * h.hd + d * kLine;
        for (int64_t l = 0; l < kTile; ++l) {
            __m512bh keys[Blocks];
            for (int b = 0; b < Blocks; ++b) keys[b] = line(k[b], l);
            for (int r = 0; r < kRows; ++r) {
                const __m512bh query = pair_everywhere(q + r * h.hd + 2 * l);
                for (int b = 0; b < Blocks; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], query, keys[b]);
            }
        }
    }
    for (int r = 0; r < kRows; ++r)
        for (int b = 0; b < Blocks; ++b) _mm512_storeu_ps(h.s.data() + (r0 + r) * h.tp + (kt + b) * kTile, acc[r][b]);
}

// Output rows of queries [q0 + r0, +4) over dim blocks [dt, dt + Blocks) = P V over key steps [0, steps):
// written to out (row i of the head at out + i * width), rows past the tokens dropped.
template <int Blocks>
void weighted_values(const Head& h, int64_t q0, int r0, int64_t steps, int64_t dt, float* out, int64_t width,
                     bool stream) {
    __m512 acc[kRows][Blocks];
    for (auto& row : acc)
        for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t ks = 0; ks < steps; ++ks) {
        const uint16_t* v[Blocks];
        for (int b = 0; b < Blocks; ++b) v[b] = h.v_tile(ks, dt + b);
        const uint16_t* p = h.p.data() + r0 * h.tp + ks * kLine;
        for (int64_t l = 0; l < kTile; ++l) {
            __m512bh values[Blocks];
            for (int b = 0; b < Blocks; ++b) values[b] = line(v[b], l);
            for (int r = 0; r < kRows; ++r) {
                const __m512bh weights = pair_everywhere(p + r * h.tp + 2 * l);
                for (int b = 0; b < Blocks; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], weights, values[b]);
            }
        }
    }
    for (int r = 0; r < kRows && q0 + r0 + r < h.t; ++r) {
        float* dst = out + (q0 + r0 + r) * width + dt * kTile;
        for (int b = 0; b < Blocks; ++b) {
            if (stream)
                _mm512_stream_ps(dst + b * kTile, acc[r][b]);
            else
                _mm512_storeu_ps(dst + b * kTile, acc[r][b]);
        }
    }
}

// Queries [q0, q0 + 16) of one head into out (row i of the head at out + i * width).
void query_block(Head& h, int64_t q0, bool causal, float* out, int64_t width) {
    const int64_t seen = causal ? std::min(h.tp, (q0 + kTile + kLine - 1) / kLine * kLine) : h.tp;
    const int64_t rows = std::min<int64_t>(kTile, h.t - q0);
    for (int r0 = 0; r0 < rows; r0 += kRows) {
        int64_t kt = 0;
        for (; kt + 4 <= seen / kTile; kt += 4) scores<4>(h, q0, r0, kt);
        if (seen / kTile - kt == 2) scores<2>(h, q0, r0, kt);  // seen is a multiple of 32 keys
    }
    for (int r = 0; r < kTile; ++r) {
        const int64_t query = q0 + r, keys = query >= h.t ? 0 : causal ? query + 1 : h.t;
        h.softmax_row(r, keys, seen);
    }
    // Whole-line stores that skip the read for ownership where the rows allow (as attention_amx.cpp).
    const bool stream = reinterpret_cast<uintptr_t>(out) % 64 == 0 && width % 16 == 0;
    for (int r0 = 0; r0 < rows; r0 += kRows) {
        int64_t dt = 0;
        for (; dt + 4 <= h.hd / kTile; dt += 4) weighted_values<4>(h, q0, r0, seen / kLine, dt, out, width, stream);
        if (h.hd / kTile - dt == 2) weighted_values<2>(h, q0, r0, seen / kLine, dt, out, width, stream);
    }
}

}  // namespace

void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    if (!cpu_features().avx512_bf16 || (width / heads) % kLine != 0)
        return ops_avx512::attention(qkv, batch, t, width, heads, causal, out);
    run_heads(
        qkv, batch, t, width, heads, causal, out, query_block, [] {}, [] {});
}

}  // namespace tclip::ops_avx512bf16

#else  // not x86-64 Linux

namespace tclip::ops_avx512bf16 {
void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out) {
    ops_generic::attention(qkv, batch, t, width, heads, causal, out);
}
}  // namespace tclip::ops_avx512bf16

#endif
