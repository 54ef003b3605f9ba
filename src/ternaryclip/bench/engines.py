"""Inference engines measured by ``ternaryclip bench``, each run in its own process.

An engine loads a model from files prepared by the parent and encodes images (float32
``[B, 3, H, W]``) and token ids; :mod:`.workers` runs each one in its own process.
"""

from __future__ import annotations

import numpy as np

from .ort_int8 import DEFAULT_METHOD as ORT_INT8_DEFAULT
from .ort_int8 import METHODS as ORT_INT8_METHODS


class OpenClipFP32:
    """open_clip in float32 on the CPU (torch), with the same weights."""

    name = "open_clip_fp32"

    def __init__(self, files: dict, threads: int):
        import torch

        from ..pack.export import to_torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = to_torch(files["tclip"])

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.encode_image(self.torch.from_numpy(pixels)).numpy()

    def encode_text(self, ids: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.encode_text(self.torch.from_numpy(ids)).numpy()


class TorchInt8Dynamic(OpenClipFP32):
    """torch dynamic int8 (``quantize_dynamic`` on every ``nn.Linear``), what a torch user would try first.

    Two honest caveats: open_clip's fused attention ``in_proj_weight`` is no ``nn.Linear`` and stays
    float, and open_clip's ``encode_text`` asks ``mlp.c_fc.weight.dtype`` for its compute dtype,
    which a dynamically quantized Linear no longer has, so the text tower is told float32 directly.
    """

    name = "torch_int8_dynamic"

    def __init__(self, files: dict, threads: int):
        import warnings

        super().__init__(files, threads)
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = quantize_dynamic(self.model, {self.torch.nn.Linear}, dtype=self.torch.qint8)
        self.model.transformer.get_cast_dtype = lambda: self.torch.float32


class OnnxRuntimeFP32:
    """ONNX Runtime's CPU provider on the float model, exported per tower by the parent process."""

    name = "onnxruntime_fp32"

    def __init__(self, files: dict, threads: int, variant: str = "onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.image = ort.InferenceSession(files[f"{variant}_image"], options, providers=["CPUExecutionProvider"])
        self.text = ort.InferenceSession(files[f"{variant}_text"], options, providers=["CPUExecutionProvider"])

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        return self.image.run(None, {"pixels": pixels})[0]

    def encode_text(self, ids: np.ndarray) -> np.ndarray:
        return self.text.run(None, {"ids": ids})[0]


class TernaryRuntime:
    """ternaryclip's torch-free runtime on the packed file."""

    def __init__(self, files: dict, threads: int, mode: str):
        from ..runtime import load

        self.name = f"ternaryclip_{mode}"
        self.model = load(files["tclip"], mode=mode, threads=threads)

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        return self.model.encode_image(pixels)

    def encode_text(self, ids: np.ndarray) -> np.ndarray:
        return self.model.encode_text(ids)


class TernaryRuntimeBaseline(TernaryRuntime):
    """The fast mode as it ran before weights were prepared at load and text stopped at the caption:
    the file layout unpacked per call and the whole context, for before/after ratios in one run."""

    def __init__(self, files: dict, threads: int):
        super().__init__(files, threads, "fast")
        self.name = "ternaryclip_fast_baseline"
        m = self.model
        for block in m.visual_blocks + m.text_blocks:
            for linear in (block.in_proj, block.out_proj, block.c_fc, block.c_proj):
                linear.prepared = None
        for linear in (m.patch_embed, m.visual_proj, m.text_proj):
            linear.prepared = None

    def encode_text(self, ids: np.ndarray) -> np.ndarray:
        return self.model.encode_text(ids, truncate=False)


ENGINES = {
    "open_clip_fp32": lambda files, threads: OpenClipFP32(files, threads),
    "torch_int8_dynamic": lambda files, threads: TorchInt8Dynamic(files, threads),
    "onnxruntime_fp32": lambda files, threads: OnnxRuntimeFP32(files, threads),
    # MatMulNBits: 2-bit codes, zero point 1, per-row scales, accuracy_level 4 (int8 activations)
    "onnxruntime_2bit": lambda files, threads: OnnxRuntimeFP32(files, threads, "onnx2bit"),
    # ONNX Runtime's own int8 (ort_int8.py): the faster method here, and the other one by name
    "onnxruntime_int8": lambda files, threads: _onnxruntime_int8(files, threads, "onnxruntime_int8"),
    **{
        f"onnxruntime_int8_{method}": lambda files, threads, method=method: _onnxruntime_int8(
            files, threads, f"onnxruntime_int8_{method}"
        )
        for method in ORT_INT8_METHODS
        if method != ORT_INT8_DEFAULT
    },
    "ternaryclip_exact": lambda files, threads: TernaryRuntime(files, threads, "exact"),
    "ternaryclip_fast": lambda files, threads: TernaryRuntime(files, threads, "fast"),
    "ternaryclip_bf16": lambda files, threads: TernaryRuntime(files, threads, "bf16"),
    "ternaryclip_fast_baseline": lambda files, threads: TernaryRuntimeBaseline(files, threads),
    # OpenVINO's CPU plugin on IRs the parent converted (openvino_engine.py): f32 forced, its default
    # precision (bf16 where the CPU has it), and NNCF post-training int8
    "openvino_fp32": lambda files, threads: _openvino(files, threads, "fp32"),
    "openvino_bf16": lambda files, threads: _openvino(files, threads, "bf16"),
    "openvino_int8": lambda files, threads: _openvino(files, threads, "int8"),
}


def _onnxruntime_int8(files: dict, threads: int, engine: str):
    from .ort_int8 import engine_method

    model = OnnxRuntimeFP32(files, threads, f"onnx_int8_{engine_method(engine)}")
    model.name = engine
    return model


def _openvino(files: dict, threads: int, precision: str):
    from .openvino_engine import OpenVINOEngine

    return OpenVINOEngine(files, threads, precision)


ONNX_EXPORT = "torch.onnx.export (TorchScript exporter), dynamic batch"


def conversion(engine: str) -> dict:
    """How ``engine``'s model was made from the shared weights and what it runs with: the report's record."""
    if engine.startswith("openvino"):
        from .openvino_engine import settings

        return settings(engine.removeprefix("openvino_"))
    if engine.startswith("onnxruntime_int8"):
        from .ort_int8 import engine_method, settings

        method = engine_method(engine)
        return {"route": ONNX_EXPORT, "method": method, "quantization": settings(method)}
    routes = {
        "open_clip_fp32": {"route": "open_clip in torch eager mode, float32 (the .tclip's weights)"},
        "torch_int8_dynamic": {
            "route": "open_clip in torch eager mode",
            "quantization": "torch.ao.quantization.quantize_dynamic on every nn.Linear, qint8",
        },
        "onnxruntime_fp32": {"route": ONNX_EXPORT},
        "onnxruntime_2bit": {"route": ONNX_EXPORT, "quantization": "MatMulNBits, 2-bit codes, accuracy_level 4"},
    }
    if engine in routes:
        return routes[engine]
    mode = engine.removeprefix("ternaryclip_")
    return {"route": "the .tclip file (2-bit codes) on the ternaryclip runtime", "mode": mode}
