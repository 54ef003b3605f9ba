// The fast mode's int8 attention on CPUs without AMX (as OpenVINO's int8 CLIP runs it): Q K^T and P V as
// int8 dot products with per-row scales, the softmax in float32.  The definition, per (sample, head) of
// head width hd and scale c = 1 / sqrt(hd):
//   1. each row of Q, of K and each column (head dim) of V quantized as quantize_rows does: a = max |x|,
//      q = clamp(nearbyint(x * (127 / a)), +-127), scale a / 127 (0 and 0 where a = 0);
//   2. dot_ij = sum_d qq_id kq_jd, exact in int32;
//   3. scores in base 2: s_ij = (float(dot_ij) * ks_j) * g_i with g_i = (qs_i * c) * log2(e);
//   4. for query i's keys (all t, or j <= i when causal): m_i = max_j s_ij, e_ij = exp2_approx(s_ij - m_i)
//      (below), p_ij = nearbyint(e_ij * L), an integer in [0, L] (e = 1 at the maximum: p = L);
//   5. acc_id = sum_j p_ij vq_jd exact, out_id = float(acc_id) * (vs_d * (1 / float(sum_j p_ij))).
// So the weights a row averages with are the integers p (their own sum normalizes them), and every float
// step is elementwise: the SIMD paths give the reference's bits.  L is 255 on AVX-512 (vpdpbusd takes P as
// unsigned bytes) and 127 on AVX2 (vpmaddubsw's pairs of products must stay within int16).
#pragma once

#include <cstdint>
#include <cstring>

namespace tclip::int8_attention {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kExpFloor = -100.0f;  // 2^-100: far below the smallest weight p rounds up from (1 / 510)
// 2^f on [-1/2, 1/2]: Taylor of e^(f ln 2) to degree 4 (relative error < 5e-6, well under 1 / 255).
constexpr float kExp2C1 = 0.6931471806f, kExp2C2 = 0.2402265070f, kExp2C3 = 0.0555041087f, kExp2C4 = 0.0096181291f;

// 2^x for x <= 0: n = nearbyint(x), 2^(x - n) by the polynomial (fused multiply-adds), then n added to the
// exponent bits (x is floored at -100, so the result stays a normal float).  The SIMD paths repeat it op
// for op.
inline float exp2_approx(float x) {
    x = x < kExpFloor ? kExpFloor : x;
    const float n = __builtin_nearbyintf(x);
    const float f = x - n;  // exact
    float p = __builtin_fmaf(kExp2C4, f, kExp2C3);
    p = __builtin_fmaf(p, f, kExp2C2);
    p = __builtin_fmaf(p, f, kExp2C1);
    p = __builtin_fmaf(p, f, 1.0f);
    int32_t bits;
    std::memcpy(&bits, &p, sizeof bits);
    bits += int32_t(n) * (1 << 23);
    std::memcpy(&p, &bits, sizeof p);
    return p;
}

}  // namespace tclip::int8_attention

namespace tclip::ref {
// The definition above, scalar: qkv [batch, t, 3 * width] (q | k | v) -> out [batch, t, width]; any head width.
void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, int levels,
                    float* out);
}  // namespace tclip::ref

// The SIMD paths (x86/attention_int8_avx512.cpp: L = 255, vpdpbusd; x86/attention_int8_avx2.cpp: L = 127,
// vpmaddubsw + vpmaddwd) for head widths a multiple of 16; other widths, and a CPU without the instructions,
// run the float32 attention of their table.
namespace tclip::ops_avx512vnni {
void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out);
}
namespace tclip::ops_avx2int8 {
void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out);
}
