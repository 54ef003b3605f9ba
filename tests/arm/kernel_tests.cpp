// aarch64 kernel tests, run under qemu-user by run.sh (`make test-arm64`): every aarch64 table this
// CPU offers against the scalar reference, through the same dispatch entry points the Python
// bindings call.  Integer dots, fast-path outputs and quantization must be bitwise equal; the float
// ops within a relative tolerance.  Prints one line per failure and ends with "N passed, M failed".
//
// Usage: kernel_tests EXPECTED   where EXPECTED is the widest table the emulated CPU should get
// ("neon", "dotprod" or "i8mm"): hwcap detection is checked against it, and every wider table must
// be refused with std::invalid_argument (never run: no illegal instruction).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ternary_gemm.h"

using namespace tclip;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string& what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("FAIL %s\n", what.c_str());
    }
}

std::mt19937 rng(1234);

// A ternary matrix in the 2bit file layout (padding codes u = 1), with scales and a bias.
struct Weights {
    std::vector<uint8_t> packed;
    std::vector<float> scales, bias;
    TernaryWeights view{};
};

Weights make_weights(int64_t n, int64_t k, int64_t group_size, bool per_row, bool all_twos = false) {
    Weights w;
    const int64_t kp = padded_k(k), groups = (k + group_size - 1) / group_size;
    w.packed.assign(size_t(n * kp / 4), 0);
    std::uniform_int_distribution<int> code(0, 2);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < kp; ++c) {
            const int u = c >= k ? 1 : all_twos ? 2 : code(rng);
            const int64_t block = c / kBlock, within = c % kBlock;
            w.packed[size_t(r * kp / 4 + block * 32 + within % 32)] |= uint8_t(u << (2 * (within / 32)));
        }
    std::uniform_real_distribution<float> unit(0.01f, 1.0f);
    const int64_t rows = per_row ? n : 1;
    for (int64_t i = 0; i < rows * groups; ++i) w.scales.push_back(unit(rng));
    for (int64_t i = 0; i < n; ++i) w.bias.push_back(unit(rng) - 0.5f);
    w.view = {w.packed.data(), n, k, kp, w.scales.data(), rows, groups, group_size, w.bias.data()};
    return w;
}

std::vector<float> random_floats(size_t count, float spread = 3.0f) {
    std::normal_distribution<float> normal(0.0f, spread);
    std::vector<float> x(count);
    for (auto& v : x) v = normal(rng);
    return x;
}

// Quantized activations as the bindings size them (rows padded to a multiple of kTokenPad).
struct Quantized {
    std::vector<int8_t> q;
    std::vector<float> xscale;
    std::vector<int32_t> qsum;
    QuantizedRows view{};
};

Quantized quantize(const KernelTable& table, const std::vector<float>& x, int64_t m, const TernaryWeights& w) {
    Quantized out;
    out.q.assign(size_t(padded_rows(m) * w.kp), 0);
    out.xscale.assign(size_t(m), 0.0f);
    out.qsum.assign(size_t(m * w.scale_cols), 0);
    table.quantize_rows(x.data(), m, w.k, w.kp, w.group_size, w.scale_cols, out.q.data(), out.xscale.data(),
                        out.qsum.data());
    out.view = {out.q.data(), out.xscale.data(), out.qsum.data(), m, w.kp};
    return out;
}

std::string shape_name(const char* impl, int64_t m, int64_t n, int64_t k, int64_t gs, bool per_row) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s m=%lld n=%lld k=%lld group=%lld %s", impl, (long long)m, (long long)n,
                  (long long)k, (long long)gs, per_row ? "per-row" : "per-tensor");
    return buf;
}

