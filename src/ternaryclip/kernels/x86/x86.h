// The x86-64 kernels' entry points (avx2*.cpp, avx512*.cpp, amx*.cpp), filled into the x86 dispatch tables by
// x86/tables.cpp as arm/arm.h's are by arm/tables.cpp.  Each has a scalar reference in core/ref.cpp with the same
// results (core/ternary_gemm.h says how the bits match).  Off x86-64 the files compile to stubs whose
// `compiled()` is false, so core/cpu_features.cpp never reports their instruction sets.
#pragma once

#include "core/ternary_gemm.h"

namespace tclip {

namespace avx2 {
bool compiled();  // false when the build target is not x86-64
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum);
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y);
// The SIMD paths need groups that start on a 4-column boundary; other shapes use the reference.
bool supports(const TernaryWeights& w);
// The load-time layout (avx2.cpp: 8-row tiles, 16 columns a 32-byte vector) and the fast GEMM that
// reads it: up to 8 tokens (and the last 1-5 of a larger batch) straight from the prepared tiles,
// whole tiles of 6 tokens through the 16 x 6 tile kernel.
int64_t prepared_bytes(const TernaryWeights& w);
void prepare(const TernaryWeights& w, uint8_t* out);
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y);
}  // namespace avx2

// AVX-VNNI (avxvnni.cpp, one source compiled twice): avx2_fast.inc's fast GEMM with its int8 dots by vpdpbusd on
// ymm registers, over avx2's prepared layout (avx2::prepared_bytes / prepare); everything else is avx2's.
// avxvnni: the VEX instruction (-mavxvnni), called only where the CPU has AVX-VNNI; avxvnni_emulated: the same
// kernels with an exact AVX2 emulation of the instruction, for tests on any AVX2 CPU.
namespace avxvnni {
bool compiled();
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y);
// out[8 v + i] = vpdpbusd(acc, u, s) over `vectors` ymm vectors: the dot primitive alone (its test hook)
void dpbusd_vectors(const int32_t* acc, const uint8_t* u, const int8_t* s, int64_t vectors, int32_t* out);
}  // namespace avxvnni

namespace avxvnni_emulated {
bool compiled();
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y);
// out[8 v + i] = vpdpbusd(acc, u, s) over `vectors` ymm vectors: the dot primitive alone (its test hook)
void dpbusd_vectors(const int32_t* acc, const uint8_t* u, const int8_t* s, int64_t vectors, int32_t* out);
// dpbusd_vectors by the instruction in its EVEX form (AVX512-VNNI + VL): checks the emulation where the CPU has that
void dpbusd_evex_vectors(const int32_t* acc, const uint8_t* u, const int8_t* s, int64_t vectors, int32_t* out);
}  // namespace avxvnni_emulated

namespace avx512 {  // AVX-512: the fast path (VNNI), its quantization and exact mode (avx512_exact.cpp)
bool compiled();
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum);
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
void gemm_exact(const float* x, int64_t m, const TernaryWeights& w, float* y);
bool supports(const TernaryWeights& w);  // groups must start on 4-column boundaries
// The load-time panel layout (panel_layout.inc, the same as AMX's) and the fast GEMM that reads it.
int64_t prepared_bytes(const TernaryWeights& w);
void prepare(const TernaryWeights& w, uint8_t* out);
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y);
// y = act(x W^T + b) [+ y] in the epilogue, as amx::gemm_fast_prepared_fused (the same bits as the separate
// passes of ops_avx512).  Per-row or per-tensor scales.
void gemm_fast_prepared_fused(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y,
                              Fusion fusion);
}  // namespace avx512

namespace amx {             // AMX-INT8 (amx.cpp): the fast GEMM only, over its own load-time layout
bool compiled();            // false off x86-64 Linux
bool request_tile_state();  // asks the kernel for the AMX tile registers (once a process); false if refused
bool supports(const TernaryWeights& w);  // groups must start on 64-column boundaries
int64_t prepared_bytes(const TernaryWeights& w);
void prepare(const TernaryWeights& w, uint8_t* out);
void gemm_fast_prepared(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);  // prepares per call
// y = act(x W^T + b) [+ y], the activation (activation_avx512.h) and the add in the epilogue: the bits of
// gemm_fast_prepared followed by ops_avx512's activation and a float add.  Per-row or per-tensor scales.
void gemm_fast_prepared_fused(const QuantizedRows& x, const TernaryWeights& w, const uint8_t* prepared, float* y,
                              Fusion fusion);
}  // namespace amx

namespace amx_bf16 {  // AMX-BF16 (amx_bf16.cpp): modes "bf16" and "exact" over amx's load-time layout (amx::supports)
// terms = 1: ref::gemm_bf16's numbers; terms = 3 (x split exactly into three bf16): ref::gemm_exact's; both
// up to the order of the float32 sums.  `add`: y += them instead (per-row or per-tensor scales only).
// Called only where the CPU has AMX-BF16 (cpu_features().amx_bf16).
void gemm_prepared(const float* x, int64_t m, const TernaryWeights& w, const uint8_t* prepared, float* y, bool add,
                   int terms);
}  // namespace amx_bf16

}  // namespace tclip
