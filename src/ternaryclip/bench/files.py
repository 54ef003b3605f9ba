"""The model files ``ternaryclip bench`` hands its engines, made once per run in a temporary folder.

Same weights for every engine: a random-init open_clip architecture ternarized (scope ``all`` + token
embedding), or a given ``.tclip``; its float twin as safetensors (open_clip fp32's file, and the size
comparison), and for ONNX Runtime the float towers exported to ONNX (with their 2-bit ``MatMulNBits``
and int8 twins).  OpenVINO's IRs are made from the float torch model by :mod:`.openvino_engine`.
"""

from __future__ import annotations

import os
from pathlib import Path


def tower_modules(float_model) -> dict:
    """Each tower of the float open_clip model as its own module, with an example input of one item:
    ``{"image": (module, pixels), "text": (module, ids)}``; what ONNX export and OpenVINO convert."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self, model, kind: str):
            super().__init__()
            self.model, self.kind = model, kind

        def forward(self, x):
            return self.model.encode_image(x) if self.kind == "image" else self.model.encode_text(x)

    size = float_model.visual.image_size[0]
    ids = torch.zeros(1, float_model.context_length, dtype=torch.long)
    ids[0, :3] = torch.tensor([1, 2, 3])
    return {
        "image": (Tower(float_model, "image"), torch.zeros(1, 3, size, size)),
        "text": (Tower(float_model, "text"), ids),
    }


def export_onnx(float_model, tmp: Path) -> dict:
    """The float model's two towers as ONNX files (TorchScript exporter, dynamic batch)."""
    import warnings

    import torch

    names = {"image": "pixels", "text": "ids"}
    paths = {f"onnx_{tower}": tmp / f"{tower}.onnx" for tower in names}
    float_model.requires_grad_(False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused CPU attention op has no ONNX export
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            for tower, (module, example) in tower_modules(float_model).items():
                torch.onnx.export(
                    module,
                    (example,),
                    str(paths[f"onnx_{tower}"]),
                    dynamo=False,
                    input_names=[names[tower]],
                    output_names=["embedding"],
                    dynamic_axes={names[tower]: {0: "batch"}, "embedding": {0: "batch"}},
                )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {k: str(v) for k, v in paths.items()}


def prepare_files(
    arch: str | None,
    model: str | None,
    tmp: Path,
    seed: int = 0,
    onnx: bool = False,
    onnx2bit: bool | None = None,
    ort_int8: tuple = (),
) -> dict:
    """The ``.tclip`` (and its fp32 safetensors twin, for the size comparison); the float ONNX towers
    with ``onnx``, their 2-bit MatMulNBits twins unless ``onnx2bit`` is False, and their ONNX Runtime int8
    twins for each method in ``ort_int8`` (``"dynamic"``, ``"static"``: :mod:`.ort_int8`)."""
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
        if ort_int8:
            from ..pack import read
            from .ort_int8 import quantize

            model_arch = read(path).arch
            for method in ort_int8:
                for tower in ("image", "text"):
                    out = files[f"onnx_int8_{method}_{tower}"] = str(tmp / f"{tower}.int8-{method}.onnx")
                    quantize(files[f"onnx_{tower}"], out, method, tower, model_arch)
    if (tmp / "model.base3.tclip").exists():
        files["tclip_base3"] = str(tmp / "model.base3.tclip")
    return files


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
        if name.startswith("onnxruntime_int8"):
            from .ort_int8 import engine_method

            variant = f"onnx_int8_{engine_method(name)}"
        return os.path.getsize(files[f"{variant}_image"]) + os.path.getsize(files[f"{variant}_text"])
    return os.path.getsize(files["fp32"])
