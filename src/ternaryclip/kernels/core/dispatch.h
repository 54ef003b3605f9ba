// The kernel dispatch table: one struct of op function pointers per instruction set (as ggml's CPU
// backend does), chosen once from the CPU's features, or forced by name with `impl=`.
//
// A table may leave an entry null: that instruction set has no version of the op, and the next
// narrower table's entry is used (the AVX-512 table, for one, only has the fast GEMM and the float
// ops; quantization and exact mode come from AVX2).  Tables are resolved once so that every entry of
// a picked table is callable.
//
// Weight preparation: an instruction set may own a weight layout of its own, made once at load time
// (`prepared_bytes` / `prepare`), which its GEMM entries then read instead of the 2bit file layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/ternary_gemm.h"

namespace tclip {

// Filled by field name (x86/tables.cpp, arm/tables.cpp); a field left out is null.
struct KernelTable {
    const char* name = "";         // the `impl=` name
    bool automatic = true;         // "auto" may pick it (false: a test build, reached only by its name)
    bool (*float_ok)() = nullptr;  // the CPU runs this table's float ops
    bool (*gemm_ok)() = nullptr;   // ... and its ternary GEMM entries (AVX-512 also needs VNNI)
    // Whether this table's GEMM entries handle these weights (group boundaries); nullptr: all weights.
    bool (*supports)(const TernaryWeights&) = nullptr;

    // ternary GEMM (ternary_gemm.h)
    void (*quantize_rows)(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups,
                          int8_t* q, float* xscale, int32_t* qsum) = nullptr;
    void (*int_dot)(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) = nullptr;
    void (*gemm_fast)(const QuantizedRows& x, const TernaryWeights& w, float* y) = nullptr;
    void (*gemm_exact)(const float* x, int64_t m, const TernaryWeights& w, float* y) = nullptr;

    // float transformer ops (ops.h)
    void (*layer_norm)(const float* x, int64_t m, int64_t d, const float* w, const float* b, float eps,
                       float* y) = nullptr;
    void (*gelu)(float* x, int64_t n) = nullptr;
    void (*quick_gelu)(float* x, int64_t n) = nullptr;
    void (*attention)(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal,
                      float* out) = nullptr;

    // Load-time weight preparation into this table's own layout, and the fast GEMM that reads it.  Never
    // inherited from another table (a layout belongs to its kernels); nullptr: the fast GEMM reads the
    // 2bit file layout directly.
    int64_t (*prepared_bytes)(const TernaryWeights& w) = nullptr;
    void (*prepare)(const TernaryWeights& w, uint8_t* out) = nullptr;
    void (*gemm_fast_prepared)(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared,
                               float* y) = nullptr;

    // The fast mode's attention in a lower precision (bf16) where this table has one; nullptr: the float32
    // `attention` serves both modes.  Never inherited (a narrower table has no such path).
    void (*attention_fast)(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal,
                           float* out) = nullptr;
    // The fast mode's attention with int8 products (core/attention_int8.h) where this table has one and it beats
    // attention_fast on the CPUs it serves; mode "bf16" keeps attention_fast.  Never inherited.
    void (*attention_int8)(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal,
                           float* out) = nullptr;

    // gemm_fast_prepared with an activation and/or a residual add in its epilogue (y = act(x W^T + b) [+ y],
    // the same bits as the separate passes with this table's float ops); per-row or per-tensor scales
    // only.  nullptr: the bindings run the separate passes.
    void (*gemm_fast_prepared_fused)(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y,
                                     Fusion fusion) = nullptr;

    // Mode "bf16" (ref::gemm_bf16: activations rounded to bf16, float32 sums; terms = 1) and mode "exact"
    // (activations split exactly into three bf16; terms = 3) over this table's prepared layout, where the
    // CPU has the unit for it (see pick_bf16); `add`: y += the result (per-row or per-tensor scales only).
    // nullptr: both modes run gemm_exact on the file layout (mode "bf16" on the rounded activations).
    // Never inherited.
    void (*gemm_bf16_prepared)(const float* x, int64_t m, const TernaryWeights& w, const uint8_t* prepared, float* y,
                               bool add, int terms) = nullptr;
};

// Which entry a caller needs: the table is picked for it (availability and fallback are per op).
enum class Op { quantize, int_dot, gemm_fast, gemm_exact, float_ops };

// Each architecture's tables (x86/tables.cpp: x86-64 builds, which define TCLIP_X86_TABLES; arm/tables.cpp:
// aarch64 builds, TCLIP_NEON_TABLES), filled by field name.
extern const KernelTable avx2_table, avxvnni_emulated_table, avxvnni_table, avx512_table, amx_table;
extern const KernelTable neon_table, neon_dotprod_table, neon_i8mm_table;

// The table for `op`: "auto" takes the widest one this CPU (and these weights, when given) supports;
// a named one must be available, else std::invalid_argument.  Every entry of the result is non-null.
const KernelTable& pick(const std::string& impl, Op op, const TernaryWeights* w = nullptr);

// Modes "bf16" and "exact": the table whose gemm_bf16_prepared runs for `impl` and these weights, or nullptr
// where none does (no such entry in the table `impl` names or, for "auto", in any; a CPU without AMX-BF16;
// weights the table does not support): there both run the exact GEMM on the file layout.
const KernelTable* pick_bf16(const std::string& impl, const TernaryWeights& w);

// What the fast mode's attention (int8: mode "fast"; else mode "bf16") multiplies with for `impl` on this CPU:
// "avx512_int8" (vpdpbusd) or "avx2_int8" (vpmaddubsw), for head widths a multiple of 16; "amx_bf16" (tiles) or
// "avx512_bf16" (vdpbf16ps), for head widths a multiple of 32; or "float32" (the float attention; other widths
// always).
const char* fast_attention_name(const std::string& impl, bool int8);

// The `impl=` names compiled into this build, narrowest first ("ref" first).
std::vector<std::string> impl_names();
// Those of them that "auto" never picks (test builds: avxvnni_emulated).
std::vector<std::string> test_impl_names();

}  // namespace tclip
