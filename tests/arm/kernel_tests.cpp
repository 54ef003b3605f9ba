// C++ kernel tests: every table this CPU offers against the scalar reference, through the same dispatch
// entry points the Python bindings call, and the linear layer (core/linear.h) against its separate passes.
// Integer dots, fast-path outputs and quantization must be bitwise equal, and so must a fused epilogue and
// the passes it saves; the float ops and the float GEMMs within a relative tolerance.  Prints one line per
// failure and ends with "N passed, M failed".  (Over 350 lines: one runner for both architectures.)
//
// aarch64, under qemu-user by run.sh (`make test-arm64`):  kernel_tests EXPECTED  where EXPECTED is the widest
// table the emulated CPU should get ("neon", "dotprod" or "i8mm"): hwcap detection is checked against it, and
// every wider table must be refused with std::invalid_argument (never run: no illegal instruction).
// x86-64, built by CMake (target kernel_tests) and run by tests/test_kernel_tests_cpp.py:  kernel_tests
// (each of avx2 / avx512 / amx is tested where cpu_features has it and must be refused where not).
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
#include "core/linear.h"
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
        const auto x = random_floats(size_t(m * d)), g = random_floats(size_t(d), 1.0f),
                   b = random_floats(size_t(d), 1.0f);
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
    } catch (const std::invalid_argument&) { return true; }
    return false;
}

void check_gemm_shapes(const std::string& impl) {
    for (int64_t m = 1; m <= 17; ++m)
        check_gemm(impl, m, 2 * m + 1, 100 + 29 * m, m % 3 == 0 ? 12 : 100 + 29 * m, m % 2 == 0);
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
    } catch (const std::invalid_argument&) { declined = true; }
    check(declined && std::string(pick("auto", Op::gemm_fast, &odd.view).name) == "ref",
          impl + " declines groups of 7 columns");
}

// y = act(LN?(x) W^T + b) [+ y] from separate passes: what a Linear must give whatever it fuses.
struct Passes {
    const KernelTable& ops;
    const std::vector<float> norm_weight, norm_bias;
};

