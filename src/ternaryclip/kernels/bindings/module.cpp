// Python bindings (nanobind): numpy arrays in and out.  nanobind checks dtype, dimensionality and
// contiguity (outputs are taken as they are, never converted); the linear layer (core/linear.h) checks its
// sizes and runs its GEMM, fusion and scratch; the other ops' sizes are checked here, every product of them
// for overflow (core/checked.h), before any pointer is used.  The ops run with the GIL released.  Errors
// raise ValueError / TypeError, never crash.  Over 350 lines: one short converter per op of the Python API.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/attention_int8.h"
#include "core/base3.h"
#include "core/checked.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/linear.h"
#include "bench/peak.h"
#include "core/pool.h"
#include "core/ternary_gemm.h"
#include "x86/x86.h"

namespace nb = nanobind;
using namespace tclip;

template <class T>
using In2D = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using In1D = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T, int D>
using Out = nb::ndarray<nb::numpy, T, nb::ndim<D>>;
using OutArg = std::optional<nb::ndarray<float, nb::c_contig, nb::device::cpu>>;
using F32Array = nb::ndarray<float, nb::c_contig, nb::device::cpu>;

namespace {

int64_t dim(size_t d) { return int64_t(d); }

template <class T>
T* alloc(int64_t count, nb::capsule& owner) {
    T* data = new T[size_t(std::max<int64_t>(count, 1))];
    owner = nb::capsule(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    return data;
}

// The output: `out` when the caller passes one (checked to have exactly `shape`), else new.  `out` is taken
// without conversion (noconvert): a converted copy would take the result and drop it.
float* output(const OutArg& out, std::initializer_list<int64_t> shape, nb::capsule& owner) {
    int64_t count = 1;
    for (int64_t d : shape) count = checked_mul(count, d, "the output's size");
    if (!out) return alloc<float>(count, owner);
    std::string have, want;
    for (size_t i = 0; i < out->ndim(); ++i) have += (i ? ", " : "") + std::to_string(out->shape(i));
    for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    require(have == want, "out has shape [" + have + "], the result has [" + want + "]");
    return out->data();
}

// The shapes of the weight arrays, for checked_weights (core/linear.h).
WeightShapes shapes(int64_t n, int64_t k, const In2D<float>& scales, int64_t group_size,
                    const std::optional<In1D>& bias) {
    WeightShapes s{n, k, group_size, dim(scales.shape(0)), dim(scales.shape(1))};
    if (bias) s.bias_size = dim(bias->shape(0));
    return s;
}

// Weights in the 2bit file layout, checked.
TernaryWeights file_weights(const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales, int64_t group_size,
                            const std::optional<In1D>& bias) {
    WeightShapes s = shapes(dim(packed.shape(0)), k, scales, group_size, bias);
    s.code_rows = dim(packed.shape(0));
    s.code_bytes = dim(packed.shape(1));
    return checked_weights(packed.data(), scales.data(), bias ? bias->data() : nullptr, s);
}

void require_columns(const In2D<float>& x, int64_t k) {
    require(dim(x.shape(1)) == k, [&] {
        return "x has " + std::to_string(x.shape(1)) + " columns, the weights expect " + std::to_string(k);
    });
}

nb::object gemm(const In2D<float>& x, const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales,
                int64_t group_size, const std::optional<In1D>& bias, const std::string& mode, const std::string& impl,
                const OutArg& out) {
    const TernaryWeights w = file_weights(packed, k, scales, group_size, bias);
    require_columns(x, k);
    const Linear layer = Linear::file_layout(w, impl, parse_mode(mode));
    const int64_t m = dim(x.shape(0));
    nb::capsule owner;
    float* y = output(out, {m, w.n}, owner);
    {
        nb::gil_scoped_release release;
        layer.run(x.data(), m, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(w.n)}, owner));
}

// The weights in the load-time layout of the table `impl` picks for `mode`'s GEMM, and that table's
// name (to pass back to gemm_prepared); None when that table reads the 2bit file layout directly (for
// mode "bf16": when the exact GEMM runs it).
nb::object prepare_weights(const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales, int64_t group_size,
                           const std::string& impl, const std::string& mode) {
    const Mode parsed = parse_mode(mode);
    const TernaryWeights w = file_weights(packed, k, scales, group_size, std::nullopt);
    std::vector<uint8_t>* bytes = nullptr;
    std::string name;
    {
        nb::gil_scoped_release release;
        Linear layer = Linear::prepare(w, impl, parsed);
        if (layer.prepared()) bytes = new std::vector<uint8_t>(layer.release_prepared());
        name = layer.impl();
    }
    if (bytes == nullptr) return nb::none();
    nb::capsule owner(bytes, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
    return nb::make_tuple(Out<uint8_t, 1>(bytes->data(), {bytes->size()}, owner), name);
}

// `mode`'s GEMM over prepared weights (prepare_weights); `impl` is the name it returned: Linear::run with
// the activation, the add (out += it; out required) and the LayerNorm (weight, bias, eps) given.
// eps as a double: taken without conversion, a Python float that float32 cannot hold exactly would be refused.
using NormArg = std::optional<std::tuple<In1D, In1D, double>>;
nb::object gemm_prepared(const In2D<float>& x,
                         const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& prepared,
                         int64_t n, int64_t k, const In2D<float>& scales, int64_t group_size,
                         const std::optional<In1D>& bias, const std::string& impl, const OutArg& out, bool add,
                         const std::string& activation, const NormArg& norm, const std::string& mode) {
    const Mode parsed = parse_mode(mode);
    require(!add || out, "add needs out (the array to add to)");
    LinearOptions options{parse_activation(activation), add};
    if (norm) {
        const auto& [weight, shift, eps] = *norm;
        options.norm_weight = weight.data();
        options.norm_bias = shift.data();
        options.norm_eps = float(eps);
        options.norm_weight_size = dim(weight.shape(0));
        options.norm_bias_size = dim(shift.shape(0));
    }
    const TernaryWeights w = checked_weights(prepared.data(), scales.data(), bias ? bias->data() : nullptr,
                                             shapes(n, k, scales, group_size, bias));
    require_columns(x, k);
    const Linear layer = Linear::adopt(w, dim(prepared.shape(0)), impl, parsed);
    const int64_t m = dim(x.shape(0));
    nb::capsule owner;
    float* y = output(out, {m, n}, owner);
    {
        nb::gil_scoped_release release;
        layer.run(x.data(), m, y, options);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(n)}, owner));
}

