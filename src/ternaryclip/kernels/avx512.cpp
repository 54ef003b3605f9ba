// AVX-512 VNNI fast path (x86-64; compiled with -mavx512f -mavx512bw -mavx512vnni and called only when
// the CPU has them, e.g. Intel Ice Lake / Sapphire Rapids, AMD Zen 4).  `vpdpbusd` multiplies 64
// unsigned codes by 64 int8 activations and adds groups of four straight into int32 lanes: no int16
// stage, no overflow bound to watch (|lane step| <= 4 * 2 * 128), half the instructions of
// maddubs + add on twice the width.  Same integer dots as ref.cpp, bit for bit, and the same float
// epilogue (gemm_driver.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "ternary_gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace tclip::avx512 {
namespace {

#include "gemm_driver.h"

inline __m256i fold(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// 4 weight rows x 4 tokens: 16 zmm accumulators, 4 activation + 4 weight loads per 16 vpdpbusd
// (AVX-512 has 32 vector registers, so the larger tile fits where AVX2's could not).
struct VnniDots {
    static constexpr int64_t kStep = 64;
    static constexpr int kTokens = 4;
    static void dots(const uint8_t* buf, int64_t kp, const int8_t* const* q, int64_t c0, int64_t c1, __m256i* out) {
        __m512i acc[4][4];
        for (auto& row : acc)
            for (auto& a : row) a = _mm512_setzero_si512();
        for (int64_t c = c0; c < c1; c += 64) {
            const __m512i x0 = _mm512_loadu_si512(q[0] + c), x1 = _mm512_loadu_si512(q[1] + c);
            const __m512i x2 = _mm512_loadu_si512(q[2] + c), x3 = _mm512_loadu_si512(q[3] + c);
            for (int r = 0; r < 4; ++r) {
                const __m512i w = _mm512_loadu_si512(buf + r * kp + c);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w, x0);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w, x1);
                acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], w, x2);
                acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], w, x3);
            }
        }
        for (int p = 0; p < 2; ++p) {
            const __m256i folded[8] = {fold(acc[0][2 * p]), fold(acc[0][2 * p + 1]), fold(acc[1][2 * p]),
                                       fold(acc[1][2 * p + 1]), fold(acc[2][2 * p]), fold(acc[2][2 * p + 1]),
                                       fold(acc[3][2 * p]), fold(acc[3][2 * p + 1])};
            out[p] = reduce8(folded);
        }
    }
};

}  // namespace

bool compiled() { return true; }

bool supports(const TernaryWeights& w) { return w.scale_cols == 1 || w.group_size % 64 == 0; }

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { int_dot_driver<VnniDots>(x, w, out); }

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { gemm_fast_driver<VnniDots>(x, w, y); }

}  // namespace tclip::avx512

#else  // not x86-64

namespace tclip::avx512 {
bool compiled() { return false; }
bool supports(const TernaryWeights&) { return false; }
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) { ref::int_dot(x, w, out); }
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) { ref::gemm_fast(x, w, y); }
}  // namespace tclip::avx512

#endif
