// Scalar reference kernels: the definition every SIMD path is tested against.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/ternary_gemm.h"

namespace tclip::ref {

static inline int code_at(const uint8_t* row, int64_t col) {
    const int64_t block = col / kBlock, within = col % kBlock;
    const uint8_t byte = row[block * 32 + within % 32];
    return int((byte >> (2 * (within / 32))) & 3) - 1;  // t = u - 1
}

void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum) {
    for (int64_t i = 0; i < m; ++i) {
        const float* xr = x + i * k;
        int8_t* qr = q + i * kp;
        float absmax = 0.0f;
        for (int64_t j = 0; j < k; ++j) absmax = std::max(absmax, std::fabs(xr[j]));
        const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
        xscale[i] = absmax / 127.0f;
        for (int64_t j = 0; j < k; ++j) {
            float v = std::nearbyint(xr[j] * inv);
            qr[j] = int8_t(std::min(127.0f, std::max(-127.0f, v)));
        }
        for (int64_t j = k; j < kp; ++j) qr[j] = 0;
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t end = g + 1 == groups ? k : (g + 1) * group_size;
            int32_t s = 0;
            for (int64_t j = g * group_size; j < end; ++j) s += qr[j];
            qsum[i * groups + g] = s;
        }
    }
}

void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) {
    const int64_t row_bytes = w.kp / 4;
    for (int64_t i = 0; i < x.m; ++i) {
        const int8_t* qr = x.q + i * x.kp;
        for (int64_t n = 0; n < w.n; ++n) {
            const uint8_t* wr = w.packed + n * row_bytes;
            for (int64_t g = 0; g < w.scale_cols; ++g) {
                int32_t acc = 0;
                for (int64_t j = w.group_begin(g); j < w.group_end(g); ++j) acc += code_at(wr, j) * int32_t(qr[j]);
                out[(i * w.n + n) * w.scale_cols + g] = acc;
            }
        }
    }
}

void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    const int64_t row_bytes = w.kp / 4;
    for (int64_t i = 0; i < x.m; ++i) {
        const int8_t* qr = x.q + i * x.kp;
        for (int64_t n = 0; n < w.n; ++n) {
            const uint8_t* wr = w.packed + n * row_bytes;
            float acc = 0.0f;
            for (int64_t g = 0; g < w.scale_cols; ++g) {
                int32_t dot = 0;
                for (int64_t j = w.group_begin(g); j < w.group_end(g); ++j) dot += code_at(wr, j) * int32_t(qr[j]);
                acc += w.scale(n, g) * float(dot);
            }
            y[i * w.n + n] = acc * x.xscale[i] + (w.bias ? w.bias[n] : 0.0f);
        }
    }
}

void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y) {
    const int64_t row_bytes = w.kp / 4;
    for (int64_t i = 0; i < m; ++i) {
        const float* xr = x + i * w.k;
        for (int64_t n = 0; n < w.n; ++n) {
            const uint8_t* wr = w.packed + n * row_bytes;
            float acc = 0.0f;
            for (int64_t g = 0; g < w.scale_cols; ++g) {
                float dot = 0.0f;
                for (int64_t j = w.group_begin(g); j < w.group_end(g); ++j) dot += float(code_at(wr, j)) * xr[j];
                acc += w.scale(n, g) * dot;
            }
            y[i * w.n + n] = acc + (w.bias ? w.bias[n] : 0.0f);
        }
    }
}

float round_bf16(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    // selects rather than branches, so that the loop below vectorizes (mode "bf16"'s fallback rounds every
    // activation with it); an infinity goes through the rounding add unchanged
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u, subnormal = (bits & 0x7f800000u) == 0;
    bits = nan ? bits | 0x00400000u : subnormal ? bits & 0x80000000u : bits + 0x7fffu + ((bits >> 16) & 1u);
    bits &= 0xffff0000u;  // nearest, ties to even; NaNs quiet, payload truncated; zeros of the subnormals' sign
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

void round_bf16(const float* x, int64_t count, float* out) {
    for (int64_t i = 0; i < count; ++i) out[i] = round_bf16(x[i]);
}

void gemm_bf16(const float* x, int64_t m, const TernaryWeights& w, float* y) {
    std::vector<float> rounded(size_t(m * w.k));
    round_bf16(x, m * w.k, rounded.data());
    gemm_exact(rounded.data(), m, w, y);
}

}  // namespace tclip::ref