Out<float, 1> round_bf16(const In1D& x) {
    const int64_t count = dim(x.shape(0));
    nb::capsule owner;
    float* out = alloc<float>(count, owner);
    {
        nb::gil_scoped_release release;
        ref::round_bf16(x.data(), count, out);
    }
    return Out<float, 1>(out, {size_t(count)}, owner);
}

std::tuple<Out<int8_t, 2>, Out<float, 1>, Out<int32_t, 2>> quantize_rows(const In2D<float>& x, int64_t group_size,
                                                                         const std::string& impl) {
    const int64_t m = dim(x.shape(0)), k = dim(x.shape(1));
    require(k >= 1 && group_size >= 1, "x needs columns and group_size must be positive");
    const int64_t kp = checked_padded_k(k), groups = k / group_size + (k % group_size != 0);
    const KernelTable& table = pick(impl, Op::quantize);
    nb::capsule owners[3];
    int8_t* q = alloc<int8_t>(checked_mul(m, kp, "the quantized activations"), owners[0]);
    float* xscale = alloc<float>(m, owners[1]);
    int32_t* qsum = alloc<int32_t>(checked_mul(m, groups, "the group sums"), owners[2]);
    {
        nb::gil_scoped_release release;
        table.quantize_rows(x.data(), m, k, kp, groups == 1 ? k : group_size, groups, q, xscale, qsum);
    }
    return {Out<int8_t, 2>(q, {size_t(m), size_t(kp)}, owners[0]), Out<float, 1>(xscale, {size_t(m)}, owners[1]),
            Out<int32_t, 2>(qsum, {size_t(m), size_t(groups)}, owners[2])};
}

