// Register-only loops of the int8 dot instructions (see peak.h).  In assembly so that the compiler
// neither removes nor reorders them; no ISA flags are needed for that, and the caller checks the CPU.
#include "bench/peak.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/cpu_features.h"

namespace tclip {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
// 8 vpmaddubsw (32 multiply-adds each) + 8 vpaddw into 8 accumulators per iteration.
__attribute__((target("avx2"))) void avx2_loop(int64_t iters) {
    asm volatile(
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpcmpeqb %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpcmpeqb %%ymm9, %%ymm9, %%ymm9\n\t"
        "1:\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm10\n\t"
        "vpaddw %%ymm10, %%ymm0, %%ymm0\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm11\n\t"
        "vpaddw %%ymm11, %%ymm1, %%ymm1\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm12\n\t"
        "vpaddw %%ymm12, %%ymm2, %%ymm2\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm13\n\t"
        "vpaddw %%ymm13, %%ymm3, %%ymm3\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm10\n\t"
        "vpaddw %%ymm10, %%ymm4, %%ymm4\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm11\n\t"
        "vpaddw %%ymm11, %%ymm5, %%ymm5\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm12\n\t"
        "vpaddw %%ymm12, %%ymm6, %%ymm6\n\t"
        "vpmaddubsw %%ymm8, %%ymm9, %%ymm13\n\t"
        "vpaddw %%ymm13, %%ymm7, %%ymm7\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(iters)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13");
}

// 12 VEX vpdpbusd on ymm (32 multiply-adds each) into 12 accumulators per iteration: AVX-VNNI (written with
// the {vex} prefix: the assembler's default for this mnemonic is the EVEX form of AVX512-VNNI).
__attribute__((target("avx2"))) void avxvnni_loop(int64_t iters) {
    asm volatile(
        "vpcmpeqb %%ymm12, %%ymm12, %%ymm12\n\t"
        "vpcmpeqb %%ymm13, %%ymm13, %%ymm13\n\t"
        "1:\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm0\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm1\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm2\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm3\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm4\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm5\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm6\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm7\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm8\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm9\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm10\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(iters)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13");
}

// 12 vpdpbusd (64 multiply-adds each) into 12 accumulators per iteration (enough chains to hide
// the instruction's latency at two a cycle).
__attribute__((target("avx512f"))) void avx512_loop(int64_t iters) {
    asm volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpternlogd $0xff, %%zmm17, %%zmm17, %%zmm17\n\t"
        "1:\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm18\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm19\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm20\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm21\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm22\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm23\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm24\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm25\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm26\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm27\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm28\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm29\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(iters)
        :
        : "cc", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
          "xmm27", "xmm28", "xmm29");
}

// 4 tdpbsud (16 x 16 x 64 multiply-adds each) into 4 accumulator tiles per iteration: the AMX GEMM's
// 2 x 2 blocking with its activation and weight tiles held in the unit.  The tile state was granted
// to the process at detection (cpu_features); the config lives on this thread until tilerelease.
void amx_loop(int64_t iters) {
    alignas(64) uint8_t config[64] = {};
    config[0] = 1;  // palette 1: 8 tiles of 16 lines x 64 bytes
    for (int t = 0; t < 8; ++t) {
        config[16 + 2 * t] = 64;
        config[48 + t] = 16;
    }
    asm volatile(
        "ldtilecfg %[config]\n\t"
        "tilezero %%tmm0\n\t"
        "tilezero %%tmm1\n\t"
        "tilezero %%tmm2\n\t"
        "tilezero %%tmm3\n\t"
        "tilezero %%tmm4\n\t"
        "tilezero %%tmm5\n\t"
        "tilezero %%tmm6\n\t"
        "tilezero %%tmm7\n\t"
        "1:\n\t"
        "tdpbsud %%tmm6, %%tmm4, %%tmm0\n\t"
        "tdpbsud %%tmm7, %%tmm4, %%tmm1\n\t"
        "tdpbsud %%tmm6, %%tmm5, %%tmm2\n\t"
        "tdpbsud %%tmm7, %%tmm5, %%tmm3\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "tilerelease\n\t"
        : [n] "+r"(iters)
        : [config] "m"(config)
        : "cc", "memory");
}
#endif

// Unused where no peak loop is compiled (aarch64).
[[maybe_unused]] double timed(void (*loop)(int64_t), double ops_per_iter, double seconds) {
    using clock = std::chrono::steady_clock;
    int64_t iters = 1 << 16;
    double best = 0.0, spent = 0.0;
    while (spent < seconds) {  // grow the loop until a run takes a few ms; keep the best rate
        const auto start = clock::now();
        loop(iters);
        const double s = std::chrono::duration<double>(clock::now() - start).count();
        spent += s;
        if (s > 0) best = std::max(best, double(iters) * ops_per_iter / s / 1e9);
        if (s < 0.005) iters *= 2;
    }
    return best;
}

}  // namespace

double int8_dot_peak_gops(const char* isa, double seconds) {
#if defined(__x86_64__) || defined(_M_X64)
    const CpuFeatures& cpu = cpu_features();
    if (std::strcmp(isa, "avx2") == 0 && cpu.avx2) return timed(avx2_loop, 8 * 32 * 2, seconds);
    if (std::strcmp(isa, "avxvnni") == 0 && cpu.avx_vnni) return timed(avxvnni_loop, 12 * 32 * 2, seconds);
    if (std::strcmp(isa, "avx512") == 0 && cpu.avx512_vnni) return timed(avx512_loop, 12 * 64 * 2, seconds);
    if (std::strcmp(isa, "amx") == 0 && cpu.amx_int8) return timed(amx_loop, 4 * 16 * 16 * 64 * 2, seconds);
#else
    (void)isa;
    (void)seconds;
#endif
    return 0.0;
}

}  // namespace tclip
