// The ternary linear layer, y = act(LN?(x) W^T + b) [+ y]: which GEMM runs (over the 2bit file layout or
// over weights prepared at load, modes "fast" / "exact" / "bf16"), the LayerNorm -> quantization order,
// whether the activation and the residual add run in the GEMM's epilogue or as separate passes (the same
// bits either way), and the scratch buffers.  Free of Python: the bindings (bindings/module.cpp) only
// convert arguments, and the C++ tests (tests/arm/kernel_tests.cpp, on x86 and under qemu) run it too.
//
// Every size a caller gives is checked here (core/checked.h) before a pointer is used; a mistake throws
// std::invalid_argument naming the argument.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/ternary_gemm.h"

namespace tclip {

// The widest K the int32 accumulators hold without overflow (x86/avx512.cpp, x86/avx2.cpp): 2^23 columns.
constexpr int64_t kMaxK = int64_t(1) << 23;

// k checked against [1, kMaxK], rounded up to whole 128-column blocks.
int64_t checked_padded_k(int64_t k);

enum class Mode { fast, exact, bf16 };
Mode parse_mode(const std::string& name);              // "fast", "exact" or "bf16"
Activation parse_activation(const std::string& name);  // "", "gelu" or "quick_gelu"

// The shapes of a caller's weight arrays: codes [n, kp / 4] (2bit file layout; prepared bytes are sized
// by their table), scales [scale_rows, scale_cols], bias [bias_size] (-1: none).
struct WeightShapes {
    int64_t n, k, group_size, scale_rows, scale_cols;
    int64_t code_rows = -1, code_bytes = -1;  // the file layout's shape; -1: not a file layout (prepared)
    int64_t bias_size = -1;
};

// The weights checked: k in range, scales of 1 or n rows and 1 or ceil(k / group_size) columns, the bias
// of n floats, the code array of kp / 4 bytes a row (n rows), sizes that overflow nothing.
TernaryWeights checked_weights(const uint8_t* codes, const float* scales, const float* bias, const WeightShapes& s);

// What runs around the GEMM.  `norm_weight` / `norm_bias` ([k] each; their sizes, where the caller knows
// them, are checked): x goes through the LayerNorm of the layer's float ops first (fused with the int8
// quantization in mode "fast"); `add`: y += the result instead of y = it.
struct LinearOptions {
    Activation activation = Activation::none;
    bool add = false;
    const float* norm_weight = nullptr;
    const float* norm_bias = nullptr;
    float norm_eps = 0.0f;
    int64_t norm_weight_size = -1, norm_bias_size = -1;  // -1: not known (a C++ caller's [k] arrays)
};

class Linear {
  public:
    // Over the 2bit file layout, prepared into the load-time layout of the table `impl` picks for `mode`
    // (owned by the layer) where that table has one; else the layer reads the file layout (prepared() false).
    static Linear prepare(const TernaryWeights& file_layout, const std::string& impl, Mode mode);
    // Over the file layout as it is, as gemm() runs it (mode "bf16" on the AMX-BF16 unit prepares per call).
    static Linear file_layout(const TernaryWeights& file_layout, const std::string& impl, Mode mode);
    // Over `bytes` prepared earlier for `impl` and `mode` (w.packed points at them, not owned): refused unless
    // `impl` names the table that runs `mode` for these weights here and the size is that table's.
    static Linear adopt(const TernaryWeights& w, int64_t bytes, const std::string& impl, Mode mode);

    // Moves only: a copy would point at the original's prepared bytes.
    Linear(Linear&&) = default;
    Linear& operator=(Linear&&) = default;
    Linear(const Linear&) = delete;
    Linear& operator=(const Linear&) = delete;

    // x [m, k] -> y [m, n] (y = act(LN?(x) W^T + b), or y += it with options.add).  x and y must not overlap.
    void run(const float* x, int64_t m, float* y, const LinearOptions& options = {}) const;

    bool prepared() const { return prepared_; }
    const char* impl() const { return table_->name; }  // the table whose layout the weights are in
    const TernaryWeights& weights() const { return w_; }
    int64_t prepared_bytes() const { return prepared_bytes_; }
    // The owned prepared bytes, handed to the caller (the layer keeps pointing at them: keep them alive).
    std::vector<uint8_t> release_prepared() { return std::move(owned_); }

  private:
    Linear(const TernaryWeights& w, const KernelTable* table, const std::string& impl, Mode mode, bool prepared);
    void run_prepared(const float* x, int64_t m, float* y, const LinearOptions& options) const;
    void run_file_layout(const float* x, int64_t m, float* y, const LinearOptions& options) const;

    TernaryWeights w_;
    const KernelTable* table_;           // the GEMM's table (for a file layout in mode "bf16": the exact GEMM's)
    const KernelTable* ops_;             // the float ops of `impl`: LayerNorm and the separate activation pass
    const KernelTable* bf16_ = nullptr;  // file layout, mode "bf16": the bf16 unit's table, where there is one
    Mode mode_;
    bool prepared_;
    int64_t prepared_bytes_ = 0;
    std::vector<uint8_t> owned_;
};

// Whether Linear::run's norm, activation and add run inside the GEMM (mode "fast" on a table with a fused
// epilogue), and whether its add does (also mode "bf16" / "exact" on the bf16 unit), for weights prepared
// for `impl` and `mode` with one scale a row (per-group scales: separate passes).
bool fuses_epilogue(const std::string& impl, Mode mode);
bool adds_in_epilogue(const std::string& impl, Mode mode);

}  // namespace tclip
