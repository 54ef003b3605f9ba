"""OpenVINO as a peer engine in ``ternaryclip bench``: the CPU engine users pick for CLIP today.

Built the way OpenVINO's own CLIP notebook builds it: the parent converts each float torch tower with
OpenVINO's PyTorch frontend (``openvino.convert_model(module, example_input=...)``, dynamic batch,
torch's defaults left as they are), saves the float IR, and an NNCF post-training int8 IR next to it, in
the bench's temporary folder, so the workers only read ``.xml/.bin`` files and their size is reported
like every other engine's.  (Converting the bench's ONNX export instead gives OpenVINO a graph with twice
the Transpose / Reshape nodes and a slower int8 model: 105 against 67 ms for ViT-B/16's image b1 on a
Zen 4.)  Three engines:

- ``openvino_fp32``: the float IR, ``INFERENCE_PRECISION_HINT=f32`` forced (OpenVINO would run bf16
  on a CPU that has it, which is another engine);
- ``openvino_bf16``: the same IR at OpenVINO's default precision, which is bf16 only on CPUs with
  AVX512_BF16 or AMX; elsewhere the default is f32 and the engine would be ``openvino_fp32`` again,
  so it is skipped with a note;
- ``openvino_int8``: ``nncf.quantize(model_type=TRANSFORMER, subset_size=32)`` on 32 calibration
  inputs (:mod:`.calibration`), run at OpenVINO's default precision for what stays float (as a user
  would run it).

Every engine: the bench's thread count, latency mode (one stream).  ``openvino`` and ``nncf`` are
the optional extra ``ternaryclip[openvino]``; the runtime never imports them.  :func:`settings` is
what the JSON report records of each engine's route.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import CALIBRATION_SIZE, calibration_inputs

INSTALL_HINT = "the openvino engines need OpenVINO and NNCF: pip install 'ternaryclip[openvino]'"
ROUTE = "PyTorch frontend: openvino.convert_model(torch tower, example_input), dynamic batch"


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


def settings(precision: str) -> dict:
    """How ``openvino_<precision>`` was built and run, as the JSON report records it."""
    import nncf
    import openvino as ov

    weights = "int8 where NNCF quantized, the rest fp32" if precision == "int8" else "fp32"
    out = {"route": ROUTE, "openvino": ov.__version__, "weights_in_ir": weights}
    out["inference_precision"] = "f32 (forced)" if precision == "fp32" else "OpenVINO's default for this CPU"
    if precision == "int8":
        out["quantization"] = {
            "tool": f"nncf {nncf.__version__} quantize",
            "model_type": "TRANSFORMER",
            "subset_size": CALIBRATION_SIZE,
            "calibration_inputs": CALIBRATION_SIZE,
        }
    return out


def prepare_openvino(files: dict, tmp: Path, arch, int8: bool) -> dict:
    """The float IR of both towers (and the NNCF int8 IR when asked), from the float torch model of the
    bench's ``.tclip`` through OpenVINO's PyTorch frontend."""
    import logging
    import warnings

    import nncf
    import openvino as ov
    import torch

    from ..pack.export import to_torch
    from .files import tower_modules

    logging.getLogger("nncf").setLevel(logging.ERROR)
    out = {}
    float_model = to_torch(files["tclip"]).requires_grad_(False)
    for tower, (module, example) in tower_modules(float_model).items():
        shape = ov.PartialShape([-1, *example.shape[1:]])  # any batch
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on open_clip's Python branches
            model = ov.convert_model(module, example_input=example, input=[shape])
        out[f"openvino_{tower}"] = str(tmp / f"{tower}.openvino.xml")
        ov.save_model(model, out[f"openvino_{tower}"], compress_to_fp16=False)  # the weights stay fp32
        if int8:
            quantized = nncf.quantize(
                model,
                nncf.Dataset(calibration_inputs(tower, arch)),
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
