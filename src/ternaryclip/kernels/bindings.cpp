// Python bindings (nanobind).  Arguments are checked for dtype, dimensionality and contiguity by
// nanobind and for consistent sizes here, before any pointer is used; the GIL is released while
// the kernels run.  Errors raise ValueError / TypeError, never crash.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops.h"
#include "ternary_gemm.h"

namespace nb = nanobind;
using namespace tclip;

template <class T>
using In2D = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using In1D = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T, int D>
using Out = nb::ndarray<nb::numpy, T, nb::ndim<D>>;

namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(_M_X64)
    static const bool ok = avx2::compiled() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok;
#else
    return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(_M_X64)
    static const bool ok = cpu_has_avx2() && avx512::compiled() && __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512vnni");
    return ok;
#else
    return false;
#endif
}

void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

template <class T>
T* alloc(size_t count, nb::capsule& owner) {
    T* data = new T[count ? count : 1];
    owner = nb::capsule(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    return data;
}

TernaryWeights make_weights(const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales, int64_t group_size,
                            const std::optional<In1D>& bias) {
    require(k >= 1, "k must be positive");
    require(group_size >= 1, "group_size must be positive");
    const int64_t n = int64_t(packed.shape(0)), kp = padded_k(k);
    require(int64_t(packed.shape(1)) == kp / 4, "packed weights have " + std::to_string(packed.shape(1)) +
            " bytes a row; k = " + std::to_string(k) + " needs " + std::to_string(kp / 4));
    const int64_t rows = int64_t(scales.shape(0)), cols = int64_t(scales.shape(1));
    const int64_t groups = (k + group_size - 1) / group_size;
    require(rows == 1 || rows == n, "scales must have 1 or N rows");
    require(cols == 1 || cols == groups, "scales must have 1 or ceil(k / group_size) columns");
    if (bias) require(int64_t(bias->shape(0)) == n, "bias must have N elements");
    return TernaryWeights{packed.data(), n, k, kp, scales.data(), rows, cols, cols == 1 ? k : group_size,
                          bias ? bias->data() : nullptr};
}

enum class Impl { ref, avx2, avx512 };

// "auto" takes the widest path this CPU and these weights support; a named path must be available.
Impl choose(const std::string& impl, const TernaryWeights* w, bool fast_gemm) {
    const bool avx2_ok = cpu_has_avx2() && (w == nullptr || avx2::supports(*w));
    const bool avx512_ok = fast_gemm && cpu_has_avx512_vnni() && w != nullptr && avx512::supports(*w);
    if (impl == "ref") return Impl::ref;
    if (impl == "avx2") {
        require(avx2_ok, "impl='avx2' is not available on this CPU or for this group size");
        return Impl::avx2;
    }
    if (impl == "avx512" && !fast_gemm) return choose("avx2", w, false);  // AVX-512 covers the fast GEMM only
    if (impl == "avx512") {
        require(avx512_ok, "impl='avx512' is not available on this CPU, for this group size or this operation");
        return Impl::avx512;
    }
    require(impl == "auto", "impl must be 'auto', 'ref', 'avx2' or 'avx512'");
    return avx512_ok ? Impl::avx512 : avx2_ok ? Impl::avx2 : Impl::ref;
}

bool use_avx2(const std::string& impl, const TernaryWeights* w) {
    // quantization, exact mode and the float ops have no AVX-512 variant: 'avx512' runs them with AVX2
    if (impl == "avx512") return cpu_has_avx2();
    return choose(impl, w, false) != Impl::ref;
}

struct Quantized {
    int8_t* q;
    float* xscale;
    int32_t* qsum;
    nb::capsule owners[3];
};

// Scratch for the int8 activations of one GEMM call, kept per calling thread and only ever grown:
// fresh allocations of a few MB per call cost page faults that serialized the worker threads.
struct Scratch {
    std::vector<int8_t> q;
    std::vector<float> xscale;
    std::vector<int32_t> qsum;
};

QuantizedRows quantize_into_scratch(const float* x, int64_t m, const TernaryWeights& w, bool simd) {
    thread_local Scratch scratch;
    const size_t q_bytes = size_t(padded_rows(m) * w.kp);  // zero rows up to a multiple of 16 (AVX-512)
    if (scratch.q.size() < q_bytes) scratch.q.resize(q_bytes);
    std::memset(scratch.q.data() + m * w.kp, 0, q_bytes - size_t(m * w.kp));
    if (scratch.xscale.size() < size_t(m)) scratch.xscale.resize(size_t(m));
    if (scratch.qsum.size() < size_t(m * w.scale_cols)) scratch.qsum.resize(size_t(m * w.scale_cols));
    int8_t* q = scratch.q.data();
    float* xs = scratch.xscale.data();
    int32_t* qs = scratch.qsum.data();
    if (simd) avx2::quantize_rows(x, m, w.k, w.kp, w.group_size, w.scale_cols, q, xs, qs);
    else ref::quantize_rows(x, m, w.k, w.kp, w.group_size, w.scale_cols, q, xs, qs);
    return QuantizedRows{q, xs, qs, m, w.kp};
}

Quantized quantize(const float* x, int64_t m, const TernaryWeights& w, bool simd) {
    Quantized out;
    out.q = alloc<int8_t>(size_t(m * w.kp), out.owners[0]);
    out.xscale = alloc<float>(size_t(m), out.owners[1]);
    out.qsum = alloc<int32_t>(size_t(m * w.scale_cols), out.owners[2]);
    if (simd) avx2::quantize_rows(x, m, w.k, w.kp, w.group_size, w.scale_cols, out.q, out.xscale, out.qsum);
    else ref::quantize_rows(x, m, w.k, w.kp, w.group_size, w.scale_cols, out.q, out.xscale, out.qsum);
    return out;
}

using OutArg = std::optional<nb::ndarray<float, nb::c_contig, nb::device::cpu>>;

// The output: `out` when the caller passes one (checked to hold exactly `count` floats), else new.
float* output(const OutArg& out, size_t count, nb::capsule& owner) {
    if (!out) return alloc<float>(count, owner);
    size_t have = 1;
    for (size_t i = 0; i < out->ndim(); ++i) have *= out->shape(i);
    require(have == count, "out has " + std::to_string(have) + " elements, the result has " + std::to_string(count));
    return out->data();
}

nb::object gemm(const In2D<float>& x, const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales,
                int64_t group_size, const std::optional<In1D>& bias, const std::string& mode, const std::string& impl,
                const OutArg& out) {
    TernaryWeights w = make_weights(packed, k, scales, group_size, bias);
    require(int64_t(x.shape(1)) == k, "x has " + std::to_string(x.shape(1)) + " columns, the weights expect " +
            std::to_string(k));
    require(mode == "fast" || mode == "exact", "mode must be 'fast' or 'exact'");
    const int64_t m = int64_t(x.shape(0));
    const Impl path = choose(impl, &w, mode == "fast");
    const bool simd = path != Impl::ref;
    nb::capsule owner;
    float* y = output(out, size_t(m * w.n), owner);
    {
        nb::gil_scoped_release release;
        if (mode == "exact") {
            if (simd) avx2::gemm_exact(x.data(), m, w, y);
            else ref::gemm_exact(x.data(), m, w, y);
        } else if (m > 0) {
            const QuantizedRows rows = quantize_into_scratch(x.data(), m, w, simd);
            if (path == Impl::avx512) avx512::gemm_fast(rows, w, y);
            else if (simd) avx2::gemm_fast(rows, w, y);
            else ref::gemm_fast(rows, w, y);
        }
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(w.n)}, owner));
}

