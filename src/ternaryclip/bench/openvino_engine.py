"""OpenVINO as a peer engine in ``ternaryclip bench``: the CPU engine users pick for CLIP today.

The parent converts each tower once (``openvino.convert_model`` on the ONNX file the bench already
exports, dynamic batch), saves the float IR, and an NNCF post-training int8 IR next to it, in the
bench's temporary folder, so the workers only read ``.xml/.bin`` files and their size is reported like
every other engine's.  Three engines:

- ``openvino_fp32``: the float IR, ``INFERENCE_PRECISION_HINT=f32`` forced (OpenVINO would run bf16
  on a CPU that has it, which is another engine);
- ``openvino_bf16``: the same IR at OpenVINO's default precision, which is bf16 only on CPUs with
  AVX512_BF16 or AMX; elsewhere the default is f32 and the engine would be ``openvino_fp32`` again,
  so it is skipped with a note;
- ``openvino_int8``: ``nncf.quantize(model_type=TRANSFORMER, subset_size=32)`` on 32 calibration
  inputs, run at OpenVINO's default precision for what stays float (as a user would run it).

Every engine: the bench's thread count, latency mode (one stream).  ``openvino`` and ``nncf`` are
the optional extra ``ternaryclip[openvino]``; the runtime never imports them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INSTALL_HINT = "the openvino engines need OpenVINO and NNCF: pip install 'ternaryclip[openvino]'"
CALIBRATION_SIZE = 32


class MissingOpenVINO(ValueError):
    """OpenVINO or NNCF is not installed (a ValueError, so the CLI reports it in one line, exit 2)."""


def require_openvino() -> None:
    """Fail early, in one line, when an openvino engine is asked for and the extra is not installed."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as err:
        raise MissingOpenVINO(INSTALL_HINT) from err


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (it lists BF16 on AVX512_BF16 or AMX CPUs)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _calibration(tower: str, size: int, context: int, vocab: int) -> list[np.ndarray]:
    """32 calibration inputs, one item each: random pixels, or caption-like ids (start, words, end)."""
    rng = np.random.default_rng(1)
    if tower == "image":
        return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(CALIBRATION_SIZE)]
    items = []
    for i in range(CALIBRATION_SIZE):
        ids = np.zeros((1, context), dtype=np.int64)
        n = 3 + i % 12
        ids[0, : n + 2] = [vocab - 2, *rng.integers(1, vocab - 2, n), vocab - 1]
        items.append(ids)
    return items


def prepare_openvino(files: dict, tmp: Path, arch, int8: bool) -> dict:
    """The float IR of both towers (and the NNCF int8 IR when asked), from the bench's ONNX files."""
    import logging

    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    out = {}
    for tower in ("image", "text"):
        model = ov.convert_model(files[f"onnx_{tower}"])
        out[f"openvino_{tower}"] = str(tmp / f"{tower}.openvino.xml")
        ov.save_model(model, out[f"openvino_{tower}"], compress_to_fp16=False)  # the weights stay fp32
        if int8:
            data = _calibration(tower, arch.vision.image_size, arch.text.context_length, arch.text.vocab_size)
            quantized = nncf.quantize(
                model,
                nncf.Dataset(data),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=CALIBRATION_SIZE,
            )
            out[f"openvino_int8_{tower}"] = str(tmp / f"{tower}.openvino-int8.xml")
            ov.save_model(quantized, out[f"openvino_int8_{tower}"], compress_to_fp16=False)
    return out


def ir_bytes(xml: str) -> int:
    """An IR's size on disk: its graph (.xml) and its weights (.bin)."""
    path = Path(xml)
    return path.stat().st_size + path.with_suffix(".bin").stat().st_size


class OpenVINOEngine:
    """One compiled model per tower on OpenVINO's CPU plugin, latency mode, the bench's threads."""

    def __init__(self, files: dict, threads: int, precision: str):
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.name = f"openvino_{precision}"
        config = {
            props.inference_num_threads: threads,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
        }
        if precision == "fp32":
            config[hints.inference_precision] = ov.Type.f32
        variant = "openvino_int8" if precision == "int8" else "openvino"
        core = ov.Core()
        self.image = core.compile_model(files[f"{variant}_image"], "CPU", config)
        self.text = core.compile_model(files[f"{variant}_text"], "CPU", config)

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        return self.image(pixels)[0].copy()  # the request's buffer is reused by the next call

    def encode_text(self, ids: np.ndarray) -> np.ndarray:
        return self.text(ids)[0].copy()