Out<int32_t, 3> int_dot(const In2D<int8_t>& q, const In2D<uint8_t>& packed, int64_t k, int64_t group_size,
                        const std::string& impl) {
    const int64_t kp = checked_padded_k(k);
    require(group_size >= 1, "group_size must be positive");
    const int64_t groups = k / group_size + (k % group_size != 0);
    require(dim(packed.shape(1)) == kp / 4, "packed weights must have ceil(k / 128) * 32 bytes a row");
    static const float unit = 1.0f;  // int_dot never reads scales
    TernaryWeights w{packed.data(), dim(packed.shape(0)),         k,      kp, &unit, 1,
                     groups,        groups == 1 ? k : group_size, nullptr};
    require(dim(q.shape(1)) == kp, "q must have kp = ceil(k / 128) * 128 columns, zero padded");
    const int64_t m = dim(q.shape(0));
    const KernelTable& table = pick(impl, Op::int_dot, &w);
    checked_add(m, kTokenPad, "the token count");
    const int64_t q_bytes = checked_mul(padded_rows(m), kp, "the quantized activations");
    nb::capsule owner;
    int32_t* out = alloc<int32_t>(checked_mul(m, w.n, groups, "the integer dots"), owner);
    std::vector<int32_t> qsum(size_t(checked_mul(m, groups, "the activation group sums")));
    const int8_t* qd = q.data();
    for (int64_t i = 0; i < m; ++i)  // columns past k must be zero so that padded codes (u = 1) add nothing
        for (int64_t c = k; c < kp; ++c) require(qd[i * kp + c] == 0, "q must be zero past column k");
    {
        nb::gil_scoped_release release;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t g = 0; g < groups; ++g) {
                int32_t s = 0;
                for (int64_t c = w.group_begin(g); c < w.group_end(g); ++c) s += qd[i * kp + c];
                qsum[size_t(i * groups + g)] = s;
            }
        // the SIMD paths read whole tiles of tokens (QuantizedRows): a zero-padded copy
        std::vector<int8_t> padded(size_t(q_bytes), 0);
        if (m > 0) std::memcpy(padded.data(), qd, size_t(m * kp));
        table.int_dot(QuantizedRows{padded.data(), nullptr, qsum.data(), m, kp}, w, out);
    }
    return Out<int32_t, 3>(out, {size_t(m), size_t(w.n), size_t(groups)}, owner);
}

nb::object layer_norm(const In2D<float>& x, const In1D& w, const In1D& b, float eps, const std::string& impl,
                      const OutArg& out) {
    const int64_t m = dim(x.shape(0)), d = dim(x.shape(1));
    require(dim(w.shape(0)) == d && dim(b.shape(0)) == d, "LayerNorm weight and bias must match x's width");
    require(std::isfinite(eps) && eps > 0, "LayerNorm eps must be positive and finite, got " + std::to_string(eps));
    require(!out || out->data() != x.data(), "out must not be x");
    const KernelTable& table = pick(impl, Op::float_ops);
    nb::capsule owner;
    float* y = output(out, {m, d}, owner);
    {
        nb::gil_scoped_release release;
        table.layer_norm(x.data(), m, d, w.data(), b.data(), eps, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(d)}, owner));
}

void activation_(F32Array x, const std::string& kind, const std::string& impl) {
    require(kind == "gelu" || kind == "quick_gelu", "activation must be 'gelu' or 'quick_gelu'");
    const KernelTable& table = pick(impl, Op::float_ops);
    int64_t n = 1;
    for (size_t i = 0; i < x.ndim(); ++i) n = checked_mul(n, dim(x.shape(i)), "x's size");
    nb::gil_scoped_release release;
    (kind == "gelu" ? table.gelu : table.quick_gelu)(x.data(), n);
}

