// CPU feature detection, once per process.
#include "core/cpu_features.h"

#include "x86/x86.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace tclip {

namespace {

#if defined(__aarch64__)
// The kernel's view of the CPU (Linux hwcaps; bits as in <asm/hwcap.h>, spelled out for old headers).
// Advanced SIMD is part of the aarch64 base; dotprod and i8mm are optional, so they are asked for.
#if defined(__linux__)
constexpr unsigned long kHwcapAsimd = 1ul << 1, kHwcapAsimdDp = 1ul << 20, kHwcap2I8mm = 1ul << 13;

void detect_arm(CpuFeatures& f) {
    const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    f.neon = (hwcap & kHwcapAsimd) != 0;
    f.neon_dotprod = f.neon && (hwcap & kHwcapAsimdDp) != 0;
    f.neon_i8mm = f.neon && (hwcap2 & kHwcap2I8mm) != 0;
}
#elif defined(__APPLE__)
bool sysctl_flag(const char* name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}

void detect_arm(CpuFeatures& f) {
    f.neon = true;  // every Apple Silicon CPU
    f.neon_dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
    f.neon_i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
}
#else
void detect_arm(CpuFeatures& f) { f.neon = true; }  // no way to ask: the baseline only
#endif
#endif

CpuFeatures detect() {
    CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
    f.avx2 = avx2::compiled() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    // CPUID.(EAX=7,ECX=1):EAX bit 4, which libgcc reports only with the OS saving the ymm state
    f.avx_vnni = f.avx2 && avxvnni::compiled() && __builtin_cpu_supports("avxvnni");
    f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
    f.avx512_vnni = f.avx512 && avx512::compiled() && __builtin_cpu_supports("avx512vnni");
    f.amx_int8 = f.avx512_vnni && amx::compiled() && __builtin_cpu_supports("amx-tile") &&
                 __builtin_cpu_supports("amx-int8") && amx::request_tile_state();
    f.amx_bf16 = f.amx_int8 && __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("avx512bf16");
#elif defined(__aarch64__)
    detect_arm(f);
#endif
    return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

}  // namespace tclip
