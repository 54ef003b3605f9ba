// AVX-VNNI fast path (x86-64): avx2_fast.inc's GEMM (the AVX2 path's tiles, epilogue and drivers) with
// its integer dots done by `vpdpbusd` on ymm registers, over avx2.cpp's prepared layout (avx2::prepare).
// The CPUs most home servers run have this and no AVX-512: Intel Alder Lake-N (N100, N305), 12th-14th gen
// Core, Core Ultra; also Sapphire Rapids.  Zen 3 / Zen 4 and qemu 7.2 do not run it.
//
// One source, compiled twice (CMakeLists.txt):
//   - namespace avxvnni: with -mavxvnni, the VEX-encoded instruction (CPUID.(EAX=7,ECX=1):EAX bit 4);
//   - namespace avxvnni_emulated (TCLIP_VNNI_EMULATED): AVX2 only, each vpdpbusd replaced by its exact
//     emulation below, so that the very same kernel is tested bitwise against the reference on any AVX2
//     CPU (impl="avxvnni_emulated", which "auto" never picks).
//
// Per 4 columns of a 16-row x 6-token tile: two 32-byte weight loads, six `vpbroadcastd` of a token's
// 4 int8 activations and twelve vpdpbusd (8 rows x 4 codes each, straight into int32), where the AVX2
// path needs a vpmaddubsw and a vpaddw per 8 x 4 and an int16 flush every 128 columns.
//
// int32 bound: one vpdpbusd lane adds u_a q_a + ... + u_d q_d with u <= 2 and |q| <= 128, so |sum| <=
// 2 * 128 * K, below 2^31 for K <= 2^23 (the bindings refuse a larger K).  vpdpbusd wraps, it does not
// saturate; integer sums in any order are then the same bits, so the dots equal ref.cpp's exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/pool.h"
#include "x86/x86.h"

#if defined(TCLIP_VNNI_EMULATED)
#define TCLIP_VNNI_NS avxvnni_emulated
#else
#define TCLIP_VNNI_NS avxvnni
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if !defined(TCLIP_VNNI_EMULATED) && !defined(__AVXVNNI__)
#error "avxvnni.cpp: build it with -mavxvnni, or define TCLIP_VNNI_EMULATED"
#endif

namespace tclip::TCLIP_VNNI_NS {
namespace {

#include "core/tile_driver.inc"
#include "x86/avx2_fast.inc"

#if defined(TCLIP_VNNI_EMULATED)
// vpdpbusd exactly, in AVX2: acc + sum over the 4 bytes of each int32 lane of u (unsigned) x s (signed),
// wrapping.  Each product is within [-32640, 32385], so the bytes widened to int16 (u zero-extended, s
// sign-extended, even and odd bytes apart) multiply exactly in vpmaddwd, whose pair sums (|.| <= 65280)
// never saturate; the lane's two pair sums and acc then add modulo 2^32 as the instruction's do.  Exact
// for every byte value (tests/test_avxvnni.py checks it against a scalar model and, where the CPU has
// AVX512-VNNI, against the instruction itself).  Where maddubs would do (u <= 2 and |s| <= 128 as in the
// GEMM, pair sums far from int16's limits) this is still the general form: the emulation must not depend
// on what the kernel feeds it.
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
    const __m256i low_bytes = _mm256_set1_epi16(0x00ff);
    const __m256i u_even = _mm256_and_si256(u, low_bytes), u_odd = _mm256_srli_epi16(u, 8);
    const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
    const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd));
    return _mm256_add_epi32(acc, sums);
}
#else
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
#endif

// A token's 4 int8 activations at p in every int32 lane.
inline __m256i broadcast4(const int8_t* p) {
    int32_t four;
    std::memcpy(&four, p, 4);
    return _mm256_set1_epi32(four);
}

