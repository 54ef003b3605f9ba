"""``ternaryclip bench``: speed, memory and size of the ternary runtime against open_clip fp32.

Same weights for every engine: a random-init open_clip architecture ternarized (scope ``all`` +
token embedding), or a given ``.tclip``.  Latencies are interleaved across engines (one request to
each engine in turn, every engine in its own process, the order rotated by one each repeat), reported
as median / min / max; the headline
is each engine's speed *ratio* against open_clip fp32 measured in the same run.  Peak RSS comes from
a fresh process per engine that loads the model and encodes one image.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .engines import ENGINES, worker
from .machine import machine_info

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


def export_onnx(float_model, tmp: Path) -> dict:
    """The float model's two towers as ONNX files (TorchScript exporter, dynamic batch)."""
    import warnings

    import torch

    class Tower(torch.nn.Module):
        def __init__(self, model, kind: str):
            super().__init__()
            self.model, self.kind = model, kind

        def forward(self, x):
            return self.model.encode_image(x) if self.kind == "image" else self.model.encode_text(x)

    size = float_model.visual.image_size[0]
    context = float_model.context_length
    paths = {"onnx_image": tmp / "image.onnx", "onnx_text": tmp / "text.onnx"}
    float_model.requires_grad_(False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused CPU attention op has no ONNX export
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Tower(float_model, "image"),
                (torch.zeros(1, 3, size, size),),
                str(paths["onnx_image"]),
                dynamo=False,
                input_names=["pixels"],
                output_names=["embedding"],
                dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            )
            ids = torch.zeros(1, context, dtype=torch.long)
            ids[0, :3] = torch.tensor([1, 2, 3])
            torch.onnx.export(
                Tower(float_model, "text"),
                (ids,),
                str(paths["onnx_text"]),
                dynamo=False,
                input_names=["ids"],
                output_names=["embedding"],
                dynamic_axes={"ids": {0: "batch"}, "embedding": {0: "batch"}},
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {k: str(v) for k, v in paths.items()}


def prepare_files(
    arch: str | None, model: str | None, tmp: Path, seed: int = 0, onnx: bool = False, onnx2bit: bool | None = None
) -> dict:
    """The ``.tclip`` (and its fp32 safetensors twin, for the size comparison); the float ONNX towers
    with ``onnx``, and their 2-bit MatMulNBits twins unless ``onnx2bit`` is False."""
    import torch

    from ..pack.export import save, to_torch
    from ..quant import TernaryConfig, ternarize_
    from ..torch_clip.loading import load_float_clip

    if model:
        path = Path(model)
        float_model = to_torch(path)
    else:
        torch.manual_seed(seed)
        float_model = load_float_clip(arch, family="open_clip")
        ternarize_(float_model, TernaryConfig(scope="all", embedding=True))
        path = save(float_model, tmp / "model.tclip", packing="2bit")
        save(float_model, tmp / "model.base3.tclip", packing="base3")
        float_model = to_torch(path)
    from safetensors.torch import save_file

    fp32 = tmp / "model.fp32.safetensors"
    save_file({k: v.contiguous() for k, v in float_model.state_dict().items()}, fp32)
    files = {"tclip": str(path), "fp32": str(fp32)}
    if onnx:
        from .ort_2bit import convert

        files.update(export_onnx(float_model, tmp))
        for tower in ("image", "text") if onnx2bit is not False else ():
            files[f"onnx2bit_{tower}"] = str(tmp / f"{tower}.2bit.onnx")
            convert(files[f"onnx_{tower}"], files[f"onnx2bit_{tower}"])
    if (tmp / "model.base3.tclip").exists():
        files["tclip_base3"] = str(tmp / "model.base3.tclip")
    return files


class EngineError(RuntimeError):
    """An engine failed in its own process (its model did not load or run there); the message names it."""


def _start(engine: str, files: dict, threads: int):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=worker, args=(child, engine, files, threads), daemon=True)
    proc.start()
    reply = parent.recv()
    if reply[0] == "error":
        proc.join(timeout=30)
        raise EngineError(reply[1])
    return proc, parent


def _stop(workers) -> None:
    """Stop the engine processes that are still serving (a failed one has exited already)."""
    for proc, conn in workers:
        if proc.is_alive():
            try:
                conn.send(("stop",))
            except OSError:
                pass
        proc.join(timeout=30)


def _ask(conn, request):
    reply = conn.recv() if conn.send(request) is None else None
    if isinstance(reply, tuple) and reply and reply[0] == "error":
        raise EngineError(reply[1])
    return reply


