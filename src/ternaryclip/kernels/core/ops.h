// Declarations of the float transformer ops (core/ops.cpp), compiled once per instruction set, each copy in
// its own namespace: generic (the reference, any CPU), AVX2 + FMA, AVX-512 and, on aarch64, NEON (CMakeLists.txt).
#pragma once
#include <cstdint>

#define TCLIP_DECLARE_OPS                                                                                       \
    void layer_norm(const float* x, int64_t m, int64_t d, const float* w, const float* b, float eps, float* y); \
    void gelu(float* x, int64_t n);                                                                             \
    void quick_gelu(float* x, int64_t n);                                                                       \
    void attention(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out);

namespace tclip::ops_generic {
TCLIP_DECLARE_OPS
}
namespace tclip::ops_avx2 {
TCLIP_DECLARE_OPS
}
namespace tclip::ops_avx512 {
TCLIP_DECLARE_OPS
}
namespace tclip::ops_neon {
TCLIP_DECLARE_OPS
}  // namespace tclip::ops_neon

// The fast mode's attention with bf16 products (the same definition, attention_amx.cpp's header):
// attention_amx.cpp on AMX-BF16 tiles, falling back to attention_avx512bf16.cpp's vdpbf16ps, falling back to
// ops_avx512's float32 where the CPU lacks the instruction.
namespace tclip::ops_amx {
void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out);
}
namespace tclip::ops_avx512bf16 {
void attention_bf16(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out);
}
