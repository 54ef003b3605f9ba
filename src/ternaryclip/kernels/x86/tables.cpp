// The x86-64 dispatch tables (core/dispatch.h), filled by name, narrowest first: AVX2, AVX-VNNI, AVX-512, AMX.  A field
// left out is null: the table has no version of that op and core/dispatch.cpp takes the nearest narrower
// table's (never for the prepared-layout fields, which belong to their table's kernels).
#include "core/attention_int8.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "x86/x86.h"

namespace tclip {

namespace {
bool has_avx2() { return cpu_features().avx2; }
bool has_avx_vnni() { return cpu_features().avx_vnni; }
bool has_avx512() { return cpu_features().avx512; }
bool has_avx512_vnni() { return cpu_features().avx512_vnni; }
bool has_amx_int8() { return cpu_features().amx_int8; }
}  // namespace

// AVX2 + FMA: quantization, both GEMMs (the fast one also over its own load-time layout), the float ops, and
// the fast mode's int8 attention (vpmaddubsw).
extern const KernelTable avx2_table = {
    .name = "avx2",
    .float_ok = has_avx2,
    .gemm_ok = has_avx2,
    .supports = avx2::supports,
    .quantize_rows = avx2::quantize_rows,
    .int_dot = avx2::int_dot,
    .gemm_fast = avx2::gemm_fast,
    .gemm_exact = avx2::gemm_exact,
    .layer_norm = ops_avx2::layer_norm,
    .gelu = ops_avx2::gelu,
    .quick_gelu = ops_avx2::quick_gelu,
    .attention = ops_avx2::attention,
    .prepared_bytes = avx2::prepared_bytes,
    .prepare = avx2::prepare,
    .gemm_fast_prepared = avx2::gemm_fast_prepared,
    .attention_int8 = ops_avx2int8::attention_int8,
};

// AVX-VNNI (Alder Lake and later, Sapphire Rapids): the AVX2 fast GEMM with its dots by vpdpbusd on ymm registers,
// over the AVX2 layout (x86/avxvnni.cpp); quantization, exact mode and the float ops are AVX2's.
extern const KernelTable avxvnni_table = {
    .name = "avxvnni",
    .float_ok = has_avx_vnni,
    .gemm_ok = has_avx_vnni,
    .supports = avx2::supports,
    .int_dot = avxvnni::int_dot,
    .gemm_fast = avxvnni::gemm_fast,
    .prepared_bytes = avx2::prepared_bytes,
    .prepare = avx2::prepare,
    .gemm_fast_prepared = avxvnni::gemm_fast_prepared,
};

// The same kernels with vpdpbusd emulated exactly in AVX2: avxvnni's tests on any AVX2 CPU.  Never "auto".
extern const KernelTable avxvnni_emulated_table = {
    .name = "avxvnni_emulated",
    .automatic = false,
    .float_ok = has_avx2,
    .gemm_ok = has_avx2,
    .supports = avx2::supports,
    .int_dot = avxvnni_emulated::int_dot,
    .gemm_fast = avxvnni_emulated::gemm_fast,
    .prepared_bytes = avx2::prepared_bytes,
    .prepare = avx2::prepare,
    .gemm_fast_prepared = avxvnni_emulated::gemm_fast_prepared,
};

// AVX-512: quantization, the fast GEMM (VNNI, with the activation and residual add in its epilogue), exact
// mode and the float ops; the fast mode's attention in int8 with vpdpbusd (1.4x-1.5x vdpbf16ps on Zen 4), and
// mode "bf16"'s with vdpbf16ps where the CPU has AVX512-BF16 (float32 where it does not).
extern const KernelTable avx512_table = {
    .name = "avx512",
    .float_ok = has_avx512,
    .gemm_ok = has_avx512_vnni,
    .supports = avx512::supports,
    .quantize_rows = avx512::quantize_rows,
    .int_dot = avx512::int_dot,
    .gemm_fast = avx512::gemm_fast,
    .gemm_exact = avx512::gemm_exact,
    .layer_norm = ops_avx512::layer_norm,
    .gelu = ops_avx512::gelu,
    .quick_gelu = ops_avx512::quick_gelu,
    .attention = ops_avx512::attention,
    .prepared_bytes = avx512::prepared_bytes,
    .prepare = avx512::prepare,
    .gemm_fast_prepared = avx512::gemm_fast_prepared,
    .attention_fast = ops_avx512bf16::attention_bf16,
    .attention_int8 = ops_avx512vnni::attention_int8,
    .gemm_fast_prepared_fused = avx512::gemm_fast_prepared_fused,
};

// AMX: the fast GEMM (INT8) over its own layout, the fast mode's attention and mode "bf16"'s GEMM over the
// same layout (BF16); quantization and exact mode come from AVX-512.
extern const KernelTable amx_table = {
    .name = "amx",
    .float_ok = has_amx_int8,
    .gemm_ok = has_amx_int8,
    .supports = amx::supports,
    .gemm_fast = amx::gemm_fast,
    .layer_norm = ops_avx512::layer_norm,
    .gelu = ops_avx512::gelu,
    .quick_gelu = ops_avx512::quick_gelu,
    .attention = ops_avx512::attention,
    .prepared_bytes = amx::prepared_bytes,
    .prepare = amx::prepare,
    .gemm_fast_prepared = amx::gemm_fast_prepared,
    .attention_fast = ops_amx::attention_bf16,
    .gemm_fast_prepared_fused = amx::gemm_fast_prepared_fused,
    .gemm_bf16_prepared = amx_bf16::gemm_prepared,
};

}  // namespace tclip
