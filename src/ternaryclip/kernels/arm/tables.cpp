// The aarch64 dispatch tables (core/dispatch.h), filled by name as x86/tables.cpp fills the x86 ones,
// narrowest first: NEON, dotprod, i8mm.  A field left out is null: core/dispatch.cpp takes the nearest
// narrower table's (exact mode is the reference's on every aarch64 table).
#include "arm/arm.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace tclip {

namespace {
bool has_neon() { return cpu_features().neon; }
bool has_dotprod() { return cpu_features().neon_dotprod; }
bool has_i8mm() { return cpu_features().neon_i8mm; }
}  // namespace

// Baseline: quantization, the fast GEMM and the float ops.
extern const KernelTable neon_table = {
    .name = "neon",
    .float_ok = has_neon,
    .gemm_ok = has_neon,
    .supports = neon::supports,
    .quantize_rows = neon::quantize_rows,
    .int_dot = neon::int_dot,
    .gemm_fast = neon::gemm_fast,
    .layer_norm = ops_neon::layer_norm,
    .gelu = ops_neon::gelu,
    .quick_gelu = ops_neon::quick_gelu,
    .attention = ops_neon::attention,
};

// dotprod and i8mm: their own integer dots; quantization and the float ops come from "neon".
extern const KernelTable neon_dotprod_table = {
    .name = "dotprod",
    .float_ok = has_dotprod,
    .gemm_ok = has_dotprod,
    .supports = neon::supports,
    .int_dot = neon_dotprod::int_dot,
    .gemm_fast = neon_dotprod::gemm_fast,
};

extern const KernelTable neon_i8mm_table = {
    .name = "i8mm",
    .float_ok = has_i8mm,
    .gemm_ok = has_i8mm,
    .supports = neon::supports,
    .int_dot = neon_i8mm::int_dot,
    .gemm_fast = neon_i8mm::gemm_fast,
};

}  // namespace tclip
