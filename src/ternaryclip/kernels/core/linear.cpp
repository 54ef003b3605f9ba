// The ternary linear layer (linear.h): checks, GEMM choice, LayerNorm -> quantization, epilogue or passes.
#include "core/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/checked.h"
#include "core/parallel.h"
#include "core/pool.h"

namespace tclip {

namespace {

// Rows of x that LayerNorm and quantization take together through a per-thread buffer that stays in L1.
constexpr int64_t kNormRows = 16;

int64_t groups_of(int64_t k, int64_t group_size) { return k / group_size + (k % group_size != 0); }

// Scratch for the int8 activations of one GEMM call, kept per calling thread and only ever grown: fresh
// allocations of a few MB per call cost page faults that serialized the worker threads.  `q_written`: the
// end of the bytes an earlier call may have left nonzero (past it q is zero, as resize() makes it).
struct Scratch {
    int64_t q_written = 0;
    std::vector<int8_t> q;
    std::vector<float> xscale;
    std::vector<int32_t> qsum;
};

// LayerNorm then quantization, kNormRows rows at a time through a per-thread buffer: the normalized rows are
// never written out and read back.  The same row-wise calls as the two passes, so the same bits.
void normalize_and_quantize(const KernelTable& table, const KernelTable& ops, const LinearOptions& norm, const float* x,
                            int64_t m, const TernaryWeights& w, int8_t* q, float* xscale, int32_t* qsum) {
    Items blocks((m + kNormRows - 1) / kNormRows);
    run_parallel(m * w.k >= kParallelMinElements, [&] {
        thread_local std::vector<float> rows;
        if (rows.size() < size_t(kNormRows * w.k)) rows.resize(size_t(kNormRows * w.k));
        auto mine = blocks.join();
        for (int64_t b; mine.next(b);) {
            const int64_t r0 = b * kNormRows, count = std::min(kNormRows, m - r0);
            ops.layer_norm(x + r0 * w.k, count, w.k, norm.norm_weight, norm.norm_bias, norm.norm_eps, rows.data());
            table.quantize_rows(rows.data(), count, w.k, w.kp, w.group_size, w.scale_cols, q + r0 * w.kp, xscale + r0,
                                qsum + r0 * w.scale_cols);
        }
    });
}

// x [m, k] quantized per row into the calling thread's scratch (rows past m zero up to kTokenPad), through
// the LayerNorm of `ops` first when `norm` has one.
QuantizedRows quantize_into_scratch(const KernelTable& table, const KernelTable& ops, const float* x, int64_t m,
                                    const TernaryWeights& w, const LinearOptions& norm) {
    checked_add(m, kTokenPad, "the token count");
    const int64_t q_bytes = checked_mul(padded_rows(m), w.kp, "the quantized activations"), q_used = m * w.kp;
    const int64_t qsums = checked_mul(m, w.scale_cols, "the activation group sums");
    thread_local Scratch scratch;
    if (scratch.q.size() < size_t(q_bytes)) scratch.q.resize(size_t(q_bytes));
    // the padding rows [m, padded_rows(m)) must be zero: cleared where an earlier, larger call wrote them (a
    // query's 1-token GEMM used to clear 47 rows each call, a tenth of its time at K = 512)
    if (scratch.q_written > q_used)
        std::memset(scratch.q.data() + q_used, 0, size_t(std::min(q_bytes, scratch.q_written) - q_used));
    scratch.q_written = std::max(q_used, scratch.q_written > q_bytes ? scratch.q_written : q_used);
    if (scratch.xscale.size() < size_t(m)) scratch.xscale.resize(size_t(m));
    if (scratch.qsum.size() < size_t(qsums)) scratch.qsum.resize(size_t(qsums));
    if (norm.norm_weight != nullptr)
        normalize_and_quantize(table, ops, norm, x, m, w, scratch.q.data(), scratch.xscale.data(), scratch.qsum.data());
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

// The table whose GEMM over prepared weights runs `mode` for impl; nullptr where modes "bf16" and "exact"
// have none (they run the exact GEMM on the file layout there).
const KernelTable* prepared_table(const std::string& impl, Mode mode, const TernaryWeights& w) {
    return mode == Mode::fast ? &pick(impl, Op::gemm_fast, &w) : pick_bf16(impl, w);
}

const char* mode_name(Mode mode) { return mode == Mode::fast ? "fast" : mode == Mode::exact ? "exact" : "bf16"; }

void activate(const KernelTable& ops, Activation activation, float* y, int64_t count) {
    if (activation == Activation::gelu) ops.gelu(y, count);
    if (activation == Activation::quick_gelu) ops.quick_gelu(y, count);
}

// y += result, row-parallel past kParallelMinElements.
void add_into(float* y, const float* result, int64_t m, int64_t n) {
    parallel_for(m, m * n >= kParallelMinElements, [&](int64_t i) {
        for (int64_t j = 0; j < n; ++j) y[i * n + j] += result[i * n + j];
    });
}

}  // namespace

int64_t checked_padded_k(int64_t k) {
    require(k >= 1 && k <= kMaxK,
            [&] { return "k must be in [1, " + std::to_string(kMaxK) + "], got " + std::to_string(k); });
    return padded_k(k);
}

Mode parse_mode(const std::string& name) {
    if (name == "fast") return Mode::fast;
    if (name == "exact") return Mode::exact;
    if (name == "bf16") return Mode::bf16;
    throw std::invalid_argument("mode must be 'fast', 'exact' or 'bf16', got '" + name + "'");
}

Activation parse_activation(const std::string& name) {
    if (name.empty()) return Activation::none;
    if (name == "gelu") return Activation::gelu;
    if (name == "quick_gelu") return Activation::quick_gelu;
    throw std::invalid_argument("activation must be '', 'gelu' or 'quick_gelu', got '" + name + "'");
}

TernaryWeights checked_weights(const uint8_t* codes, const float* scales, const float* bias, const WeightShapes& s) {
    const int64_t kp = checked_padded_k(s.k);
    require(s.n >= 0, [&] { return "n must be >= 0, got " + std::to_string(s.n); });
    require(s.group_size >= 1, [&] { return "group_size must be positive, got " + std::to_string(s.group_size); });
    // the row count with a prepared layout's padding, times a row's bytes: no table's size can overflow
    checked_mul(checked_add(s.n, 64, "the row count"), kp / 4, "the prepared weights");
    if (s.code_rows >= 0) {
        require(s.code_rows == s.n, [&] {
            return "packed weights have " + std::to_string(s.code_rows) + " rows, n is " + std::to_string(s.n);
        });
        require(s.code_bytes == kp / 4, [&] {
            return "packed weights have " + std::to_string(s.code_bytes) + " bytes a row; k = " + std::to_string(s.k) +
                   " needs " + std::to_string(kp / 4);
        });
    }
    require(s.scale_rows == 1 || s.scale_rows == s.n, "scales must have 1 or N rows");
    require(s.scale_cols == 1 || s.scale_cols == groups_of(s.k, s.group_size),
            "scales must have 1 or ceil(k / group_size) columns");
    require(bias == nullptr || s.bias_size == s.n, "bias must have N elements");
    return TernaryWeights{
        codes, s.n, s.k, kp, scales, s.scale_rows, s.scale_cols, s.scale_cols == 1 ? s.k : s.group_size, bias};
}

Linear::Linear(const TernaryWeights& w, const KernelTable* table, const std::string& impl, Mode mode, bool prepared)
    : w_(w), table_(table), ops_(&pick(impl, Op::float_ops)), mode_(mode), prepared_(prepared) {
    if (prepared) prepared_bytes_ = table->prepared_bytes(w);
}

Linear Linear::file_layout(const TernaryWeights& w, const std::string& impl, Mode mode) {
    Linear layer(w, &pick(impl, mode == Mode::fast ? Op::gemm_fast : Op::gemm_exact, &w), impl, mode, false);
    if (mode == Mode::bf16) layer.bf16_ = pick_bf16(impl, w);
    return layer;
}

Linear Linear::prepare(const TernaryWeights& w, const std::string& impl, Mode mode) {
    const KernelTable* table = prepared_table(impl, mode, w);
    if (table == nullptr || table->prepare == nullptr) return file_layout(w, impl, mode);
    std::vector<uint8_t> bytes(size_t(table->prepared_bytes(w)));
    table->prepare(w, bytes.data());
    TernaryWeights prepared = w;
    prepared.packed = bytes.data();
    Linear layer(prepared, table, table->name, mode, true);
    layer.owned_ = std::move(bytes);  // the vector's buffer moves with it: w_.packed stays valid
    return layer;
}

Linear Linear::adopt(const TernaryWeights& w, int64_t bytes, const std::string& impl, Mode mode) {
    const KernelTable* table = prepared_table(impl, mode, w);
    require(table != nullptr && impl == table->name && table->prepare != nullptr,
            [&] { return "weights prepared for impl='" + impl + "' cannot run mode '" + mode_name(mode) + "' here"; });
    require(bytes == table->prepared_bytes(w), [&] {
        return "prepared weights have " + std::to_string(bytes) + " bytes, expected " +
               std::to_string(table->prepared_bytes(w));
    });
    return Linear(w, table, impl, mode, true);
}

void Linear::run(const float* x, int64_t m, float* y, const LinearOptions& options) const {
    require(m >= 0, [&] { return "x must have >= 0 rows, got " + std::to_string(m); });
    checked_mul(m, w_.k, "x's size");
    checked_mul(m, w_.n, "the output");
    const bool norm = options.norm_weight != nullptr || options.norm_bias != nullptr;
    require(!norm || (options.norm_weight != nullptr && options.norm_bias != nullptr),
            "a LayerNorm needs both its weight and its bias");
    require(!norm || ((options.norm_weight_size < 0 || options.norm_weight_size == w_.k) &&
                      (options.norm_bias_size < 0 || options.norm_bias_size == w_.k)),
            "norm weight and bias must have K elements");
    require(!norm || (std::isfinite(options.norm_eps) && options.norm_eps > 0),
            [&] { return "LayerNorm eps must be positive and finite, got " + std::to_string(options.norm_eps); });
    if (m == 0) return;
    if (prepared_)
        run_prepared(x, m, y, options);
    else
        run_file_layout(x, m, y, options);
}

// The GEMM over prepared weights, then the activation and the add, in its epilogue where the table can
// (per-row or per-tensor scales only), else as separate passes with the same bits.
void Linear::run_prepared(const float* x, int64_t m, float* y, const LinearOptions& options) const {
    const int64_t n = w_.n, k = w_.k;
    const Activation activation = options.activation;
    const bool bf16 = mode_ != Mode::fast;  // the bf16 unit's GEMM: "bf16", and "exact" split in three terms
    std::vector<float> normalized;          // on the bf16 unit: LayerNorm's pass, then the GEMM
    if (bf16 && options.norm_weight != nullptr) {
        normalized.resize(size_t(m * k));
        ops_->layer_norm(x, m, k, options.norm_weight, options.norm_bias, options.norm_eps, normalized.data());
    }
    const float* xs = normalized.empty() ? x : normalized.data();
    // What the epilogue does: the int8 GEMM's fused entry both, the bf16 GEMM the add, and that only where no
    // activation must come before it.
    const bool fused = w_.scale_cols == 1 && (bf16 || table_->gemm_fast_prepared_fused != nullptr);
    const bool act_in_epilogue = fused && !bf16 && activation != Activation::none;
    const bool add_in_epilogue = options.add && fused && (activation == Activation::none || act_in_epilogue);
    std::vector<float> result;  // the GEMM's output where y += it is a separate pass
    if (options.add && !add_in_epilogue) result.resize(size_t(m * n));
    float* dst = result.empty() ? y : result.data();
    const Fusion fusion{add_in_epilogue, act_in_epilogue ? activation : Activation::none};
    if (bf16) {
        table_->gemm_bf16_prepared(xs, m, w_, w_.packed, dst, fusion.add, mode_ == Mode::exact ? 3 : 1);
    } else {
        const QuantizedRows q = quantize_into_scratch(*table_, *ops_, xs, m, w_, options);
        if (fusion.add || fusion.activation != Activation::none)
            table_->gemm_fast_prepared_fused(q, w_, w_.packed, dst, fusion);
        else
            table_->gemm_fast_prepared(q, w_, w_.packed, dst);
    }
    if (!act_in_epilogue) activate(*ops_, activation, dst, m * n);
    if (!result.empty()) add_into(y, result.data(), m, n);
}

// The GEMM over the 2bit file layout: mode "fast" quantizes x (after the LayerNorm, fused with it), mode
// "exact" multiplies floats, mode "bf16" the rounded activations (on the bf16 unit over weights prepared
// for this call where the CPU has one); the activation and the add are separate passes.
void Linear::run_file_layout(const float* x, int64_t m, float* y, const LinearOptions& options) const {
    const int64_t n = w_.n, k = w_.k;
    std::vector<float> normalized;
    if (mode_ != Mode::fast && options.norm_weight != nullptr) {
        normalized.resize(size_t(m * k));
        ops_->layer_norm(x, m, k, options.norm_weight, options.norm_bias, options.norm_eps, normalized.data());
        x = normalized.data();
    }
    std::vector<float> result;
    if (options.add) result.resize(size_t(m * n));
    float* dst = options.add ? result.data() : y;
    if (mode_ == Mode::fast) {
        table_->gemm_fast(quantize_into_scratch(*table_, *ops_, x, m, w_, options), w_, dst);
    } else if (mode_ == Mode::exact) {
        table_->gemm_exact(x, m, w_, dst);
    } else if (bf16_ == nullptr) {
        table_->gemm_exact(round_into_scratch(x, m, k), m, w_, dst);
    } else {  // as amx::gemm_fast does for int8: the bf16 unit's layout made for this call
        std::vector<uint8_t> prepared(size_t(bf16_->prepared_bytes(w_)));
        bf16_->prepare(w_, prepared.data());
        bf16_->gemm_bf16_prepared(x, m, w_, prepared.data(), dst, false, 1);
    }
    activate(*ops_, options.activation, dst, m * n);
    if (options.add) add_into(y, result.data(), m, n);
}

bool fuses_epilogue(const std::string& impl, Mode mode) {
    return mode == Mode::fast && pick(impl, Op::gemm_fast).gemm_fast_prepared_fused != nullptr;
}

bool adds_in_epilogue(const std::string& impl, Mode mode) {
    const KernelTable& table = pick(impl, Op::gemm_fast);
    return mode != Mode::fast ? table.gemm_bf16_prepared != nullptr : table.gemm_fast_prepared_fused != nullptr;
}

}  // namespace tclip
