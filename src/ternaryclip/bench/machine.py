"""What a benchmark ran on, written into its JSON report.

Absolute times, and even ratios against a library that dispatches on the CPU, mean little without
the CPU, the kernel path our runtime took and the variables that force one (``TERNARYCLIP_IMPL``,
oneDNN's ``ONEDNN_MAX_CPU_ISA``, MKL's ``MKL_ENABLE_INSTRUCTIONS``, PyTorch's
``ATEN_CPU_CAPABILITY``).  The engines inherit this process's environment, so what is read here is
what they ran with.
"""

from __future__ import annotations

import os
import platform

# Environment variables that change which kernels an engine runs.
DISPATCH_VARIABLES = (
    "TERNARYCLIP_IMPL",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
    "OMP_NUM_THREADS",
)
CPU_FEATURES = ("avx2", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as the OS reports it (Linux's /proc/cpuinfo), else the platform's words."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, cores, this build's CPU features, the fast GEMM's and attention's kernel paths and the
    dispatch variables."""
    from .. import kernels

    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cpu_features": {name: bool(getattr(kernels, f"cpu_has_{name}")()) for name in CPU_FEATURES},
        "fast_gemm_impl": kernels.fast_gemm_impl(),
        "fast_attention_impl": kernels.fast_attention_impl(),
        "environment": {name: os.environ[name] for name in DISPATCH_VARIABLES if name in os.environ},
    }
