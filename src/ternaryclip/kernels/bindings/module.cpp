// Python bindings (nanobind): argument marshalling only.  nanobind checks dtype, dimensionality and
// contiguity; here sizes are checked for consistency and every product of sizes for overflow
// (checked.h) before any pointer is used, then the op runs from the dispatch table (dispatch.h) with
// the GIL released.  Errors raise ValueError / TypeError, never crash.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/base3.h"
#include "core/checked.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/parallel.h"
#include "bench/peak.h"
#include "core/pool.h"
#include "core/ternary_gemm.h"

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

// The widest K the int32 accumulators hold without overflow (avx512.cpp, avx2.cpp): 2^23 columns.
constexpr int64_t kMaxK = int64_t(1) << 23;

int64_t dim(size_t d) { return int64_t(d); }

template <class T>
T* alloc(int64_t count, nb::capsule& owner) {
    T* data = new T[size_t(std::max<int64_t>(count, 1))];
    owner = nb::capsule(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    return data;
}

// The output: `out` when the caller passes one (checked to hold exactly `count` floats), else new.
float* output(const OutArg& out, int64_t count, nb::capsule& owner) {
    if (!out) return alloc<float>(count, owner);
    int64_t have = 1;
    for (size_t i = 0; i < out->ndim(); ++i) have = checked_mul(have, dim(out->shape(i)), "out's size");
    require(have == count, "out has " + std::to_string(have) + " elements, the result has " + std::to_string(count));
    return out->data();
}

int64_t checked_padded_k(int64_t k) {
    require(k >= 1 && k <= kMaxK, "k must be in [1, " + std::to_string(kMaxK) + "], got " + std::to_string(k));
    return padded_k(k);
}

TernaryWeights make_weights(const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales, int64_t group_size,
                            const std::optional<In1D>& bias) {
    const int64_t kp = checked_padded_k(k);
    require(group_size >= 1, "group_size must be positive");
    const int64_t n = dim(packed.shape(0));
    require(dim(packed.shape(1)) == kp / 4, "packed weights have " + std::to_string(packed.shape(1)) +
            " bytes a row; k = " + std::to_string(k) + " needs " + std::to_string(kp / 4));
    const int64_t rows = dim(scales.shape(0)), cols = dim(scales.shape(1));
    const int64_t groups = k / group_size + (k % group_size != 0);
    require(rows == 1 || rows == n, "scales must have 1 or N rows");
    require(cols == 1 || cols == groups, "scales must have 1 or ceil(k / group_size) columns");
    if (bias) require(dim(bias->shape(0)) == n, "bias must have N elements");
    return TernaryWeights{packed.data(), n, k, kp, scales.data(), rows, cols, cols == 1 ? k : group_size,
                          bias ? bias->data() : nullptr};
}

// Scratch for the int8 activations of one GEMM call, kept per calling thread and only ever grown:
// fresh allocations of a few MB per call cost page faults that serialized the worker threads.
struct Scratch {
    std::vector<int8_t> q;
    std::vector<float> xscale;
    std::vector<int32_t> qsum;
};

// Sizes of the quantized activations of m rows (overflow-checked; zero rows up to kTokenPad).
struct QuantSizes {
    int64_t q, q_used, qsum;
};

QuantSizes quant_sizes(int64_t m, const TernaryWeights& w) {
    checked_add(m, kTokenPad, "the token count");
    return {checked_mul(padded_rows(m), w.kp, "the quantized activations"), m * w.kp,
            checked_mul(m, w.scale_cols, "the activation group sums")};
}

// A LayerNorm in front of a GEMM (gemm_prepared's `norm`): the float ops table whose layer_norm the
// separate pass would run, and its weight, bias and eps over the K columns.
struct Norm {
    const KernelTable& ops;
    const float *weight, *bias;
    float eps;
};

// LayerNorm then quantization, 16 rows at a time through a per-thread buffer that stays in L1: the
// normalized rows are never written out and read back.  The same row-wise calls, so the same bits.
void normalize_and_quantize(const KernelTable& table, const Norm& norm, const float* x, int64_t m,
                            const TernaryWeights& w, int8_t* q, float* xscale, int32_t* qsum) {
    constexpr int64_t kRows = 16;
    Items blocks((m + kRows - 1) / kRows);
    run_parallel(m * w.k >= (int64_t(1) << 15), [&] {
        thread_local std::vector<float> rows;
        if (rows.size() < size_t(kRows * w.k)) rows.resize(size_t(kRows * w.k));
        auto mine = blocks.join();
        for (int64_t b; mine.next(b);) {
            const int64_t r0 = b * kRows, count = std::min(kRows, m - r0);
            norm.ops.layer_norm(x + r0 * w.k, count, w.k, norm.weight, norm.bias, norm.eps, rows.data());
            table.quantize_rows(rows.data(), count, w.k, w.kp, w.group_size, w.scale_cols, q + r0 * w.kp,
                                xscale + r0, qsum + r0 * w.scale_cols);
        }
    });
}

QuantizedRows quantize_into_scratch(const KernelTable& table, const float* x, int64_t m, const TernaryWeights& w,
                                    const QuantSizes& sizes, const Norm* norm = nullptr) {
    thread_local Scratch scratch;
    if (scratch.q.size() < size_t(sizes.q)) scratch.q.resize(size_t(sizes.q));
    std::memset(scratch.q.data() + sizes.q_used, 0, size_t(sizes.q - sizes.q_used));
    if (scratch.xscale.size() < size_t(m)) scratch.xscale.resize(size_t(m));
    if (scratch.qsum.size() < size_t(sizes.qsum)) scratch.qsum.resize(size_t(sizes.qsum));
    if (norm)
        normalize_and_quantize(table, *norm, x, m, w, scratch.q.data(), scratch.xscale.data(), scratch.qsum.data());
    else
        table.quantize_rows(x, m, w.k, w.kp, w.group_size, w.scale_cols, scratch.q.data(), scratch.xscale.data(),
                            scratch.qsum.data());
    return QuantizedRows{scratch.q.data(), scratch.xscale.data(), scratch.qsum.data(), m, w.kp};
}

// x rounded to bf16 (ref::round_bf16) into scratch of the calling thread, grown and never shrunk.
const float* round_into_scratch(const float* x, int64_t m, int64_t k) {
    thread_local std::vector<float> rounded;
    if (rounded.size() < size_t(m * k)) rounded.resize(size_t(m * k));
    float* out = rounded.data();  // the caller's buffer: inside the workers `rounded` names their own
    parallel_for(m, m * k >= kParallelMinElements, [&](int64_t i) { ref::round_bf16(x + i * k, k, out + i * k); });
    return out;
}

// Mode "bf16" from the 2bit file layout: the bf16 GEMM of the table `bf16` over weights prepared for this
// call (as amx::gemm_fast does for int8), or where there is none the exact GEMM of `exact` on the rounded
// activations.
void gemm_bf16(const KernelTable& exact, const KernelTable* bf16, const float* x, int64_t m, const TernaryWeights& w,
               float* y) {
    if (bf16 == nullptr) return exact.gemm_exact(round_into_scratch(x, m, w.k), m, w, y);
    std::vector<uint8_t> prepared(size_t(bf16->prepared_bytes(w)));
    bf16->prepare(w, prepared.data());
    bf16->gemm_bf16_prepared(x, m, w, prepared.data(), y, false, 1);
}

nb::object gemm(const In2D<float>& x, const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales,
                int64_t group_size, const std::optional<In1D>& bias, const std::string& mode, const std::string& impl,
                const OutArg& out) {
    TernaryWeights w = make_weights(packed, k, scales, group_size, bias);
    require(dim(x.shape(1)) == k, "x has " + std::to_string(x.shape(1)) + " columns, the weights expect " +
            std::to_string(k));
    require(mode == "fast" || mode == "exact" || mode == "bf16", "mode must be 'fast', 'exact' or 'bf16'");
    const int64_t m = dim(x.shape(0));
    const KernelTable& table = pick(impl, mode == "fast" ? Op::gemm_fast : Op::gemm_exact, &w);
    const KernelTable* bf16 = mode == "bf16" ? pick_bf16(impl, w) : nullptr;
    const QuantSizes sizes = quant_sizes(m, w);
    nb::capsule owner;
    float* y = output(out, checked_mul(m, w.n, "the output"), owner);
    {
        nb::gil_scoped_release release;
        if (mode == "exact") table.gemm_exact(x.data(), m, w, y);
        else if (mode == "bf16") gemm_bf16(table, bf16, x.data(), m, w, y);
        else if (m > 0) table.gemm_fast(quantize_into_scratch(table, x.data(), m, w, sizes), w, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 2>(y, {size_t(m), size_t(w.n)}, owner));
}

void require_prepared_mode(const std::string& mode) {
    require(mode == "fast" || mode == "bf16" || mode == "exact",
            "prepared weights run mode 'fast', 'bf16' or 'exact', got '" + mode + "'");
}

// The table whose GEMM over prepared weights runs `mode` for impl; nullptr where modes "bf16" and "exact"
// have none (they run the exact GEMM on the file layout there).
const KernelTable* prepared_table(const std::string& impl, const std::string& mode, const TernaryWeights& w) {
    return mode == "fast" ? &pick(impl, Op::gemm_fast, &w) : pick_bf16(impl, w);
}

// The weights in the load-time layout of the table `impl` picks for `mode`'s GEMM, and that table's
// name (to pass back to gemm_prepared); None when that table reads the 2bit file layout directly (for
// mode "bf16": when the exact GEMM runs it).
nb::object prepare_weights(const In2D<uint8_t>& packed, int64_t k, const In2D<float>& scales, int64_t group_size,
                           const std::string& impl, const std::string& mode) {
    require_prepared_mode(mode);
    const TernaryWeights w = make_weights(packed, k, scales, group_size, std::nullopt);
    const KernelTable* table = prepared_table(impl, mode, w);
    if (table == nullptr || table->prepare == nullptr) return nb::none();
    checked_mul(checked_add(w.n, 64, "the row count"), w.kp / 4, "the prepared weights");
    const int64_t bytes = table->prepared_bytes(w);
    nb::capsule owner;
    uint8_t* out = alloc<uint8_t>(bytes, owner);
    {
        nb::gil_scoped_release release;
        table->prepare(w, out);
    }
    return nb::make_tuple(Out<uint8_t, 1>(out, {size_t(bytes)}, owner), std::string(table->name));
}

Activation parse_activation(const std::string& name) {
    if (name.empty()) return Activation::none;
    if (name == "gelu") return Activation::gelu;
    if (name == "quick_gelu") return Activation::quick_gelu;
    throw std::invalid_argument("activation must be '', 'gelu' or 'quick_gelu', got '" + name + "'");
}

// The activation pass of `impl`'s float ops over y[count]: what a fused epilogue must equal.
void activate(const std::string& impl, Activation activation, float* y, int64_t count) {
    const KernelTable& ops = pick(impl, Op::float_ops);
    if (activation == Activation::gelu) ops.gelu(y, count);
    if (activation == Activation::quick_gelu) ops.quick_gelu(y, count);
}

// `mode`'s GEMM over prepared weights (prepare_weights); `impl` is the name it returned.  Then the
// activation, if any, and with `add` out += the result (out required): y = act(x W^T + b) [+ out], in
// the epilogue where the table can, else as separate passes (the same bits).  `norm` (weight, bias,
// eps): x goes through `impl`'s LayerNorm first (in mode "fast" fused with the quantization).
using NormArg = std::optional<std::tuple<In1D, In1D, float>>;
nb::object gemm_prepared(const In2D<float>& x, const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig,
                         nb::device::cpu>& prepared, int64_t n, int64_t k, const In2D<float>& scales,
                         int64_t group_size, const std::optional<In1D>& bias, const std::string& impl,
                         const OutArg& out, bool add, const std::string& activation_name, const NormArg& norm_arg,
                         const std::string& mode) {
    require_prepared_mode(mode);
    require(!add || out, "add needs out (the array to add to)");
    const Activation activation = parse_activation(activation_name);
    require(n >= 0, "n must be >= 0");
    const int64_t kp = checked_padded_k(k);
    require(group_size >= 1, "group_size must be positive");
    checked_mul(checked_add(n, 64, "the row count"), kp / 4, "the prepared weights");
    const int64_t rows = dim(scales.shape(0)), cols = dim(scales.shape(1));
    const int64_t groups = k / group_size + (k % group_size != 0);
    require(rows == 1 || rows == n, "scales must have 1 or N rows");
    require(cols == 1 || cols == groups, "scales must have 1 or ceil(k / group_size) columns");
    if (bias) require(dim(bias->shape(0)) == n, "bias must have N elements");
    const TernaryWeights w{prepared.data(), n, k, kp, scales.data(), rows, cols, cols == 1 ? k : group_size,
                           bias ? bias->data() : nullptr};
    require(dim(x.shape(1)) == k, "x has " + std::to_string(x.shape(1)) + " columns, the weights expect " +
            std::to_string(k));
    const KernelTable* table = prepared_table(impl, mode, w);
    require(table != nullptr && impl == table->name && table->prepare != nullptr,
            "weights prepared for impl='" + impl + "' cannot run mode '" + mode + "' here");
    require(dim(prepared.shape(0)) == table->prepared_bytes(w), "prepared weights have " +
            std::to_string(prepared.shape(0)) + " bytes, expected " + std::to_string(table->prepared_bytes(w)));
    std::optional<Norm> norm;
    if (norm_arg) {
        const auto& [weight, bias_, eps] = *norm_arg;
        require(dim(weight.shape(0)) == k && dim(bias_.shape(0)) == k, "norm weight and bias must have K elements");
        norm.emplace(Norm{pick(impl, Op::float_ops), weight.data(), bias_.data(), eps});
    }
    const int64_t m = dim(x.shape(0));
    const QuantSizes sizes = quant_sizes(m, w);
    nb::capsule owner;
    float* y = output(out, checked_mul(m, n, "the output"), owner);
    if (m > 0) {
        nb::gil_scoped_release release;
        const bool bf16 = mode != "fast";  // the bf16 unit's GEMM: "bf16", and "exact" split in three terms
        std::vector<float> normalized;  // with a norm: LayerNorm's pass, then the GEMM
        if (bf16 && norm) {
            normalized.resize(size_t(m * k));
            norm->ops.layer_norm(x.data(), m, k, norm->weight, norm->bias, norm->eps, normalized.data());
        }
        const float* xs = normalized.empty() ? x.data() : normalized.data();
        // What the epilogue does (per-row or per-tensor scales only): the int8 GEMM's fused entry both, the
        // bf16 GEMM the add, and that only where no activation must come before it.
        const bool fused = w.scale_cols == 1 && (bf16 || table->gemm_fast_prepared_fused != nullptr);
        const bool act_in_epilogue = fused && !bf16 && activation != Activation::none;
        const bool add_in_epilogue = add && fused && (activation == Activation::none || act_in_epilogue);
        std::vector<float> result;  // the GEMM's output where out += it is a separate pass
        if (add && !add_in_epilogue) result.resize(size_t(m * n));
        float* dst = result.empty() ? y : result.data();
        const Fusion fusion{add_in_epilogue, act_in_epilogue ? activation : Activation::none};
        if (bf16) {
            table->gemm_bf16_prepared(xs, m, w, prepared.data(), dst, fusion.add, mode == "exact" ? 3 : 1);
        } else {
            const QuantizedRows q = quantize_into_scratch(*table, xs, m, w, sizes, norm ? &*norm : nullptr);
            if (fusion.add || fusion.activation != Activation::none)
                table->gemm_fast_prepared_fused(q, w, prepared.data(), dst, fusion);
            else
                table->gemm_fast_prepared(q, w, prepared.data(), dst);
        }
        if (activation != Activation::none && !act_in_epilogue) activate(impl, activation, dst, m * n);
        if (!result.empty())
            parallel_for(m, m * n >= (int64_t(1) << 15), [&](int64_t i) {
                for (int64_t j = 0; j < n; ++j) y[i * n + j] += result[size_t(i * n + j)];
            });
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
    TernaryWeights w{packed.data(), dim(packed.shape(0)), k, kp, &unit, 1, groups, groups == 1 ? k : group_size,
                     nullptr};
    require(dim(q.shape(1)) == kp, "q must have kp = ceil(k / 128) * 128 columns, zero padded");
    const int64_t m = dim(q.shape(0));
    const KernelTable& table = pick(impl, Op::int_dot, &w);
    const QuantSizes sizes = quant_sizes(m, w);
    nb::capsule owner;
    int32_t* out = alloc<int32_t>(checked_mul(m, w.n, groups, "the integer dots"), owner);
    std::vector<int32_t> qsum(size_t(sizes.qsum));
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
        std::vector<int8_t> padded(size_t(sizes.q), 0);
        if (m > 0) std::memcpy(padded.data(), qd, size_t(sizes.q_used));
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
    float* y = output(out, checked_mul(m, d, "x's size"), owner);
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
                     bool causal, const std::string& impl, const OutArg& out, bool fast) {
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
    float* y = output(out, checked_mul(batch, t, width, "the attention output"), owner);
    {
        nb::gil_scoped_release release;
        (fast && table.attention_fast ? table.attention_fast : table.attention)(qkv.data(), batch, t, width, heads,
                                                                                causal, y);
    }
    if (out) return nb::none();
    return nb::cast(Out<float, 3>(y, {size_t(batch), size_t(t), size_t(width)}, owner));
}

Out<uint8_t, 2> base3_to_2bit_array(const nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>& packed,
                              int64_t n, int64_t k) {
    require(n >= 0, "n must be >= 0");
    const int64_t kp = checked_padded_k(k);
    const int64_t bytes = base3_bytes(checked_mul(n, k, "n * k"));
    require(dim(packed.shape(0)) == bytes, "base3 data has " + std::to_string(packed.shape(0)) + " bytes, expected " +
            std::to_string(bytes) + " for [" + std::to_string(n) + ", " + std::to_string(k) + "]");
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
            std::to_string(std::max(1u, std::thread::hardware_concurrency())) + " cores, at most 1024), got " +
            std::to_string(n));
    set_num_threads(int(n));
}

}  // namespace

NB_MODULE(_ext, m) {
    m.doc() = "ternaryclip C++ kernels: ternary GEMM (2bit weights; int8 or float activations)";
    m.def("base3_to_2bit", &base3_to_2bit_array, nb::arg("packed"), nb::arg("n"), nb::arg("k"),
          "base3-packed ternary codes -> the 2bit kernel layout [n, ceil(k / 128) * 32]");
    m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"),
          nb::arg("impl") = "auto", nb::arg("out").none() = nb::none(), "LayerNorm over the last axis of x [M, D]");
    m.def("activation_", &activation_, nb::arg("x"), nb::arg("kind"), nb::arg("impl") = "auto",
          "in-place GELU (erf form) or QuickGELU on a contiguous float32 array");
    m.def("attention", &attention, nb::arg("qkv"), nb::arg("heads"), nb::arg("causal"), nb::arg("impl") = "auto",
          nb::arg("out").none() = nb::none(), nb::arg("fast") = false,
          "multi-head softmax attention: qkv [B, T, 3W] (q | k | v) -> [B, T, W]; fast: bf16 products where the "
          "table has them");
    m.def("gemm", &gemm, nb::arg("x"), nb::arg("packed"), nb::arg("k"), nb::arg("scales"), nb::arg("group_size"),
          nb::arg("bias").none() = nb::none(), nb::arg("mode") = "fast", nb::arg("impl") = "auto",
          nb::arg("out").none() = nb::none(),
          "y[M, N] = x[M, K] . (scale * T)^T + bias; mode 'fast' (int8 activations), 'exact' (float) or 'bf16' "
          "(activations rounded to bf16)");
    m.def("prepare_weights", &prepare_weights, nb::arg("packed"), nb::arg("k"), nb::arg("scales"),
          nb::arg("group_size"), nb::arg("impl") = "auto", nb::arg("mode") = "fast",
          "(the weights in the load-time layout of mode's GEMM ('fast' or 'bf16'), the impl name that reads them), "
          "or None");
    m.def("gemm_prepared", &gemm_prepared, nb::arg("x"), nb::arg("prepared"), nb::arg("n"), nb::arg("k"),
          nb::arg("scales"), nb::arg("group_size"), nb::arg("bias").none() = nb::none(), nb::arg("impl"),
          nb::arg("out").none() = nb::none(), nb::arg("add") = false, nb::arg("activation") = "",
          nb::arg("norm").none() = nb::none(), nb::arg("mode") = "fast",
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
        "GOPS of a register-only loop of the int8 dot instruction of 'avx2', 'avx512' or 'amx' on this thread (0: absent)");
    m.def("impl_names", &impl_names, "the impl= names of this build, narrowest first");
    m.def("cpu_has_avx2", [] { return cpu_features().avx2; });
    m.def("cpu_has_avx512_vnni", [] { return cpu_features().avx512_vnni; });
    m.def("cpu_has_amx_int8", [] { return cpu_features().amx_int8; });
    m.def("cpu_has_avx512_bf16", [] { return cpu_features().avx512_bf16; });
    m.def("cpu_has_amx_bf16", [] { return cpu_features().amx_bf16; });
    m.def(
        "fuses_epilogue",
        [](const std::string& impl, const std::string& mode) {
            require_prepared_mode(mode);
            const KernelTable& table = pick(impl, Op::gemm_fast);
            return mode == "fast" && table.gemm_fast_prepared_fused != nullptr;
        },
        nb::arg("impl"), nb::arg("mode") = "fast",
        "whether gemm_prepared's norm, activation and add run inside the GEMM for weights prepared for impl and mode");
    m.def(
        "adds_in_epilogue",
        [](const std::string& impl, const std::string& mode) {
            require_prepared_mode(mode);
            const KernelTable& table = pick(impl, Op::gemm_fast);
            return mode != "fast" ? table.gemm_bf16_prepared != nullptr : table.gemm_fast_prepared_fused != nullptr;
        },
        nb::arg("impl"), nb::arg("mode") = "fast",
        "whether gemm_prepared(add=True) adds in the GEMM's epilogue for weights prepared for impl and mode");
    m.def(
        "fast_gemm_impl", [](const std::string& impl) { return std::string(pick(impl, Op::gemm_fast).name); },
        nb::arg("impl") = "auto", "the table whose fast GEMM runs for impl (its own or a narrower one's)");
    m.def(
        "fast_attention_impl", [](const std::string& impl) { return std::string(fast_attention_name(impl)); },
        nb::arg("impl") = "auto",
        "what the fast mode's attention multiplies with for impl: 'amx_bf16', 'avx512_bf16' or 'float32' "
        "(head widths a multiple of 32; others run float32)");
    m.def("set_num_threads", &set_threads, nb::arg("n"), "threads of the calling thread's kernels (its own pool, core/pool.h)");
    m.def("get_num_threads", &num_threads);
    m.def("max_threads", &thread_cap, "the largest thread count set_num_threads accepts");
}
