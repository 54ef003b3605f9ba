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

// 4 weight rows x 4 tokens: 16 zmm accumulators (AVX-512 has 32 vector registers, so the larger
// tile fits where AVX2's could not).
struct VnniDots {
    static constexpr int64_t kStep = 64;
    static constexpr int kTokens = 4;
    static void dots(const uint8_t* buf, int64_t kp, const int8_t* const* q, int64_t c0, int64_t c1, __m256i* out) {
        // The whole tile in assembly with the 16 accumulators pinned to zmm16-zmm31: as intrinsics, GCC
        // copied every destructive vpdpbusd accumulator through a spare register (32 extra moves a
        // step).  Per 64 columns: 4 weight loads and 16 vpdpbusd taking the activations from L1.
        alignas(64) __m512i acc[16];
        int64_t c = c0;
        asm volatile(
                "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
                "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
                "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
                "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
                "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
                "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
                "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
                "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
                "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
                "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
                "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
                "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
                "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
                "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
                "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
                "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
                "cmp %[end], %[c]\n\t"
                "jge 2f\n\t"
                "1:\n\t"
                "vmovdqu64 (%[b0],%[c]), %%zmm15\n\t"
                "vpdpbusd (%[q0],%[c]), %%zmm15, %%zmm16\n\t"
                "vpdpbusd (%[q1],%[c]), %%zmm15, %%zmm17\n\t"
                "vpdpbusd (%[q2],%[c]), %%zmm15, %%zmm18\n\t"
                "vpdpbusd (%[q3],%[c]), %%zmm15, %%zmm19\n\t"
                "vmovdqu64 (%[b1],%[c]), %%zmm15\n\t"
                "vpdpbusd (%[q0],%[c]), %%zmm15, %%zmm20\n\t"
                "vpdpbusd (%[q1],%[c]), %%zmm15, %%zmm21\n\t"
                "vpdpbusd (%[q2],%[c]), %%zmm15, %%zmm22\n\t"
                "vpdpbusd (%[q3],%[c]), %%zmm15, %%zmm23\n\t"
                "vmovdqu64 (%[b2],%[c]), %%zmm15\n\t"
                "vpdpbusd (%[q0],%[c]), %%zmm15, %%zmm24\n\t"
                "vpdpbusd (%[q1],%[c]), %%zmm15, %%zmm25\n\t"
                "vpdpbusd (%[q2],%[c]), %%zmm15, %%zmm26\n\t"
                "vpdpbusd (%[q3],%[c]), %%zmm15, %%zmm27\n\t"
                "vmovdqu64 (%[b3],%[c]), %%zmm15\n\t"
                "vpdpbusd (%[q0],%[c]), %%zmm15, %%zmm28\n\t"
                "vpdpbusd (%[q1],%[c]), %%zmm15, %%zmm29\n\t"
                "vpdpbusd (%[q2],%[c]), %%zmm15, %%zmm30\n\t"
                "vpdpbusd (%[q3],%[c]), %%zmm15, %%zmm31\n\t"
                "add $64, %[c]\n\t"
                "cmp %[end], %[c]\n\t"
                "jl 1b\n\t"
                "2:\n\t"
                "vmovdqu64 %%zmm16, 0(%[acc])\n\t"
                "vmovdqu64 %%zmm17, 64(%[acc])\n\t"
                "vmovdqu64 %%zmm18, 128(%[acc])\n\t"
                "vmovdqu64 %%zmm19, 192(%[acc])\n\t"
                "vmovdqu64 %%zmm20, 256(%[acc])\n\t"
                "vmovdqu64 %%zmm21, 320(%[acc])\n\t"
                "vmovdqu64 %%zmm22, 384(%[acc])\n\t"
                "vmovdqu64 %%zmm23, 448(%[acc])\n\t"
                "vmovdqu64 %%zmm24, 512(%[acc])\n\t"
                "vmovdqu64 %%zmm25, 576(%[acc])\n\t"
                "vmovdqu64 %%zmm26, 640(%[acc])\n\t"
                "vmovdqu64 %%zmm27, 704(%[acc])\n\t"
                "vmovdqu64 %%zmm28, 768(%[acc])\n\t"
                "vmovdqu64 %%zmm29, 832(%[acc])\n\t"
                "vmovdqu64 %%zmm30, 896(%[acc])\n\t"
                "vmovdqu64 %%zmm31, 960(%[acc])\n\t"
            : [c] "+r"(c)
            : [q0] "r"(q[0]), [q1] "r"(q[1]), [q2] "r"(q[2]), [q3] "r"(q[3]), [b0] "r"(buf), [b1] "r"(buf + kp),
              [b2] "r"(buf + 2 * kp), [b3] "r"(buf + 3 * kp), [end] "r"(c1), [acc] "r"(acc)
            : "cc", "memory", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
        for (int p = 0; p < 2; ++p) {
            __m256i folded[8];  // [r0t, r0t', r1t, r1t', ...] for tokens t = 2p, t' = 2p + 1
            for (int r = 0; r < 4; ++r) {
                folded[2 * r] = fold(acc[4 * r + 2 * p]);
                folded[2 * r + 1] = fold(acc[4 * r + 2 * p + 1]);
            }
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