std::tuple<Out<int8_t, 2>, Out<float, 1>, Out<int32_t, 2>> quantize_rows(const In2D<float>& x, int64_t group_size,
                                                                          const std::string& impl) {
    const int64_t m = int64_t(x.shape(0)), k = int64_t(x.shape(1));
    require(k >= 1 && group_size >= 1, "x needs columns and group_size must be positive");
    const int64_t groups = (k + group_size - 1) / group_size, kp = padded_k(k);
    TernaryWeights shape_only{nullptr, 0, k, kp, nullptr, 1, groups, groups == 1 ? k : group_size, nullptr};
    const bool simd = use_avx2(impl, nullptr);
    Quantized out;
    {
        nb::gil_scoped_release release;
        out = quantize(x.data(), m, shape_only, simd);
    }
    return {Out<int8_t, 2>(out.q, {size_t(m), size_t(kp)}, out.owners[0]),
            Out<float, 1>(out.xscale, {size_t(m)}, out.owners[1]),
            Out<int32_t, 2>(out.qsum, {size_t(m), size_t(groups)}, out.owners[2])};
}

Out<int32_t, 3> int_dot(const In2D<int8_t>& q, const In2D<uint8_t>& packed, int64_t k, int64_t group_size,
                        const std::string& impl) {
    require(k >= 1 && group_size >= 1, "k and group_size must be positive");
    const int64_t groups = (k + group_size - 1) / group_size, kp = padded_k(k);
    require(int64_t(packed.shape(1)) == kp / 4, "packed weights must have ceil(k / 128) * 32 bytes a row");
    static const float unit = 1.0f;  // int_dot never reads scales
    TernaryWeights w{packed.data(), int64_t(packed.shape(0)), k, kp, &unit, 1, groups,
                     groups == 1 ? k : group_size, nullptr};
    require(int64_t(q.shape(1)) == w.kp, "q must have kp = ceil(k / 128) * 128 columns, zero padded");
    const int64_t m = int64_t(q.shape(0));
    const Impl path = choose(impl, &w, true);
    nb::capsule owner, qsum_owner;
    int32_t* out = alloc<int32_t>(size_t(m * w.n * groups), owner);
    int32_t* qsum = alloc<int32_t>(size_t(m * groups), qsum_owner);
    {
        nb::gil_scoped_release release;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t g = 0; g < groups; ++g) {
                int32_t s = 0;
                for (int64_t c = w.group_begin(g); c < w.group_end(g); ++c) s += q.data()[i * w.kp + c];
                qsum[i * groups + g] = s;
            }
        // columns past k must be zero so that padded codes (u = 1) add nothing
        for (int64_t i = 0; i < m; ++i)
            for (int64_t c = k; c < w.kp; ++c)
                if (q.data()[i * w.kp + c] != 0) throw std::invalid_argument("q must be zero past column k");
        std::vector<int8_t> padded;  // the AVX-512 path reads whole groups of 16 rows
        if (path == Impl::avx512) {
            padded.assign(size_t(padded_rows(m) * w.kp), 0);
            std::memcpy(padded.data(), q.data(), size_t(m * w.kp));
        }
        QuantizedRows rows{path == Impl::avx512 ? padded.data() : q.data(), nullptr, qsum, m, w.kp};
        if (path == Impl::avx512) avx512::int_dot(rows, w, out);
        else if (path == Impl::avx2) avx2::int_dot(rows, w, out);
        else ref::int_dot(rows, w, out);
    }
    return Out<int32_t, 3>(out, {size_t(m), size_t(w.n), size_t(groups)}, owner);
}