nb::object attention(const nb::ndarray<const float, nb::ndim<3>, nb::c_contig, nb::device::cpu>& qkv, int64_t heads,
                     bool causal, const std::string& impl, const OutArg& out, bool fast, bool int8) {
    const int64_t batch = dim(qkv.shape(0)), t = dim(qkv.shape(1)), width3 = dim(qkv.shape(2));
    // no product with heads: a huge head count cannot wrap into a divisor of the width
    require(width3 % 3 == 0, "qkv width must be 3 * heads * head_dim, got " + std::to_string(width3));
    const int64_t width = width3 / 3;
    require(heads >= 1 && heads <= width && width % heads == 0,
            "heads (" + std::to_string(heads) + ") must divide the attention width (" + std::to_string(width) + ")");
    checked_mul(batch, t, width3, "qkv's size");
    checked_mul(checked_add(t, 31, "the token count"), width, "the attention scratch");
    const KernelTable& table = pick(impl, Op::float_ops);
    nb::capsule owner;
    float* y = output(out, {batch, t, width}, owner);
    {
        nb::gil_scoped_release release;
        auto* run = !fast                                     ? table.attention
                    : int8 && table.attention_int8 != nullptr ? table.attention_int8
                    : table.attention_fast != nullptr         ? table.attention_fast
                                                              : table.attention;
        run(qkv.data(), batch, t, width, heads, causal, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 3>(y, {size_t(batch), size_t(t), size_t(width)}, owner));
}

// The int8 attention of one path whatever the dispatch picks (tests, benchmarks): "ref" with `levels`,
// "avx512" (vpdpbusd, 255 levels) or "avx2" (vpmaddubsw, 127 levels) where the CPU has them.
Out<float, 3> attention_int8(const nb::ndarray<const float, nb::ndim<3>, nb::c_contig, nb::device::cpu>& qkv,
                             int64_t heads, bool causal, const std::string& path, int levels) {
    const int64_t batch = dim(qkv.shape(0)), t = dim(qkv.shape(1)), width3 = dim(qkv.shape(2));
    require(width3 % 3 == 0, "qkv width must be 3 * heads * head_dim, got " + std::to_string(width3));
    const int64_t width = width3 / 3;
    require(heads >= 1 && heads <= width && width % heads == 0,
            "heads (" + std::to_string(heads) + ") must divide the attention width (" + std::to_string(width) + ")");
    checked_mul(batch, t, width3, "qkv's size");
    checked_mul(checked_add(t, 31, "the token count"), width, "the attention scratch");
    require(levels == 127 || levels == 255, "levels must be 127 or 255");
    const bool avx512 = path == "avx512", avx2 = path == "avx2";
    require(path == "ref" || avx512 || avx2, "path must be 'ref', 'avx2' or 'avx512', got '" + path + "'");
    require(!avx512 || cpu_features().avx512_vnni, "this CPU has no AVX-512 VNNI");
    require(!avx2 || cpu_features().avx2, "this CPU has no AVX2");
    nb::capsule owner;
    float* y = output(std::nullopt, {batch, t, width}, owner);
    {
        nb::gil_scoped_release release;
        if (avx512)
            ops_avx512vnni::attention_int8(qkv.data(), batch, t, width, heads, causal, y);
        else if (avx2)
            ops_avx2int8::attention_int8(qkv.data(), batch, t, width, heads, causal, y);
        else
            ref::attention_int8(qkv.data(), batch, t, width, heads, causal, levels, y);
    }
    return Out<float, 3>(y, {size_t(batch), size_t(t), size_t(width)}, owner);
}

Out<uint8_t, 2> base3_to_2bit_array(
    const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& packed, int64_t n, int64_t k) {
    require(n >= 0, "n must be >= 0");
    const int64_t kp = checked_padded_k(k);
    const int64_t bytes = base3_bytes(checked_mul(n, k, "n * k"));
    require(dim(packed.shape(0)) == bytes, "base3 data has " + std::to_string(packed.shape(0)) + " bytes, expected " +
                                               std::to_string(bytes) + " for [" + std::to_string(n) + ", " +
                                               std::to_string(k) + "]");
    nb::capsule owner;
    uint8_t* out = alloc<uint8_t>(checked_mul(n, kp / 4, "the 2bit weights"), owner);
    Base3Status status;
    {
        nb::gil_scoped_release release;
        status = tclip::base3_to_2bit(packed.data(), n, k, kp, out);
    }
    require(status != Base3Status::bad_byte, "base3 data holds a byte >= 243, which no five trits produce");
    require(status != Base3Status::bad_padding, "base3 padding holds nonzero codes");
    return Out<uint8_t, 2>(out, {size_t(n), size_t(kp / 4)}, owner);
}

void set_threads(int64_t n) {
    const int cap = thread_cap();
    require(n >= 1 && n <= cap, "threads must be between 1 and " + std::to_string(cap) + " (4 x the " +
                                    std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
                                    " cores, at most 1024), got " + std::to_string(n));
    set_num_threads(int(n));
}

}  // namespace