std::vector<float> layer_norm_of(const Passes& p, const std::vector<float>& x, int64_t m, int64_t k) {
    std::vector<float> out(x.size());
    p.ops.layer_norm(x.data(), m, k, p.norm_weight.data(), p.norm_bias.data(), 1e-5f, out.data());
    return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The plain GEMM of a layer against the reference's (fast: bitwise; exact, bf16: the same numbers up to
// the order of the float32 sums), then every combination of LayerNorm, activation and add against the
// separate passes over the plain GEMM, bit for bit.
void check_linear_layer(const std::string& impl, const Linear& layer, Mode mode, const std::string& name,
                        const std::vector<float>& x, int64_t m, const Weights& w) {
    const TernaryWeights& tw = w.view;
    const int64_t n = tw.n, k = tw.k;
    const KernelTable& ref = pick("ref", Op::gemm_fast);
    std::vector<float> want(size_t(m * n)), got(size_t(m * n), -7.0f);
    if (mode == Mode::fast) {
        const Quantized q = quantize(ref, x, m, tw);
        ref.gemm_fast(q.view, tw, want.data());
    } else {
        (mode == Mode::exact ? ref::gemm_exact : ref::gemm_bf16)(x.data(), m, tw, want.data());
    }
    layer.run(x.data(), m, got.data());
    if (mode == Mode::fast)
        check(same_bits(got, want), "linear " + name + " = ref");
    else
        check(max_rel_diff(got, want) < 1e-6f * float(k), "linear " + name + " ~ ref");

    const Passes passes{pick(impl, Op::float_ops), random_floats(size_t(k), 1.0f), random_floats(size_t(k), 1.0f)};
    const auto start = random_floats(size_t(m * n));
    const std::vector<float> normalized = layer_norm_of(passes, x, m, k);
    for (bool norm : {false, true})
        for (Activation act : {Activation::none, Activation::gelu, Activation::quick_gelu})
            for (bool add : {false, true}) {
                std::vector<float> expected(size_t(m * n));
                layer.run((norm ? normalized : x).data(), m, expected.data());
                if (act == Activation::gelu) passes.ops.gelu(expected.data(), m * n);
                if (act == Activation::quick_gelu) passes.ops.quick_gelu(expected.data(), m * n);
                if (add)
                    for (size_t i = 0; i < expected.size(); ++i) expected[i] = start[i] + expected[i];
                LinearOptions options{act, add};
                if (norm) {
                    options.norm_weight = passes.norm_weight.data();
                    options.norm_bias = passes.norm_bias.data();
                    options.norm_eps = 1e-5f;
                }
                std::vector<float> y = add ? start : std::vector<float>(size_t(m * n), -7.0f);
                layer.run(x.data(), m, y.data(), options);
                check(same_bits(y, expected), "linear " + name + (norm ? " +norm" : "") +
                                                  (act == Activation::gelu         ? " +gelu"
                                                   : act == Activation::quick_gelu ? " +quick_gelu"
                                                                                   : "") +
                                                  (add ? " +add" : "") + " = separate passes");
            }
}

void check_linear(const std::string& impl) {
    struct Shape {
        int64_t m, n, k, gs;
        bool per_row;
    };
    const Shape shapes[] = {{1, 9, 200, 200, true},
                            {17, 33, 300, 64, true},
                            {5, 40, 640, 640, false},
                            {40, 65, 1100, 1100, true},
                            {7, 40, 640, 64, true}};
    for (const Shape& s : shapes)
        for (Mode mode : {Mode::fast, Mode::exact, Mode::bf16}) {
            Weights w = make_weights(s.n, s.k, s.gs, s.per_row);
            if (impl != "ref") {  // a table that declines these weights is refused by name: nothing to test
                try {
                    pick(impl, Op::gemm_fast, &w.view);
                } catch (const std::invalid_argument&) { continue; }
            }
            const auto x = random_floats(size_t(s.m * s.k));
            const char* mode_name = mode == Mode::fast ? "fast" : mode == Mode::exact ? "exact" : "bf16";
            const std::string name = shape_name(impl.c_str(), s.m, s.n, s.k, s.gs, s.per_row) + " " + mode_name;
            const Linear file = Linear::file_layout(w.view, impl, mode);
            check_linear_layer(impl, file, mode, name + " file layout", x, s.m, w);
            const Linear prepared = Linear::prepare(w.view, impl, mode);
            if (prepared.prepared()) {
                check_linear_layer(impl, prepared, mode, name + " prepared", x, s.m, w);
                // the bytes again, as the bindings hand them back: adopted under the name they were made for
                const Linear adopted =
                    Linear::adopt(prepared.weights(), prepared.prepared_bytes(), prepared.impl(), mode);
                std::vector<float> a(size_t(s.m * s.n)), b(a.size());
                prepared.run(x.data(), s.m, a.data());
                adopted.run(x.data(), s.m, b.data());
                check(same_bits(a, b), "linear " + name + " adopted = prepared");
            }
        }
}

template <class F>
bool refuses(F f) {
    try {
        f();
    } catch (const std::invalid_argument&) { return true; }
    return false;
}

// Sizes the layer must refuse before it touches a pointer.
void check_linear_refusals() {
    Weights w = make_weights(9, 200, 200, true);
    const float* s = w.scales.data();
    const WeightShapes ok{9, 200, 200, 9, 1, 9, 64, 9};
    check(!refuses([&] { checked_weights(w.packed.data(), s, w.bias.data(), ok); }), "linear takes good sizes");
    const auto refused = [&](WeightShapes bad, const char* what) {
        check(refuses([&] { checked_weights(w.packed.data(), s, w.bias.data(), bad); }),
              std::string("linear refuses ") + what);
    };
    WeightShapes bad = ok;
    bad.k = 0, refused(bad, "k = 0");
    bad = ok, bad.k = kMaxK + 1, refused(bad, "k past the int32 accumulators");
    bad = ok, bad.n = int64_t(1) << 62, bad.scale_rows = 1, bad.code_rows = bad.n, bad.bias_size = bad.n;
    refused(bad, "n whose prepared size overflows");
    bad = ok, bad.n = -1, refused(bad, "n < 0");
    bad = ok, bad.group_size = 0, refused(bad, "group_size 0");
    bad = ok, bad.scale_rows = 3, refused(bad, "scales of 3 rows for 9");
    bad = ok, bad.scale_cols = 2, refused(bad, "2 scale groups for 1");
    bad = ok, bad.bias_size = 8, refused(bad, "a bias of 8 for 9 rows");
    bad = ok, bad.code_bytes = 32, refused(bad, "rows of 32 bytes for k = 200");
    bad = ok, bad.code_rows = 8, refused(bad, "8 code rows for 9");
    const Linear layer = Linear::file_layout(w.view, "ref", Mode::fast);
    const auto x = random_floats(200);
    std::vector<float> y(9), g(200, 1.0f);
    check(refuses([&] { layer.run(x.data(), -1, y.data()); }), "linear refuses m < 0");
    LinearOptions norm{Activation::none, false, g.data(), g.data(), 0.0f};
    check(refuses([&] { layer.run(x.data(), 1, y.data(), norm); }), "linear refuses eps = 0");
    norm.norm_eps = 1e-5f, norm.norm_weight_size = 199;
    check(refuses([&] { layer.run(x.data(), 1, y.data(), norm); }), "linear refuses a norm of 199 for k = 200");
    check(refuses([] { parse_mode("int4"); }) && refuses([] { parse_activation("relu"); }),
          "linear refuses unknown modes and activations");
    check(refuses([&] { Linear::adopt(w.view, 100, "ref", Mode::fast); }), "linear refuses bytes prepared for 'ref'");
    for (const char* impl : {"avx2", "avx512", "amx", "neon", "dotprod", "i8mm"}) {
        if (refuses([&] { pick(impl, Op::gemm_fast, &w.view); })) continue;
        const Linear prepared = Linear::prepare(w.view, impl, Mode::fast);
        if (!prepared.prepared()) continue;
        check(refuses([&] { Linear::adopt(prepared.weights(), prepared.prepared_bytes() - 1, impl, Mode::fast); }),
              std::string("linear refuses prepared bytes one short for ") + impl);
    }
}

void check_table(const std::string& impl) {
    check_quantize(impl, 6, 300, 64, true);
    for (int64_t k : {1, 15, 16, 33, 640}) check_quantize(impl, 5, k, 32, false);
    check_extremes(impl);
    check_gemm_shapes(impl);
    check_float_ops(impl);
    check_linear(impl);
}

#if defined(__aarch64__)
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
        check_table(order[i]);
    }
    check(std::string(pick("auto", Op::gemm_fast).name) == expected, "auto picks " + expected);
    check_linear("ref");
    check_linear_refusals();
}
#else
void run_all(const std::string&) {
    const CpuFeatures& f = cpu_features();
    std::printf("cpu: avx2=%d avx512_vnni=%d amx_int8=%d\n", f.avx2, f.avx512_vnni, f.amx_int8);
    const char* flagged[] = {"avx2", "avx512", "amx"};  // tables whose gemm_ok is one cpu_features flag
    const bool has[] = {f.avx2, f.avx512_vnni, f.amx_int8};
    for (int i = 0; i < 3; ++i)
        check(refused(flagged[i]) != has[i],
              std::string("impl='") + flagged[i] + (has[i] ? "' runs" : "' is refused") + " as cpu_features says");
    std::vector<std::string> available;
    for (const std::string& impl : impl_names())
        if (impl != "ref" && !refused(impl)) {
            available.push_back(impl);
            check_table(impl);
        }
    const std::string picked = pick("auto", Op::gemm_fast).name;
    check(available.empty() ? picked == "ref" : picked == available.back(), "auto picks the widest table, " + picked);
    check_linear("ref");
    check_linear_refusals();
}
#endif

}  // namespace

int main(int argc, char** argv) {
    try {
        run_all(argc > 1 ? argv[1] : "");
    } catch (const std::exception& e) { check(false, std::string("unexpected exception: ") + e.what()); }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
