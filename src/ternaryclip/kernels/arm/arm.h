// aarch64 kernels (neon.cpp, neon_dotprod.cpp, neon_i8mm.cpp): the fast path of ternary_gemm.h in
// three instruction-set levels, each bitwise equal to ref.cpp.
//
//   neon          ARMv8.0 Advanced SIMD (every aarch64 CPU, e.g. the Pi 4's Cortex-A72): smlal into int16
//   neon_dotprod  ARMv8.2 dotprod (Cortex-A76/A55, Graviton 2, Apple M1): sdot into int32
//   neon_i8mm     ARMv8.6 i8mm (Graviton 3, Apple M2+, Cortex-X2/A710): smmla 2 x 8 by 8 x 2 blocks
//
// Only the baseline file is built for plain armv8-a; the other two are compiled with +dotprod /
// +i8mm and only called when the CPU's hwcaps say so (cpu_features.cpp), so a CPU without the
// extension gets the next narrower table and never an illegal instruction.
#pragma once

#include "core/ternary_gemm.h"

namespace tclip {

namespace neon {
bool supports(const TernaryWeights& w);  // groups must start on a 4-column boundary (as on x86)
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t kp, int64_t group_size, int64_t groups, int8_t* q,
                   float* xscale, int32_t* qsum);
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
}  // namespace neon

namespace neon_dotprod {
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
}  // namespace neon_dotprod

namespace neon_i8mm {
void int_dot(const QuantizedRows& x, const TernaryWeights& w, int32_t* out);
void gemm_fast(const QuantizedRows& x, const TernaryWeights& w, float* y);
}  // namespace neon_i8mm

}  // namespace tclip
