// Float operations of the transformer around the ternary GEMMs: LayerNorm, GELU / QuickGELU,
// multi-head attention.  Plain loops written so that the compiler vectorizes them.  This file is
// compiled twice (see CMakeLists.txt): as generic code into namespace tclip::ops_generic (the
// reference, any CPU) and with -mavx2 -mfma into tclip::ops_avx2; the dispatcher picks one at run time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ops.h"

#ifndef TCLIP_OPS_NS
#error "compile with -DTCLIP_OPS_NS=ops_generic or -DTCLIP_OPS_NS=ops_avx2"
#endif

namespace tclip::TCLIP_OPS_NS {

// exp(x) for float: Cody-Waite range reduction x = n ln2 + r and a degree-6 polynomial (Cephes expf),
// relative error ~1e-7; branch-free so that loops calling it vectorize (libm's expf does not).
static inline float exp_approx(float x) {
    x = std::min(88.3762626647949f, std::max(-87.3365447504019f, x));
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = (int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// erf(x) as x P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float beyond), max abs error ~1e-7.
static inline float erf_approx(float x) {
    x = std::min(4.0f, std::max(-4.0f, x));
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

void layer_norm(const float* x, int64_t m, int64_t d, const float* w, const float* b, float eps, float* y) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
        const float* xr = x + i * d;
        float* yr = y + i * d;
        float sum = 0.0f;
        for (int64_t j = 0; j < d; ++j) sum += xr[j];
        const float mean = sum / float(d);
        float var = 0.0f;
        for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
        const float inv = 1.0f / std::sqrt(var / float(d) + eps);
        for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
    }
}

void gelu(float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118654752f));
}

void quick_gelu(float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + exp_approx(-1.702f * x[i]));
}

// qkv [batch, t, 3 * width] (q | k | v, heads split inside each) -> out [batch, t, width].
void attention(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal,
                      float* out) {
    const int64_t hd = width / heads;
    const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel
    {
        std::vector<float> q(static_cast<size_t>(t * hd)), kt(static_cast<size_t>(hd * t)), v(static_cast<size_t>(t * hd));
        std::vector<float> s(static_cast<size_t>(t)), o(static_cast<size_t>(hd));
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; ++bh) {
            const int64_t bi = bh / heads, h = bh % heads;
            const float* base = qkv + bi * t * 3 * width + h * hd;
            for (int64_t i = 0; i < t; ++i) {
                const float* row = base + i * 3 * width;
                for (int64_t c = 0; c < hd; ++c) {
                    q[size_t(i * hd + c)] = row[c] * scale;
                    kt[size_t(c * t + i)] = row[width + c];
                    v[size_t(i * hd + c)] = row[2 * width + c];
                }
            }
            for (int64_t i = 0; i < t; ++i) {
                const int64_t keys = causal ? i + 1 : t;
                float* sp = s.data();
                std::fill(sp, sp + keys, 0.0f);
                for (int64_t c = 0; c < hd; ++c) {
                    const float qc = q[size_t(i * hd + c)];
                    const float* kr = kt.data() + c * t;
                    for (int64_t j = 0; j < keys; ++j) sp[j] += qc * kr[j];
                }
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = 0; j < keys; ++j) mx = std::max(mx, sp[j]);
                float sum = 0.0f;
                for (int64_t j = 0; j < keys; ++j) {
                    sp[j] = exp_approx(sp[j] - mx);
                    sum += sp[j];
                }
                const float inv = 1.0f / sum;
                float* op = o.data();
                std::fill(op, op + hd, 0.0f);
                for (int64_t j = 0; j < keys; ++j) {
                    const float p = sp[j] * inv;
                    const float* vr = v.data() + j * hd;
                    for (int64_t c = 0; c < hd; ++c) op[c] += p * vr[c];
                }
                std::memcpy(out + (bi * t + i) * width + h * hd, op, size_t(hd) * sizeof(float));
            }
        }
    }
}

}  // namespace tclip::TCLIP_OPS_NS