// int_dot and gemm_fast of `impl` bitwise equal to the reference on one shape.
void check_gemm(const std::string& impl, int64_t m, int64_t n, int64_t k, int64_t gs, bool per_row) {
    Weights w = make_weights(n, k, gs, per_row);
    const auto x = random_floats(size_t(m * k));
    const KernelTable& ref = pick("ref", Op::gemm_fast);
    const KernelTable& simd = pick(impl, Op::gemm_fast, &w.view);
    const Quantized qa = quantize(ref, x, m, w.view);
    std::vector<int32_t> dots_ref(size_t(m * n * w.view.scale_cols)), dots(dots_ref.size(), -7);
    ref.int_dot(qa.view, w.view, dots_ref.data());
    pick(impl, Op::int_dot, &w.view).int_dot(qa.view, w.view, dots.data());
    const std::string name = shape_name(impl.c_str(), m, n, k, gs, per_row);
    check(dots == dots_ref, "int_dot " + name);
    std::vector<float> y_ref(size_t(m * n)), y(size_t(m * n), -7.0f);
    ref.gemm_fast(qa.view, w.view, y_ref.data());
    simd.gemm_fast(qa.view, w.view, y.data());
    check(std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)) == 0, "gemm_fast " + name);
}

void check_quantize(const std::string& impl, int64_t m, int64_t k, int64_t gs, bool specials) {
    Weights w = make_weights(1, k, gs, false);
    auto x = random_floats(size_t(m * k));
    if (specials && k > 3) {  // zero row, NaN, infinity, exact .5 ties
        std::fill(x.begin(), x.begin() + k, 0.0f);
        if (m > 1) x[size_t(k + 1)] = std::numeric_limits<float>::quiet_NaN();
        if (m > 2) x[size_t(2 * k + 2)] = std::numeric_limits<float>::infinity();
        if (m > 3)
            for (int64_t j = 0; j < k; ++j) x[size_t(3 * k + j)] = float(j % 255) - 127.0f + 0.5f * (j % 2);
    }
    const Quantized a = quantize(pick("ref", Op::quantize), x, m, w.view);
    const Quantized b = quantize(pick(impl, Op::quantize), x, m, w.view);
    const bool same = a.q == b.q && a.qsum == b.qsum &&
                      std::memcmp(a.xscale.data(), b.xscale.data(), a.xscale.size() * sizeof(float)) == 0;
    check(same, "quantize_rows " + impl + " m=" + std::to_string(m) + " k=" + std::to_string(k) +
                    (specials ? " (zero/NaN/inf/ties)" : ""));
}

// The int16 stage of the baseline path at its bound: every code 2, every activation -128.
void check_extremes(const std::string& impl) {
    const int64_t m = 9, n = 11, k = 1000;
    Weights w = make_weights(n, k, k, false, true);
    std::vector<int8_t> q(size_t(padded_rows(m) * w.view.kp), 0);
    for (int64_t i = 0; i < m; ++i) std::fill(q.begin() + i * w.view.kp, q.begin() + i * w.view.kp + k, int8_t(-128));
    std::vector<int32_t> qsum(size_t(m), int32_t(-128 * k));
    std::vector<float> xscale(size_t(m), 1.0f);
    const QuantizedRows rows{q.data(), xscale.data(), qsum.data(), m, w.view.kp};
    std::vector<int32_t> got(size_t(m * n), 0);
    pick(impl, Op::int_dot, &w.view).int_dot(rows, w.view, got.data());
    bool ok = true;
    for (int32_t v : got) ok = ok && v == -128 * k;  // t = 1 everywhere
    check(ok, "int_dot " + impl + " at the int16 bound (u = 2, q = -128)");
}

float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float worst = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / (1.0f + std::fabs(b[i])));
    return worst;
}