using F32Array = nb::ndarray<float, nb::c_contig, nb::device::cpu>;

bool cpu_has_avx512f() {
#if defined(__x86_64__) || defined(_M_X64)
    static const bool ok = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    return ok;
#else
    return false;
#endif
}

// The float ops: 0 generic, 1 AVX2, 2 AVX-512 ("auto" takes the widest the CPU has).
int ops_level(const std::string& impl) {
    if (impl == "ref") return 0;
    if (impl == "avx2") {
        require(cpu_has_avx2(), "impl='avx2' is not available on this CPU");
        return 1;
    }
    if (impl == "avx512") {
        require(cpu_has_avx512f(), "impl='avx512' is not available on this CPU");
        return 2;
    }
    require(impl == "auto", "impl must be 'auto', 'ref', 'avx2' or 'avx512'");
    return cpu_has_avx512f() ? 2 : cpu_has_avx2() ? 1 : 0;
}

nb::object layer_norm(const In2D<float>& x, const In1D& w, const In1D& b, float eps, const std::string& impl,
                      const OutArg& out) {
    const int64_t m = int64_t(x.shape(0)), d = int64_t(x.shape(1));
    require(int64_t(w.shape(0)) == d && int64_t(b.shape(0)) == d, "LayerNorm weight and bias must match x's width");
    require(!out || out->data() != x.data(), "out must not be x");
    const int level = ops_level(impl);
    nb::capsule owner;
    float* y = output(out, size_t(m * d), owner);
    {
        nb::gil_scoped_release release;
        (level == 2 ? ops_avx512::layer_norm : level == 1 ? ops_avx2::layer_norm : ops_generic::layer_norm)(
            x.data(), m, d, w.data(), b.data(), eps, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(d)}, owner));
}

