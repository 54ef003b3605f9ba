// The int8 attention's scalar reference: core/attention_int8.h's definition step by step, the bits the SIMD
// paths (x86/attention_int8_*.cpp) are tested against.  Built with -ffp-contract=off (no silent fused
// multiply-adds: the only ones are exp2_approx's explicit ones).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/attention_int8.h"

namespace tclip::ref {

namespace {

// x [count] (stride apart) -> q, returning the scale; quantize_rows' rounding.
float quantize(const float* x, int64_t count, int64_t stride, int8_t* q) {
    float absmax = 0.0f;
    for (int64_t i = 0; i < count; ++i) absmax = std::max(absmax, std::fabs(x[i * stride]));
    const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    for (int64_t i = 0; i < count; ++i) {
        const float v = std::nearbyint(x[i * stride] * inv);
        q[i] = int8_t(std::min(127.0f, std::max(-127.0f, v)));
    }
    return absmax / 127.0f;
}

}  // namespace

void attention_int8(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, int levels,
                    float* out) {
    using namespace int8_attention;
    const int64_t hd = width / heads;
    const float c = 1.0f / std::sqrt(float(hd));
    const auto rows = static_cast<size_t>(t), cells = static_cast<size_t>(t * hd);
    std::vector<int8_t> q(cells), k(cells), v(cells);  // v column-major [hd][t]
    std::vector<float> qs(rows), ks(rows), vs(static_cast<size_t>(hd)), s(rows);
    std::vector<int32_t> p(rows);
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
            const float* base = qkv + b * t * 3 * width + h * hd;
            for (int64_t i = 0; i < t; ++i) {
                qs[i] = quantize(base + i * 3 * width, hd, 1, q.data() + i * hd);
                ks[i] = quantize(base + i * 3 * width + width, hd, 1, k.data() + i * hd);
            }
            for (int64_t d = 0; d < hd; ++d) vs[d] = quantize(base + 2 * width + d, t, 3 * width, v.data() + d * t);
            for (int64_t i = 0; i < t; ++i) {
                const int64_t keys = causal ? i + 1 : t;
                const float g = (qs[i] * c) * kLog2e;
                for (int64_t j = 0; j < keys; ++j) {
                    int32_t dot = 0;
                    for (int64_t d = 0; d < hd; ++d) dot += int32_t(q[i * hd + d]) * int32_t(k[j * hd + d]);
                    s[j] = (float(dot) * ks[j]) * g;
                }
                const float m = *std::max_element(s.begin(), s.begin() + keys);
                int32_t sum = 0;
                for (int64_t j = 0; j < keys; ++j) {
                    p[j] = int32_t(std::nearbyint(exp2_approx(s[j] - m) * float(levels)));
                    sum += p[j];
                }
                const float r = 1.0f / float(sum);
                float* o = out + (b * t + i) * width + h * hd;
                for (int64_t d = 0; d < hd; ++d) {
                    int32_t acc = 0;
                    for (int64_t j = 0; j < keys; ++j) acc += p[j] * int32_t(v[d * t + j]);
                    o[d] = float(acc) * (vs[d] * r);
                }
            }
        }
    }
}

}  // namespace tclip::ref