def peak_rss(engine: str, files: dict, threads: int, image: np.ndarray) -> int:
    """Peak RSS of a fresh process that loads the model and encodes one image."""
    proc, conn = _start(engine, files, threads)
    _ask(conn, ("image", image[:1]))
    rss = _ask(conn, ("rss",))
    conn.send(("stop",))
    proc.join(timeout=30)
    return rss


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def bench_inputs(arch, batches) -> tuple[np.ndarray, np.ndarray]:
    """Random images and text-like token ids for the largest batch (smaller batches are prefixes)."""
    rng = np.random.default_rng(0)
    size, max_batch = arch.vision.image_size, max(batches)
    images = rng.standard_normal((max_batch, 3, size, size)).astype(np.float32)
    ids = np.zeros((max_batch, arch.text.context_length), dtype=np.int64)
    vocab = arch.text.vocab_size
    for row in range(max_batch):  # start token, some words, end token (the highest id) like real text
        n = 5 + row % 10
        ids[row, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
    return images, ids


# Quiet before each timed call: the previous engine's waiting threads (OpenMP spins ~300k rounds, TBB
# too, ours yield for 2 ms) go idle, so that no engine is timed beside another one's spinning.
SETTLE_S = 0.1


def rotated(names: list, turn: int) -> list:
    """The engines in the order of repeat ``turn``: the list rotated by one a repeat, so that with as many
    repeats as engines each engine runs once in every place.  A fixed order would give the engine after
    a heavy one (or after the settle pause's end, first) the same neighbour every time."""
    shift = turn % len(names) if names else 0
    return names[shift:] + names[:shift]


def time_engines(workers: dict, inputs: dict, batches, repeats: int, progress) -> tuple[dict, dict]:
    """Interleaved timings per engine and workload (median, min, max), and each engine's embeddings."""
    results = {name: {} for name in workers}
    embeddings = {}
    for kind, data in inputs.items():
        for batch in batches:
            key = f"{kind}_b{batch}"
            times = {name: [] for name in workers}
            for name, (_, conn) in workers.items():  # warm-up, and the embeddings for the cosine
                _, out = _ask(conn, (kind, data[:batch]))
                embeddings[(name, kind)] = out
            for r in range(repeats):
                for name in rotated(list(workers), r):
                    _, conn = workers[name]
                    time.sleep(SETTLE_S)
                    seconds, _ = _ask(conn, (kind, data[:batch]))
                    times[name].append(seconds)
                progress(f"{key}: repeat {r + 1}/{repeats}")
            for name, ts in times.items():
                results[name][key] = {
                    "median_s": statistics.median(ts),
                    "min_s": min(ts),
                    "max_s": max(ts),
                    "items_per_s": batch / statistics.median(ts),
                }
    return results, embeddings


def file_bytes(name: str, files: dict) -> int:
    """What an engine reads from disk: the .tclip, the two ONNX towers or OpenVINO IRs, or the fp32 safetensors."""
    if name.startswith("ternaryclip"):
        return os.path.getsize(files["tclip"])
    if name.startswith("openvino"):
        from .openvino_engine import ir_bytes

        variant = "openvino_int8" if name.endswith("int8") else "openvino"
        return ir_bytes(files[f"{variant}_image"]) + ir_bytes(files[f"{variant}_text"])
    if name.startswith("onnxruntime"):
        variant = "onnx2bit" if name.endswith("2bit") else "onnx"
        return os.path.getsize(files[f"{variant}_image"]) + os.path.getsize(files[f"{variant}_text"])
    return os.path.getsize(files["fp32"])


def compare_to_reference(results: dict, embeddings: dict, reference: str) -> None:
    """Cosine of each engine's embeddings to the reference's, and speed / memory / size ratios to it."""
    base = results[reference]
    for name, r in results.items():
        for kind in ("image", "text"):
            r[f"{kind}_cosine_vs_fp32"] = cosine(embeddings[(name, kind)], embeddings[(reference, kind)])
    for r in results.values():
        r["speedup_vs_fp32"] = {
            k: base[k]["median_s"] / r[k]["median_s"]
            for k in base
            if k.startswith(("image_", "text_")) and isinstance(base[k], dict)
        }
        r["memory_ratio_vs_fp32"] = r["peak_rss_bytes"] / base["peak_rss_bytes"]
        r["size_ratio_vs_fp32"] = base["file_bytes"] / r["file_bytes"]


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
        onnx = any(e.startswith(("onnxruntime", "openvino")) for e in engines)
        files = prepare_files(arch, model, Path(tmp), onnx=onnx, onnx2bit="onnxruntime_2bit" in engines)
        from ..pack import read

        model_arch = read(files["tclip"]).arch
        if any(e.startswith("openvino") for e in engines):
            from .openvino_engine import prepare_openvino

            progress("converting both towers to OpenVINO IR" + (" (+ NNCF int8)" if "openvino_int8" in engines else ""))
            files.update(prepare_openvino(files, Path(tmp), model_arch, int8="openvino_int8" in engines))
        images, ids = bench_inputs(model_arch, batches)
        workers = {}
        try:
            for name in engines:
                progress(f"starting {name}")
                workers[name] = _start(name, files, threads)
            results, embeddings = time_engines(workers, {"image": images, "text": ids}, batches, repeats, progress)
        finally:
            _stop(workers.values())
        for name in engines:
            progress(f"peak memory of {name}")
            results[name]["peak_rss_bytes"] = peak_rss(name, files, threads, images)
            results[name]["file_bytes"] = file_bytes(name, files)
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


def format_table(report: dict) -> str:
    engines = report["engines"]
    keys = [k for k in next(iter(engines.values())) if k.startswith(("image_b", "text_b")) and "cosine" not in k]
    lines = [f"{'engine':<20}" + "".join(f"{k:>20}" for k in keys) + f"{'peak RSS':>12}{'file':>10}{'cos img/txt':>14}"]
    for name, r in engines.items():
        cells = []
        for k in keys:
            speed = r.get("speedup_vs_fp32", {}).get(k)
            cells.append(f"{r[k]['median_s'] * 1e3:9.1f} ms" + (f" {speed:5.2f}x" if speed else "      "))
        cos = f"{r.get('image_cosine_vs_fp32', 1):.4f}/{r.get('text_cosine_vs_fp32', 1):.4f}"
        lines.append(
            f"{name:<20}"
            + "".join(f"{c:>20}" for c in cells)
            + f"{r['peak_rss_bytes'] / 1e6:9.0f} MB{r['file_bytes'] / 1e6:7.1f} MB{cos:>14}"
        )
    lines.append(
        "(median latency of interleaved repeats, the order rotated each repeat; speed ratio vs open_clip fp32; "
        "absolute times are machine-bound)"
    )
    return "\n".join(lines)


def write_json(report: dict, path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=1))