void activation_(F32Array x, const std::string& kind, const std::string& impl) {
    require(kind == "gelu" || kind == "quick_gelu", "activation must be 'gelu' or 'quick_gelu'");
    const int level = ops_level(impl);
    int64_t n = 1;
    for (size_t i = 0; i < x.ndim(); ++i) n *= int64_t(x.shape(i));
    nb::gil_scoped_release release;
    if (kind == "gelu") (level == 2 ? ops_avx512::gelu : level == 1 ? ops_avx2::gelu : ops_generic::gelu)(x.data(), n);
    else (level == 2 ? ops_avx512::quick_gelu : level == 1 ? ops_avx2::quick_gelu : ops_generic::quick_gelu)(x.data(), n);
}

nb::object attention(const nb::ndarray<const float, nb::ndim<3>, nb::c_contig, nb::device::cpu>& qkv, int64_t heads,
                     bool causal, const std::string& impl, const OutArg& out) {
    const int64_t batch = int64_t(qkv.shape(0)), t = int64_t(qkv.shape(1)), width3 = int64_t(qkv.shape(2));
    require(heads >= 1 && width3 % (3 * heads) == 0, "qkv width must be 3 * heads * head_dim");
    const int64_t width = width3 / 3;
    const int level = ops_level(impl);
    nb::capsule owner;
    float* y = output(out, size_t(batch * t * width), owner);
    {
        nb::gil_scoped_release release;
        (level == 2 ? ops_avx512::attention : level == 1 ? ops_avx2::attention : ops_generic::attention)(
            qkv.data(), batch, t, width, heads, causal, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 3>(y, {size_t(batch), size_t(t), size_t(width)}, owner));
}

// base3 bytes (five codes u in {0, 1, 2} a byte, u0 + 3 u1 + 9 u2 + 27 u3 + 81 u4) -> the 2bit kernel
// layout [n, kp / 4], rows in parallel.  The same checks as pack/bits.py: no byte >= 243, padding
// trits of the last byte equal to 1.  numpy's version of this is the reference (tests compare them).
Out<uint8_t, 2> base3_to_2bit(const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& packed,
                              int64_t n, int64_t k) {
    require(n >= 0 && k >= 1, "n must be >= 0 and k >= 1");
    const int64_t codes = n * k, bytes = (codes + 4) / 5, kp = padded_k(k);
    require(int64_t(packed.shape(0)) == bytes, "base3 data has " + std::to_string(packed.shape(0)) +
            " bytes, expected " + std::to_string(bytes) + " for [" + std::to_string(n) + ", " + std::to_string(k) + "]");
    const uint8_t* src = packed.data();
    nb::capsule owner;
    uint8_t* out = alloc<uint8_t>(size_t(n * kp / 4), owner);
    bool bad_byte = false;
    {
        nb::gil_scoped_release release;
        static const auto digits = [] {
            std::array<std::array<uint8_t, 5>, 243> table{};
            for (int b = 0; b < 243; ++b)
                for (int d = 0, v = b; d < 5; ++d, v /= 3) table[size_t(b)][size_t(d)] = uint8_t(v % 3);
            return table;
        }();
        for (int64_t i = 0; i < bytes; ++i) bad_byte |= src[i] >= 243;
        if (!bad_byte) {
#pragma omp parallel
            {
                std::vector<uint8_t> u(size_t(kp + 10));  // one row of codes, decoded five a byte
#pragma omp for schedule(static)
                for (int64_t r = 0; r < n; ++r) {
                    const int64_t first = r * k, b0 = first / 5, skip = first % 5, span = (skip + k + 4) / 5;
                    for (int64_t i = 0; i < span; ++i) std::memcpy(u.data() + 5 * i, digits[src[b0 + i]].data(), 5);
                    uint8_t* codes_row = u.data() + skip;
                    std::memset(codes_row + k, 1, size_t(kp - k));  // padding columns hold the code of 0
                    uint8_t* row = out + r * (kp / 4);
                    for (int64_t b = 0; b < kp / kBlock; ++b) {
                        const uint8_t* blk = codes_row + b * kBlock;
                        for (int j = 0; j < 32; ++j)
                            row[b * 32 + j] = uint8_t(blk[j] | (blk[j + 32] << 2) | (blk[j + 64] << 4) | (blk[j + 96] << 6));
                    }
                }
            }
        }
    }
    require(!bad_byte, "base3 data holds a byte >= 243, which no five trits produce");
    if (codes % 5 != 0 && bytes > 0) {
        const auto last = src[bytes - 1];
        int v = last;
        for (int d = 0; d < 5; ++d, v /= 3)
            if (d >= codes % 5) require(v % 3 == 1, "base3 padding holds nonzero codes");
    }
    return Out<uint8_t, 2>(out, {size_t(n), size_t(kp / 4)}, owner);
}

}  // namespace