NB_MODULE(_ext, m) {
    m.doc() = "ternaryclip C++ kernels: ternary GEMM (2bit weights; int8 or float activations)";
    m.def("base3_to_2bit", &base3_to_2bit_array, nb::arg("packed"), nb::arg("n"), nb::arg("k"),
          "base3-packed ternary codes -> the 2bit kernel layout [n, ceil(k / 128) * 32]");
    m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"),
          nb::arg("impl") = "auto", nb::arg("out").noconvert().none() = nb::none(),
          "LayerNorm over the last axis of x [M, D]");
    m.def("activation_", &activation_, nb::arg("x"), nb::arg("kind"), nb::arg("impl") = "auto",
          "in-place GELU (erf form) or QuickGELU on a contiguous float32 array");
    m.def("attention", &attention, nb::arg("qkv"), nb::arg("heads"), nb::arg("causal"), nb::arg("impl") = "auto",
          nb::arg("out").noconvert().none() = nb::none(), nb::arg("fast") = false, nb::arg("int8") = true,
          "multi-head softmax attention: qkv [B, T, 3W] (q | k | v) -> [B, T, W]; fast: int8 products (with int8) "
          "or bf16 products where the table has them");
    m.def("attention_int8", &attention_int8, nb::arg("qkv"), nb::arg("heads"), nb::arg("causal"), nb::arg("path"),
          nb::arg("levels") = 255,
          "the int8 attention (core/attention_int8.h) of one path: 'ref' (with levels 127 or 255), 'avx2', 'avx512'");
    m.def("gemm", &gemm, nb::arg("x"), nb::arg("packed"), nb::arg("k"), nb::arg("scales"), nb::arg("group_size"),
          nb::arg("bias").none() = nb::none(), nb::arg("mode") = "fast", nb::arg("impl") = "auto",
          nb::arg("out").noconvert().none() = nb::none(),
          "y[M, N] = x[M, K] . (scale * T)^T + bias; mode 'fast' (int8 activations), 'exact' (float) or 'bf16' "
          "(activations rounded to bf16)");
    m.def("prepare_weights", &prepare_weights, nb::arg("packed"), nb::arg("k"), nb::arg("scales"),
          nb::arg("group_size"), nb::arg("impl") = "auto", nb::arg("mode") = "fast",
          "(the weights in the load-time layout of mode's GEMM ('fast' or 'bf16'), the impl name that reads them), "
          "or None");
    // No conversion of any array: the Python wrapper converts (and names the argument at fault) only after
    // a TypeError, so that the runtime's calls cost no Python checks.
    m.def("gemm_prepared", &gemm_prepared, nb::arg("x").noconvert(), nb::arg("prepared").noconvert(), nb::arg("n"),
          nb::arg("k"), nb::arg("scales").noconvert(), nb::arg("group_size"),
          nb::arg("bias").noconvert().none() = nb::none(), nb::arg("impl"),
          nb::arg("out").noconvert().none() = nb::none(), nb::arg("add") = false, nb::arg("activation") = "",
          nb::arg("norm").noconvert().none() = nb::none(), nb::arg("mode") = "fast",
          "mode's GEMM over prepare_weights' output (of LayerNorm(x) with norm = (weight, bias, eps)), then the "
          "activation ('', 'gelu', 'quick_gelu'); add: out += it");
    m.def("round_bf16", &round_bf16, nb::arg("x"),
          "x [N] rounded to bfloat16 (to nearest even, as mode 'bf16' rounds activations), as float32");
    m.def("quantize_rows", &quantize_rows, nb::arg("x"), nb::arg("group_size"), nb::arg("impl") = "auto",
          "per-row absmax int8 quantization: (q [M, Kp], xscale [M], qsum [M, groups])");
    m.def("int_dot", &int_dot, nb::arg("q"), nb::arg("packed"), nb::arg("k"), nb::arg("group_size"),
          nb::arg("impl") = "auto", "integer dots out[M, N, G] = sum over group of t * q (for exactness tests)");
    m.def(
        "int8_dot_peak_gops",
        [](const std::string& isa, double seconds) {
            require(seconds > 0 && seconds <= 10, "seconds must be in (0, 10]");
            nb::gil_scoped_release release;
            return int8_dot_peak_gops(isa.c_str(), seconds);
        },
        nb::arg("isa"), nb::arg("seconds") = 0.2,
        "GOPS of a register-only loop of the int8 dot instruction of 'avx2', 'avxvnni', 'avx512' or 'amx' on this "
        "thread (0: "
        "absent)");
    m.def("impl_names", &impl_names, "the impl= names of this build, narrowest first");
    m.def("test_impl_names", &test_impl_names, "the impl= names of test builds, which 'auto' never picks");
    m.def("cpu_has_avx2", [] { return cpu_features().avx2; });
    m.def("cpu_has_avx_vnni", [] { return cpu_features().avx_vnni; });
    m.def(
        "dpbusd",
        [](const nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& acc,
           const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& u,
           const nb::ndarray<const int8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& s, const std::string& how) {
            const int64_t vectors = dim(acc.shape(0)) / 8;
            require(
                dim(acc.shape(0)) == 8 * vectors && dim(u.shape(0)) == 32 * vectors && dim(s.shape(0)) == 32 * vectors,
                "acc needs 8 int32 a vector, u and s 32 bytes a vector");
            const CpuFeatures& cpu = cpu_features();
            const auto run = how == "emulated" && cpu.avx2             ? avxvnni_emulated::dpbusd_vectors
                             : how == "avxvnni" && cpu.avx_vnni        ? avxvnni::dpbusd_vectors
                             : how == "avx512_vnni" && cpu.avx512_vnni ? avxvnni_emulated::dpbusd_evex_vectors
                                                                       : nullptr;
            require(run != nullptr, "dpbusd '" + how + "' is not available on this CPU");
            nb::capsule owner;
            int32_t* out = alloc<int32_t>(8 * vectors, owner);
            run(acc.data(), u.data(), s.data(), vectors, out);
            return Out<int32_t, 1>(out, {size_t(8 * vectors)}, owner);
        },
        nb::arg("acc"), nb::arg("u"), nb::arg("s"), nb::arg("how"),
        "vpdpbusd on ymm vectors (the AVX-VNNI path's dot, its test hook): 'emulated' (AVX2), 'avxvnni' (VEX) or "
        "'avx512_vnni' (EVEX)");
    m.def("cpu_has_avx512_vnni", [] { return cpu_features().avx512_vnni; });
    m.def("cpu_has_amx_int8", [] { return cpu_features().amx_int8; });
    m.def("cpu_has_avx512_bf16", [] { return cpu_features().avx512_bf16; });
    m.def("cpu_has_amx_bf16", [] { return cpu_features().amx_bf16; });
    m.def(
        "fuses_epilogue",
        [](const std::string& impl, const std::string& mode) { return fuses_epilogue(impl, parse_mode(mode)); },
        nb::arg("impl"), nb::arg("mode") = "fast",
        "whether gemm_prepared's norm, activation and add run inside the GEMM for weights prepared for impl and mode");
    m.def(
        "adds_in_epilogue",
        [](const std::string& impl, const std::string& mode) { return adds_in_epilogue(impl, parse_mode(mode)); },
        nb::arg("impl"), nb::arg("mode") = "fast",
        "whether gemm_prepared(add=True) adds in the GEMM's epilogue for weights prepared for impl and mode");
    m.def(
        "fast_gemm_impl", [](const std::string& impl) { return std::string(pick(impl, Op::gemm_fast).name); },
        nb::arg("impl") = "auto", "the table whose fast GEMM runs for impl (its own or a narrower one's)");
    m.def(
        "fast_attention_impl",
        [](const std::string& impl, bool int8) { return std::string(fast_attention_name(impl, int8)); },
        nb::arg("impl") = "auto", nb::arg("int8") = true,
        "what the fast mode's attention (int8; else mode bf16's) multiplies with for impl: 'avx512_int8', "
        "'avx2_int8' (head widths a multiple of 16), 'amx_bf16', 'avx512_bf16' (a multiple of 32) or 'float32'");
    m.def("set_num_threads", &set_threads, nb::arg("n"),
          "threads of the calling thread's kernels (its own pool, core/pool.h)");
    m.def("get_num_threads", &num_threads);
    m.def("max_threads", &thread_cap, "the largest thread count set_num_threads accepts");
}