struct VnniDots {
    // 16 rows x 6 tokens: 12 accumulators, the two weight vectors and a broadcast, 15 of the 16 ymm
    // registers (no temporaries: vpdpbusd adds in place).  Four steps a loop turn, as the AVX2 kernel.
    // Named accumulators and a macro, not an array and a lambda: with those GCC kept one accumulator on
    // the stack and stored the others back to it every turn.
    static void tile(const uint32_t* wa, const uint32_t* wb, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1,
                     __m256i* acc) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
                a9 = a0, a10 = a0, a11 = a0;
        const __m256i* pa = reinterpret_cast<const __m256i*>(wa) + k0 / 4;
        const __m256i* pb = reinterpret_cast<const __m256i*>(wb) + k0 / 4;
        const int8_t *p0 = q0 + k0, *p3 = p0 + 3 * kp;
        const int64_t kp2 = 2 * kp;
#define TCLIP_VNNI_TOKEN(P, LO, HI)      \
    {                                    \
        const __m256i b = broadcast4(P); \
        LO = dpbusd(LO, x, b);           \
        HI = dpbusd(HI, y, b);           \
    }
#define TCLIP_VNNI_STEP(S)                                                            \
    {                                                                                 \
        const __m256i x = _mm256_loadu_si256(pa + S), y = _mm256_loadu_si256(pb + S); \
        TCLIP_VNNI_TOKEN(p0 + 4 * S, a0, a1)                                          \
        TCLIP_VNNI_TOKEN(p0 + kp + 4 * S, a2, a3)                                     \
        TCLIP_VNNI_TOKEN(p0 + kp2 + 4 * S, a4, a5)                                    \
        TCLIP_VNNI_TOKEN(p3 + 4 * S, a6, a7)                                          \
        TCLIP_VNNI_TOKEN(p3 + kp + 4 * S, a8, a9)                                     \
        TCLIP_VNNI_TOKEN(p3 + kp2 + 4 * S, a10, a11)                                  \
    }
        int64_t c = k0;
        for (; c + 16 <= k1; c += 16, pa += 4, pb += 4, p0 += 16, p3 += 16) {
            TCLIP_VNNI_STEP(0)
            TCLIP_VNNI_STEP(1)
            TCLIP_VNNI_STEP(2)
            TCLIP_VNNI_STEP(3)
        }
        for (; c < k1; c += 4, ++pa, ++pb, p0 += 4, p3 += 4) TCLIP_VNNI_STEP(0)
#undef TCLIP_VNNI_STEP
#undef TCLIP_VNNI_TOKEN
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5;
        acc[6] = a6, acc[7] = a7, acc[8] = a8, acc[9] = a9, acc[10] = a10, acc[11] = a11;
    }

    // Tiles consecutive prepared tiles (8 rows each) x T <= 8 tokens into acc[r * T + t], straight from the
    // packed bytes: per 16 columns and tile one load and four shift-and-masks, then per token and step a
    // broadcast (shared by the tiles) and a vpdpbusd a tile.  With few tokens each keeps several partial sums
    // (at least 8 chains in all where it can): one chain a token would wait on vpdpbusd's latency (about 5
    // cycles) at every step.
    template <int T, int Tiles>
    static void prepared(const uint8_t* tile, const int8_t* q0, int64_t kp, int64_t k0, int64_t k1, __m256i* acc) {
        constexpr int kSums = T * Tiles, kParts = kSums == 1 ? 4 : kSums <= 4 ? 8 / kSums : 1;
        const int64_t tile_bytes = 2 * kp;  // 8 rows of kp / 4 bytes
        const __m256i mask = _mm256_set1_epi8(3);
        __m256i part[kParts][kSums];
        for (auto& p : part)
            for (auto& v : p) v = _mm256_setzero_si256();
        const auto step = [&](const __m256i* wv, int64_t c, int p) {
            for (int t = 0; t < T; ++t) {
                const __m256i q = broadcast4(q0 + t * kp + c);
                for (int r = 0; r < Tiles; ++r) part[p][r * T + t] = dpbusd(part[p][r * T + t], wv[r], q);
            }
        };
        const auto chunk = [&](int r, int64_t c) {
            return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + r * tile_bytes + (c / 16) * 32));
        };
        const auto single = [&](int64_t c) {  // one 4-column step outside a whole 16-column chunk
            const __m128i shift = _mm_cvtsi32_si128(int(2 * ((c / 4) % 4)));
            __m256i wv[Tiles];
            for (int r = 0; r < Tiles; ++r) wv[r] = _mm256_and_si256(_mm256_srl_epi16(chunk(r, c), shift), mask);
            step(wv, c, 0);
        };
        int64_t c = k0;
        for (; c < k1 && c % 16 != 0; c += 4) single(c);
        const int64_t whole = c + (k1 - c) / 16 * 16;
        for (const uint8_t* wp = tile + (c / 16) * 32; c < whole; c += 16, wp += 32) {
            __m256i v[Tiles], wv[Tiles];
            for (int r = 0; r < Tiles; ++r)
                v[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + r * tile_bytes));
            for (int s = 0; s < 4; ++s) {
                for (int r = 0; r < Tiles; ++r) wv[r] = _mm256_and_si256(_mm256_srli_epi16(v[r], 2 * s), mask);
                step(wv, c + 4 * s, s % kParts);
            }
        }
        for (; c < k1; c += 4) single(c);
        for (int i = 0; i < kSums; ++i) {
            acc[i] = part[0][i];
            for (int p = 1; p < kParts; ++p) acc[i] = _mm256_add_epi32(acc[i], part[p][i]);
        }
    }
};

}  // namespace

bool compiled() { return true; }

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) {
    int_dots_file_layout<VnniDots>(x, w, out);
}

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { fast_file_layout<VnniDots>(x, w, y); }

void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y) {
    fast_prepared<VnniDots>(x, w, prepared, y);
}

void dpbusd_vectors(const int32_t* acc, const uint8_t* u, const int8_t* s, int64_t vectors, int32_t* out) {
    for (int64_t v = 0; v < vectors; ++v) {
        const auto load = [&](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * v),
                            dpbusd(load(acc + 8 * v), load(u + 32 * v), load(s + 32 * v)));
    }
}

#if defined(TCLIP_VNNI_EMULATED)
// The instruction itself in its EVEX form (AVX512-VNNI + VL: the same operation on ymm registers), for the
// emulation's test on CPUs with AVX-512 VNNI and no AVX-VNNI (Zen 4, Ice Lake).  Called only there.
__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) void dpbusd_evex_vectors(const int32_t* acc,
                                                                                     const uint8_t* u, const int8_t* s,
                                                                                     int64_t vectors, int32_t* out) {
    for (int64_t v = 0; v < vectors; ++v) {
        const auto load = [&](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * v),
                            _mm256_dpbusd_epi32(load(acc + 8 * v), load(u + 32 * v), load(s + 32 * v)));
    }
}
#endif

}  // namespace tclip::TCLIP_VNNI_NS

#else  // not x86-64: no AVX-VNNI path; the dispatcher never calls these.

namespace tclip::TCLIP_VNNI_NS {
bool compiled() { return false; }
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { ref::int_dot(x, w, out); }
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t*, float* y) {
    ref::gemm_fast(x, w, y);
}
void dpbusd_vectors(const int32_t*, const uint8_t*, const int8_t*, int64_t, int32_t*) {}
#if defined(TCLIP_VNNI_EMULATED)
void dpbusd_evex_vectors(const int32_t*, const uint8_t*, const int8_t*, int64_t, int32_t*) {}
#endif
}  // namespace tclip::TCLIP_VNNI_NS

#endif
