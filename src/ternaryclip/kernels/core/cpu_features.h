// What the CPU running this process offers, detected once.  The dispatch table (dispatch.cpp) reads
// these flags; nothing else asks the CPU.
#pragma once

namespace tclip {

struct CpuFeatures {
    // x86-64
    bool avx2 = false;         // AVX2 + FMA
    bool avx_vnni = false;     // ... + AVX-VNNI (VEX vpdpbusd on ymm: the ternary GEMM's dots without AVX-512)
    bool avx512 = false;       // AVX-512 F + BW + VL + DQ (the float ops)
    bool avx512_vnni = false;  // ... + VNNI (the ternary GEMM's vpdpbusd)
    bool amx_int8 = false;     // ... + AMX tiles with int8 dots, and the kernel let this process use them
    bool avx512_bf16 = false;  // AVX-512 F + BW + VL + DQ + BF16 (the fast attention's vdpbf16ps)
    bool amx_bf16 = false;     // ... + AMX bf16 dots and AVX-512 bf16 conversions (the fast attention)
    // aarch64 slot: NEON / dotprod / i8mm flags are filled in by the aarch64 detection (getauxval on
    // Linux, sysctlbyname on macOS) next to the x86 one in cpu_features.cpp.
    bool neon = false;
    bool neon_dotprod = false;
    bool neon_i8mm = false;
};

// The flags of this CPU (and of this build: a path that was not compiled in reads as absent).
const CpuFeatures& cpu_features();

}  // namespace tclip
