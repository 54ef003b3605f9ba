"""The C++ kernel tests (tests/arm/kernel_tests.cpp, the ones `make test-arm64` runs under qemu) built for this
machine by CMake (target ``kernel_tests``, the extension's sources and flags) and run: every table this CPU has
against the scalar reference, and the linear layer (kernels/core/linear.cpp) against its separate passes."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "kernel-tests"  # kept between runs: CMake rebuilds what changed


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="aarch64 runs them by make test-arm64")
@pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler"
)
def test_cpp_kernel_tests_pass_on_this_cpu():
    configure = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(BUILD),
        f"-DPython_EXECUTABLE={sys.executable}",
        "-DTCLIP_WERROR=ON",
    ]
    for command in (configure, ["cmake", "--build", str(BUILD), "--target", "kernel_tests", "-j2"]):
        built = subprocess.run(command, capture_output=True, text=True)
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    run = subprocess.run([str(BUILD / "kernel_tests")], capture_output=True, text=True, timeout=600)
    lines = run.stdout.strip().splitlines()
    counts = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1] if lines else "")
    assert counts is not None, run.stdout[-4000:] + run.stderr[-4000:]
    failures = "\n".join(line for line in lines if line.startswith("FAIL"))
    assert int(counts[2]) == 0 and run.returncode == 0, failures[-4000:]
    assert int(counts[1]) >= 200  # the reference's linear layer alone checks ~200 cases
