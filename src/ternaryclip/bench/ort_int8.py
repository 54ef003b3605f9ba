"""ONNX Runtime's own int8 as a peer engine in ``ternaryclip bench``: what an ORT user would run.

``onnxruntime.quantization`` on the bench's float ONNX towers (the TorchScript export), two ways:

- ``dynamic``: ``quantize_dynamic``, int8 weights per output channel, activations quantized at run time
  per tensor (``DynamicQuantizeLinear`` + ``MatMulInteger``); no calibration;
- ``static``: ``quantize_static`` in QDQ format after ``quant_pre_process`` (ONNX shape inference and graph
  optimization, as ORT's guide asks), uint8 activations with MinMax ranges from the 32 calibration inputs
  NNCF sees too (:mod:`.calibration`), int8 weights per output channel: U8S8, the fast pair on x86.

``onnxruntime_int8`` is the faster of the two where the method was chosen (``DEFAULT_METHOD``: dynamic, on a
2-vCPU Zen 4 1.10-1.38x static's speed at ViT-B/16 image b1 and 1.02-1.22x at b32 over two runs,
docs/benchmarks-peers.md); the other stays selectable as ``onnxruntime_int8_<method>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .calibration import CALIBRATION_SIZE, calibration_inputs

METHODS = ("dynamic", "static")
DEFAULT_METHOD = "dynamic"
# The products and the token embedding: left at its default, QDQ also wraps the text tower's causal-mask
# Add, whose -inf constant gives a NaN scale (and text embeddings at cosine ~0 to fp32).
STATIC_OPS = ("MatMul", "Gemm", "Conv", "Gather")
INPUT_NAMES = {"image": "pixels", "text": "ids"}  # the export's input names (files.export_onnx)


def engine_method(engine: str) -> str:
    """``onnxruntime_int8`` -> the default method; ``onnxruntime_int8_static`` -> ``static``."""
    method = engine.removeprefix("onnxruntime_int8").lstrip("_") or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown ONNX Runtime int8 method {method!r}; choose from {', '.join(METHODS)}")
    return method


def settings(method: str) -> dict:
    """The quantization settings of ``method``, as the JSON report records them."""
    if method == "dynamic":
        return {
            "tool": "onnxruntime.quantization.quantize_dynamic",
            "weights": "int8, per output channel",
            "activations": "uint8, per tensor, quantized at run time",
        }
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "op_types": list(STATIC_OPS),
        "preprocess": "quant_pre_process (ONNX shape inference, graph optimization; no symbolic shapes)",
        "weights": "int8, per output channel",
        "activations": "uint8, per tensor, MinMax calibration",
        "calibration_inputs": CALIBRATION_SIZE,
    }


def quantize(src: str, dst: str, method: str, tower: str, arch) -> str:
    """The int8 twin of the float ONNX tower ``src`` at ``dst`` (``method``: ``dynamic`` or ``static``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    if method == "dynamic":
        quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
        return dst

    class Calibration(CalibrationDataReader):
        """The bench's calibration inputs, one item a call."""

        def __init__(self):
            self.items = iter([{INPUT_NAMES[tower]: x} for x in calibration_inputs(tower, arch)])

        def get_next(self):
            return next(self.items, None)

    pre = str(Path(dst).with_suffix(".pre.onnx"))
    quant_pre_process(src, pre, skip_symbolic_shape=True)  # its Reshape rule fails on the export
    quantize_static(
        pre,
        dst,
        Calibration(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(STATIC_OPS),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    Path(pre).unlink()
    return dst