def plot(report: dict, path: str) -> None:
    """Bars of speed ratio vs open_clip fp32 per workload, and peak memory / file size per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = report["engines"]
    workloads = [k for k in next(iter(engines.values())).get("speedup_vs_fp32", {})]
    many = len(engines) > 5  # eight engines: wider, labels turned so that they do not overlap
    figsize = (16, 5.5) if many else (13, 4.5)
    fig, (ax_speed, ax_mem) = plt.subplots(
        1, 2, figsize=figsize, gridspec_kw={"width_ratios": [2.4 if many else 2, 1.4]}
    )
    width = 0.8 / max(len(engines), 1)
    for e, (name, r) in enumerate(engines.items()):
        xs = [i + e * width for i in range(len(workloads))]
        bars = ax_speed.bar(xs, [r["speedup_vs_fp32"][w] for w in workloads], width, label=name)
        ax_speed.bar_label(bars, fmt="%.2fx", fontsize=6 if many else 7, rotation=90 if many else 0, padding=2)
    ax_speed.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax_speed.set_xticks([i + width * (len(engines) - 1) / 2 for i in range(len(workloads))], workloads)
    ax_speed.set_ylabel("speed vs open_clip fp32 (higher is better)")
    ax_speed.set_title(f"{report['arch']}, {report['threads']} threads")
    ax_speed.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(engines), 4))
    top = max(r["speedup_vs_fp32"][w] for r in engines.values() for w in workloads)
    ax_speed.set_ylim(0, top * (1.25 if many else 1.15))
    names = list(engines)
    ax_mem.bar(
        [i - 0.2 for i in range(len(names))],
        [engines[n]["peak_rss_bytes"] / 1e6 for n in names],
        0.4,
        label="peak RSS (MB)",
    )
    ax_mem.bar(
        [i + 0.2 for i in range(len(names))], [engines[n]["file_bytes"] / 1e6 for n in names], 0.4, label="file (MB)"
    )
    ax_mem.set_xticks(
        range(len(names)), [n.replace("_", "\n", 1) for n in names], fontsize=7, rotation=45 if many else 0
    )
    ax_mem.set_yscale("log")
    ax_mem.set_title("memory and size (log scale)")
    ax_mem.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
