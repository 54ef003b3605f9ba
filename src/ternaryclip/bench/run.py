"""``ternaryclip bench``: speed, memory and size of the ternary runtime against open_clip fp32.

Same weights for every engine: a random-init open_clip architecture ternarized (scope ``all`` +
token embedding), or a given ``.tclip``.  Latencies are interleaved across engines (one request to
each engine in turn, every engine in its own process, the order rotated by one each repeat), reported
as median / min / max; the headline
is each engine's speed *ratio* against open_clip fp32 measured in the same run.  Peak RSS comes from
a fresh process per engine that loads the model and encodes one image.

This module runs the steps in order; each lives in its own: the model files (``files``), the engine
processes (``workers``), the interleaved timing (``timing``), the table, JSON and chart (``report``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .engines import ENGINES, conversion
from .files import file_bytes, prepare_files
from .machine import machine_info
from .ort_int8 import engine_method
from .report import format_table, plot, write_json
from .timing import bench_inputs, compare_to_reference, time_engines
from .workers import EngineError, peak_rss, start, stop

__all__ = ["DEFAULT_ENGINES", "EngineError", "format_table", "plot", "run_bench", "usable_engines", "write_json"]

# What ``run_bench`` measures unless told otherwise: engines that need no extra beyond ``[bench]``.
DEFAULT_ENGINES = (
    "open_clip_fp32",
    "torch_int8_dynamic",
    "onnxruntime_fp32",
    "onnxruntime_2bit",
    "ternaryclip_exact",
    "ternaryclip_fast",
    "ternaryclip_bf16",
)


def usable_engines(engines, progress) -> tuple[tuple, dict]:
    """The asked engines that can run here, and why the others are skipped (bf16 on a CPU without it).

    An unknown name, or an openvino engine without the extra installed, is a one-line error.
    """
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    skipped = {}
    if any(e.startswith("openvino") for e in engines):
        from .openvino_engine import cpu_has_bf16, require_openvino

        require_openvino()
        if "openvino_bf16" in engines and not cpu_has_bf16():
            skipped["openvino_bf16"] = "this CPU has no bf16 (AVX512_BF16 or AMX); OpenVINO would run f32"
    for name, reason in skipped.items():
        progress(f"skipping {name}: {reason}")
    return tuple(e for e in engines if e not in skipped), skipped


def run_bench(
    arch: str | None = "ViT-B-16",
    model: str | None = None,
    batches=(1, 32),
    threads: int | None = None,
    repeats: int = 5,
    engines=DEFAULT_ENGINES,
    progress=print,
) -> dict:
    threads = threads or os.cpu_count() or 1
    engines, skipped = usable_engines(engines, progress)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = any(e.startswith("onnxruntime") for e in engines)
        ort_int8 = tuple(sorted({engine_method(e) for e in engines if e.startswith("onnxruntime_int8")}))
        if ort_int8:
            progress(f"quantizing both ONNX towers with ONNX Runtime ({', '.join(ort_int8)})")
        files = prepare_files(
            arch, model, Path(tmp), onnx=onnx, onnx2bit="onnxruntime_2bit" in engines, ort_int8=ort_int8
        )
        from ..pack import read

        model_arch = read(files["tclip"]).arch
        if any(e.startswith("openvino") for e in engines):
            from .openvino_engine import prepare_openvino

            int8 = " (+ NNCF int8)" if "openvino_int8" in engines else ""
            progress(f"converting both towers to OpenVINO IR with its PyTorch frontend{int8}")
            files.update(prepare_openvino(files, Path(tmp), model_arch, int8="openvino_int8" in engines))
        images, ids = bench_inputs(model_arch, batches)
        workers = {}
        try:
            for name in engines:
                progress(f"starting {name}")
                workers[name] = start(name, files, threads)
            results, embeddings = time_engines(workers, {"image": images, "text": ids}, batches, repeats, progress)
        finally:
            stop(workers.values())
        for name in engines:
            progress(f"peak memory of {name}")
            results[name]["peak_rss_bytes"] = peak_rss(name, files, threads, images)
            results[name]["file_bytes"] = file_bytes(name, files)
            results[name]["conversion"] = conversion(name)
        if "open_clip_fp32" in engines:
            compare_to_reference(results, embeddings, "open_clip_fp32")
        extra = {"tclip_base3_bytes": os.path.getsize(files["tclip_base3"])} if "tclip_base3" in files else {}
    return {
        "arch": arch if not model else str(model),
        "threads": threads,
        "repeats": repeats,
        "batches": list(batches),
        "engines": results,
        "note": "absolute times are machine-bound; compare the ratios",
        "machine": machine_info(),
        **({"skipped": skipped} if skipped else {}),
        **extra,
    }
