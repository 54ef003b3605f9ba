"""The peer engines of `ternaryclip bench` built as their users build them: OpenVINO through its PyTorch
frontend, ONNX Runtime's own int8.  Tiny models; numbers against open_clip's forward, never speed."""

import json

import numpy as np
import pytest

from helpers import TINY_OPEN_CLIP


def _tiny_config(tmp_path):
    config = tmp_path / "tiny-bench.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    return str(config)


def _worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def test_the_openvino_irs_come_from_the_pytorch_frontend_not_from_onnx(tmp_path):
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")
    pytest.importorskip("nncf", reason="the openvino extra is not installed")
    import torch

    from ternaryclip.bench.engines import conversion
    from ternaryclip.bench.files import prepare_files
    from ternaryclip.bench.openvino_engine import prepare_openvino
    from ternaryclip.pack import read
    from ternaryclip.pack.export import to_torch

    files = prepare_files(_tiny_config(tmp_path), None, tmp_path)
    arch = read(files["tclip"]).arch
    files.update(prepare_openvino(files, tmp_path, arch, int8=True))
    assert not list(tmp_path.glob("*.onnx"))  # no ONNX file on the way
    core = ov.Core()
    for key in ("openvino_image", "openvino_text", "openvino_int8_image", "openvino_int8_text"):
        model = core.read_model(files[key])
        # what convert_model writes into the IR: the frontend that read the model
        assert model.get_rt_info(["conversion_parameters", "framework"]).astype(str) == "pytorch"
        assert model.inputs[0].get_partial_shape()[0].is_dynamic  # any batch
        fake_quantize = [op.get_type_name() for op in model.get_ordered_ops()].count("FakeQuantize")
        assert (fake_quantize > 0) == ("int8" in key)
    # the float IR at f32 computes open_clip's forward of the same weights
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    compiled = core.compile_model(files["openvino_image"], "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    with torch.no_grad():
        expected = to_torch(files["tclip"]).encode_image(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(compiled(pixels)[0], expected, rtol=1e-4, atol=1e-4)
    route = conversion("openvino_int8")
    assert route["route"].startswith("PyTorch frontend") and route["quantization"]["model_type"] == "TRANSFORMER"
    assert route["quantization"]["subset_size"] == 32


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_onnxruntime_int8_towers_are_int8_and_close_to_open_clip_fp32(tmp_path, method):
    import onnx
    import onnxruntime as ort
    import torch

    from ternaryclip.bench.files import prepare_files
    from ternaryclip.bench.timing import bench_inputs
    from ternaryclip.pack import read
    from ternaryclip.pack.export import to_torch

    files = prepare_files(_tiny_config(tmp_path), None, tmp_path, onnx=True, onnx2bit=False, ort_int8=(method,))
    arch = read(files["tclip"]).arch
    images, ids = bench_inputs(arch, (8,))
    float_model = to_torch(files["tclip"])
    with torch.no_grad():
        expected = {
            "image": float_model.encode_image(torch.from_numpy(images)).numpy(),
            "text": float_model.encode_text(torch.from_numpy(ids)).numpy(),
        }
    int8_ops = {"dynamic": "MatMulInteger", "static": "QuantizeLinear"}[method]
    for tower, inputs in (("image", {"pixels": images}), ("text", {"ids": ids})):
        path = files[f"onnx_int8_{method}_{tower}"]
        assert int8_ops in {node.op_type for node in onnx.load(path).graph.node}  # really quantized
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, inputs)[0]
        # measured on this tiny model (widths 48-64, random ternary weights), worst of 8: dynamic 0.99995
        # (image) / 0.9995 (text), static 0.9999 / 0.998; a broken graph gives ~0 (static QDQ on the causal
        # mask's Add measured -0.04)
        assert _worst_cosine(got, expected[tower]) >= 0.99


def test_the_report_records_each_engines_conversion_route(tmp_path):
    from ternaryclip.bench import run_bench
    from ternaryclip.bench.ort_int8 import DEFAULT_METHOD, METHODS

    other = next(m for m in METHODS if m != DEFAULT_METHOD)
    engines = (
        "open_clip_fp32",
        "onnxruntime_fp32",
        "onnxruntime_int8",
        f"onnxruntime_int8_{other}",
        "ternaryclip_fast",
    )
    report = run_bench(
        arch=_tiny_config(tmp_path), batches=(2,), threads=1, repeats=1, engines=engines, progress=lambda *_: None
    )
    results = report["engines"]
    assert results["onnxruntime_int8"]["conversion"]["method"] == DEFAULT_METHOD
    assert results[f"onnxruntime_int8_{other}"]["conversion"]["method"] == other
    assert results["onnxruntime_fp32"]["conversion"]["route"].startswith("torch.onnx.export")
    assert results["ternaryclip_fast"]["conversion"]["mode"] == "fast"
    for name in ("onnxruntime_int8", f"onnxruntime_int8_{other}"):
        assert results[name]["image_cosine_vs_fp32"] >= 0.98
        # int8 files: about a quarter of the fp32 ONNX towers
        assert results[name]["file_bytes"] < results["onnxruntime_fp32"]["file_bytes"] / 2
