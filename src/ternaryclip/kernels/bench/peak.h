// The measured peak of the int8 dot instruction each fast path is built on, a register-only loop on
// one core: what `bench --kernels` compares the GEMMs with.
#pragma once

#include <cstdint>

namespace tclip {

// GOPS (2 ops a multiply-add) of back-to-back int8 dot instructions for about `seconds` on this
// thread: "avx2" vpmaddubsw + vpaddw (the AVX2 path's pair), "avxvnni" vpdpbusd on ymm (VEX), "avx512"
// vpdpbusd on zmm, "amx" tdpbsud on tiles.  0 where unavailable.
double int8_dot_peak_gops(const char* isa, double seconds);

}  // namespace tclip