void check_float_ops(const std::string& impl) {
    const KernelTable& ref = pick("ref", Op::float_ops);
    const KernelTable& simd = pick(impl, Op::float_ops);
    for (int64_t d : {7, 64, 100}) {
        const int64_t m = 5;
        const auto x = random_floats(size_t(m * d)), g = random_floats(size_t(d), 1.0f), b = random_floats(size_t(d), 1.0f);
        std::vector<float> y_ref(x.size()), y(x.size());
        ref.layer_norm(x.data(), m, d, g.data(), b.data(), 1e-5f, y_ref.data());
        simd.layer_norm(x.data(), m, d, g.data(), b.data(), 1e-5f, y.data());
        check(max_rel_diff(y, y_ref) < 1e-5f, "layer_norm " + impl + " d=" + std::to_string(d));
    }
    for (bool quick : {false, true}) {
        auto a = random_floats(1003), c = a;
        (quick ? ref.quick_gelu : ref.gelu)(a.data(), int64_t(a.size()));
        (quick ? simd.quick_gelu : simd.gelu)(c.data(), int64_t(c.size()));
        check(max_rel_diff(c, a) < 1e-5f, std::string(quick ? "quick_gelu " : "gelu ") + impl);
    }
    for (int64_t t : {1, 7, 50})
        for (bool causal : {false, true}) {
            const int64_t batch = 2, width = 64, heads = 4;
            const auto qkv = random_floats(size_t(batch * t * 3 * width), 1.0f);
            std::vector<float> o_ref(size_t(batch * t * width)), o(o_ref.size());
            ref.attention(qkv.data(), batch, t, width, heads, causal, o_ref.data());
            simd.attention(qkv.data(), batch, t, width, heads, causal, o.data());
            check(max_rel_diff(o, o_ref) < 1e-5f,
                  "attention " + impl + " t=" + std::to_string(t) + (causal ? " causal" : ""));
        }
}

bool refused(const std::string& impl) {
    try {
        pick(impl, Op::gemm_fast);
    } catch (const std::invalid_argument&) {
        return true;
    }
    return false;
}

void check_gemm_shapes(const std::string& impl) {
    for (int64_t m = 1; m <= 17; ++m) check_gemm(impl, m, 2 * m + 1, 100 + 29 * m, m % 3 == 0 ? 12 : 100 + 29 * m, m % 2 == 0);
    const int64_t ns[] = {1, 9, 33}, ks[] = {1, 4, 20, 128, 131, 300, 517};
    for (int64_t n : ns)
        for (int64_t k : ks)
            for (int64_t gs : {k, int64_t(4), int64_t(20), int64_t(64)})
                if (gs <= k) check_gemm(impl, n == 9 ? 17 : 5, n, k, gs, gs != k);
    check_gemm(impl, 40, 9, 16000, 16000, true);  // several token blocks (the activations of 16 rows fill L2)
    // Groups off the 4-column grid: a forced table declines, "auto" falls back to the reference.
    Weights odd = make_weights(5, 70, 7, true);
    bool declined = false;
    try {
        pick(impl, Op::gemm_fast, &odd.view);
    } catch (const std::invalid_argument&) {
        declined = true;
    }
    check(declined && std::string(pick("auto", Op::gemm_fast, &odd.view).name) == "ref",
          impl + " declines groups of 7 columns");
}

void run_all(const std::string& expected) {
    const char* order[] = {"neon", "dotprod", "i8mm"};
    const CpuFeatures& f = cpu_features();
    std::printf("cpu: neon=%d dotprod=%d i8mm=%d (expected up to %s)\n", f.neon, f.neon_dotprod, f.neon_i8mm,
                expected.c_str());
    const bool has[] = {f.neon, f.neon_dotprod, f.neon_i8mm};
    bool reached = false;
    for (int i = 0; i < 3; ++i) {
        const bool want = !reached;
        reached = reached || expected == order[i];
        check(has[i] == want, std::string("hwcaps report ") + order[i] + (want ? " present" : " absent"));
        if (!want) {
            check(refused(order[i]), std::string("impl='") + order[i] + "' is refused on a CPU without it");
            continue;
        }
        check_quantize(order[i], 6, 300, 64, true);
        for (int64_t k : {1, 15, 16, 33, 640}) check_quantize(order[i], 5, k, 32, false);
        check_extremes(order[i]);
        check_gemm_shapes(order[i]);
        check_float_ops(order[i]);
    }
    check(std::string(pick("auto", Op::gemm_fast).name) == expected, "auto picks " + expected);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        run_all(argc > 1 ? argv[1] : "");
    } catch (const std::exception& e) {
        check(false, std::string("unexpected exception: ") + e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
