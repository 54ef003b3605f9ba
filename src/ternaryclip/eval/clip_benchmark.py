"""CLIP_benchmark plugin: ``clip_benchmark eval --model_type ternaryclip --model model.tclip ...``.

CLIP_benchmark picks loaders from its ``TYPE2FUNC`` registry and has no plugin entry point, so this
module registers ``ternaryclip`` there and then runs CLIP_benchmark's own CLI:

    python -m ternaryclip.eval.clip_benchmark eval --model_type ternaryclip --model student.tclip \\
        --pretrained fast --dataset cifar10 --task zeroshot_classification --no_amp --output out.json
    ternaryclip clip-benchmark eval ...            # the same

``--model`` is a ``.tclip`` file (run by the torch-free runtime; ``--pretrained fast|exact|bf16`` picks
the mode, anything else means fast) or ``bundled`` (the bundled float teacher).  Float open_clip
teachers use CLIP_benchmark's own ``--model_type open_clip --model NAME --pretrained FILE``.

CLIP_benchmark 1.6's ``accuracy`` calls ``float()`` on a one-element array, which NumPy 2 refuses;
:func:`register` replaces it with the same formula written with ``.item()`` when that bug is present.
"""

from __future__ import annotations

import sys

import numpy as np

from ..choices import MODES

MODEL_TYPE = "ternaryclip"


class RuntimeModel:
    """The runtime's ``TernaryCLIP`` with the torch-tensor interface CLIP_benchmark calls."""

    def __init__(self, runtime):
        self.runtime = runtime

    def eval(self) -> RuntimeModel:
        return self

    def to(self, *args, **kwargs) -> RuntimeModel:
        return self

    def encode_image(self, images):
        import torch

        pixels = np.ascontiguousarray(images.detach().float().cpu().numpy())
        return torch.from_numpy(self.runtime.encode_image(pixels))

    def encode_text(self, ids):
        import torch

        return torch.from_numpy(self.runtime.encode_text(ids.detach().cpu().numpy().astype(np.int64)))


class TorchTokenizer:
    """Token ids as a LongTensor (which has the ``.to(device)`` CLIP_benchmark calls): CLIP's BPE, or the
    tokenizer a ``.tclip`` carries (a SigLIP's)."""

    def __init__(self, context_length: int, tokenizer=None):
        from ..runtime.tokenizer import ClipTokenizer

        self.tokenizer = tokenizer or ClipTokenizer(context_length)

    def __call__(self, texts):
        import torch

        return torch.from_numpy(self.tokenizer(list(texts) if not isinstance(texts, str) else [texts]).astype(np.int64))


class TorchTransform:
    """PIL image -> normalized float tensor, the runtime's preprocessing (equal to open_clip's eval transform)."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, image):
        import torch

        return torch.from_numpy(self.preprocess(image))


def load_ternaryclip(model_name: str, pretrained: str | None = None, cache_dir: str | None = None, device="cpu"):
    """CLIP_benchmark loader: ``(model, transform, tokenizer)`` for a ``.tclip`` file or ``bundled``."""
    if model_name == "bundled":
        from ..runtime.preprocess import Preprocess
        from ..torch_clip.describe import model_arch, preprocess_meta
        from ..torch_clip.loading import bundled_teacher

        model = bundled_teacher().to(device)
        arch = model_arch(model)
        preprocess = Preprocess.from_meta(preprocess_meta(model, arch))
        return model, TorchTransform(preprocess), TorchTokenizer(arch.text.context_length)
    if not model_name.endswith(".tclip"):
        raise ValueError(
            f"--model_type {MODEL_TYPE} takes a .tclip file or 'bundled', got {model_name!r}; "
            "float open_clip models use --model_type open_clip"
        )
    from ..runtime import load

    runtime = load(model_name, mode=pretrained if pretrained in MODES else "fast")
    tokenizer = TorchTokenizer(runtime.arch.text.context_length, runtime.tokenize)
    return RuntimeModel(runtime), TorchTransform(runtime.preprocess), tokenizer


def _accuracy(output, target, topk=(1,)):
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [correct[:k].reshape(-1).float().sum().item() / n for k in topk]


def register() -> None:
    """Add the ``ternaryclip`` model type to CLIP_benchmark (idempotent)."""
    import torch
    from clip_benchmark import models
    from clip_benchmark.metrics import zeroshot_classification

    models.TYPE2FUNC[MODEL_TYPE] = load_ternaryclip
    if MODEL_TYPE not in models.MODEL_TYPES:
        models.MODEL_TYPES.append(MODEL_TYPE)  # the CLI's --model_type choices is this same list
    try:
        zeroshot_classification.accuracy(torch.eye(2), torch.tensor([0, 1]))
    except TypeError:
        zeroshot_classification.accuracy = _accuracy


def main(argv: list[str] | None = None) -> int:
    """Register the loader, then run ``clip_benchmark`` with ``argv`` (default: this process's arguments)."""
    register()
    from clip_benchmark import cli

    sys.argv = ["clip_benchmark", *(sys.argv[1:] if argv is None else argv)]
    return cli.main() or 0


if __name__ == "__main__":
    sys.exit(main())