NB_MODULE(_ext, m) {
    m.def("base3_to_2bit", &base3_to_2bit, nb::arg("packed"), nb::arg("n"), nb::arg("k"),
          "base3-packed ternary codes -> the 2bit kernel layout [n, ceil(k / 128) * 32]");
    m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"),
          nb::arg("impl") = "auto", nb::arg("out").none() = nb::none(), "LayerNorm over the last axis of x [M, D]");
    m.def("activation_", &activation_, nb::arg("x"), nb::arg("kind"), nb::arg("impl") = "auto",
          "in-place GELU (erf form) or QuickGELU on a contiguous float32 array");
    m.def("attention", &attention, nb::arg("qkv"), nb::arg("heads"), nb::arg("causal"), nb::arg("impl") = "auto",
          nb::arg("out").none() = nb::none(),
          "multi-head softmax attention: qkv [B, T, 3W] (q | k | v) -> [B, T, W]");
    m.doc() = "ternaryclip C++ kernels: ternary GEMM (2bit weights; int8 or float activations)";
    m.def("gemm", &gemm, nb::arg("x"), nb::arg("packed"), nb::arg("k"), nb::arg("scales"), nb::arg("group_size"),
          nb::arg("bias").none() = nb::none(), nb::arg("mode") = "fast", nb::arg("impl") = "auto",
          nb::arg("out").none() = nb::none(),
          "y[M, N] = x[M, K] . (scale * T)^T + bias; mode 'fast' (int8 activations) or 'exact' (float)");
    m.def("quantize_rows", &quantize_rows, nb::arg("x"), nb::arg("group_size"), nb::arg("impl") = "auto",
          "per-row absmax int8 quantization: (q [M, Kp], xscale [M], qsum [M, groups])");
    m.def("int_dot", &int_dot, nb::arg("q"), nb::arg("packed"), nb::arg("k"), nb::arg("group_size"),
          nb::arg("impl") = "auto", "integer dots out[M, N, G] = sum over group of t * q (for exactness tests)");
    m.def("cpu_has_avx2", &cpu_has_avx2);
    m.def("cpu_has_avx512_vnni", &cpu_has_avx512_vnni);
    m.def("set_num_threads", [](int n) {
#ifdef _OPENMP
        if (n < 1) throw std::invalid_argument("threads must be >= 1");
        omp_set_num_threads(n);
#endif
    });
    m.def("get_num_threads", []() {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    });
}
