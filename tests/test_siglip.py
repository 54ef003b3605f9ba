"""SigLIP / SigLIP 2 packed and run without torch, equal to open_clip's and transformers' forward."""

from __future__ import annotations

import numpy as np
import pytest

from siglip_support import tiny_hf_siglip, tiny_open_clip_siglip
from ternaryclip.pack import read, write
from ternaryclip.pack.export import tclip_from_model
from ternaryclip.quant import TernaryConfig, ternarize_
from ternaryclip.runtime.model import TernaryCLIP
from ternaryclip.torch_clip import as_clip, model_arch

torch = pytest.importorskip("torch")

EXACT, FAST = 0.9999, 0.995


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _inputs(image_size: int, context: int, vocab: int, batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, image_size, image_size, generator=g), torch.randint(
        0, vocab, (batch, context), generator=g
    )


def _reference(model, pixels, ids) -> tuple[np.ndarray, np.ndarray]:
    clip = as_clip(model)
    with torch.no_grad():
        return clip.encode_image(pixels).numpy(), clip.encode_text(ids).numpy()


def _packed(model, tmp_path, packing: str = "2bit"):
    """Ternarize (scope all + embedding), write and read back the ``.tclip``."""
    ternarize_(model, TernaryConfig(scope="all", embedding=True))
    path = write(tclip_from_model(model), tmp_path / "siglip.tclip", packing=packing)
    return model, read(path)


def _assert_runtime_matches(model, data, pixels, ids) -> dict:
    image_ref, text_ref = _reference(model, pixels, ids)
    measured = {}
    for mode, bound in (("exact", EXACT), ("fast", FAST)):
        runtime = TernaryCLIP(data, mode=mode)
        image = _cosines(runtime.encode_image(pixels.numpy()), image_ref)
        text = _cosines(runtime.encode_text(ids.numpy()), text_ref)
        assert image.min() >= bound and text.min() >= bound, (mode, image, text)
        measured[mode] = (float(image.min()), float(text.min()))
    return measured


@pytest.mark.parametrize("siglip2", [False, True], ids=["SigLIP", "SigLIP2"])
def test_open_clip_siglip_runs_equal_to_open_clip(tmp_path, siglip2):
    model, data = _packed(tiny_open_clip_siglip(siglip2=siglip2), tmp_path)
    arch = data.arch
    assert (arch.vision.pool_type, arch.vision.class_token, arch.vision.proj) == ("map", False, False)
    assert (arch.text.causal, arch.text.pool_type, arch.text.proj_bias, arch.logit_bias) == (False, "last", True, True)
    assert arch.activation(arch.text) == ("gelu_tanh" if siglip2 else "gelu")
    assert "logit_bias" in data.floats and "visual.attn_pool.attn.in_proj_weight" in data.ternary
    _assert_runtime_matches(model, data, *_inputs(32, 16, 100))


def test_hf_siglip_runs_equal_to_transformers(tmp_path):
    model, data = _packed(tiny_hf_siglip(), tmp_path, packing="base3")
    assert data.meta["preprocess"]["mean"] == [0.5, 0.5, 0.5] and data.meta["preprocess"]["resize_mode"] == "squash"
    assert data.arch.activation(data.arch.vision) == "gelu_tanh"
    _assert_runtime_matches(model, data, *_inputs(32, 16, 100))


def test_float_siglip_packs_with_post_training_quantization_and_keeps_every_tensor():
    model = tiny_open_clip_siglip(seed=3)
    data = tclip_from_model(model, TernaryConfig(scope="all", embedding=True), quantize="absmean")
    shapes = {n: tuple(t.torch_shape) for n, t in data.ternary.items()}
    shapes.update({n: tuple(a.shape) for n, a in data.floats.items()})
    model_arch(model).check_tensors(shapes, set(data.ternary))  # nothing missing, nothing left over
    assert shapes["visual.positional_embedding"] == (16, 32) and shapes["visual.attn_pool.probe"] == (1, 1, 32)


def test_the_eot_truncation_stays_off_for_a_non_causal_text_tower(tmp_path):
    """Every token reaches the pooled one without a causal mask: running fewer tokens is not the same."""
    model, data = _packed(tiny_open_clip_siglip(), tmp_path)
    runtime = TernaryCLIP(data, mode="exact")
    _, ids = _inputs(32, 16, 100)
    ids = ids.numpy()
    ids[:, 5:] = 1  # short captions, padded: a causal tower would stop after the 5th token
    assert (runtime._text_lengths(ids) == 16).all()
    full = runtime.encode_text(ids)
    assert np.allclose(full, runtime.encode_text(ids, truncate=False), rtol=0, atol=0)
    truncated = np.concatenate([runtime.text(ids[i : i + 1, :6], None) for i in range(len(ids))])
    assert _cosines(truncated, full).max() < 0.999  # what the truncation would have returned: not exact


def test_a_siglip_architecture_is_refused_by_open_clip_clip_config():
    with pytest.raises(ValueError, match="SigLIP"):
        model_arch(tiny_open_clip_siglip()).to_open_clip_cfg()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B-16-SigLIP", "ViT-B-16-SigLIP2"])
def test_vit_b_16_siglip_ternary_fraction_file_size_and_runtime(tmp_path, name):
    import open_clip

    from ternaryclip.quant import ternary_stats

    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    fp32_bytes = sum(p.numel() for p in model.parameters()) * 4
    ternarize_(model, TernaryConfig(scope="all", embedding=True))
    assert ternary_stats(model)["ternary_fraction"] >= 0.99
    path = write(tclip_from_model(model), tmp_path / "vit.tclip", packing="2bit")
    assert fp32_bytes / path.stat().st_size >= 15
    pixels, ids = _inputs(224, 64, model.text.vocab_size, batch=2)
    measured = _assert_runtime_matches(model, read(path), pixels, ids)
    print(name, measured, f"{fp32_bytes / path.stat().st_size:.1f}x smaller than fp32")


def test_to_torch_rebuilds_an_open_clip_siglip_with_the_files_weights(tmp_path):
    from ternaryclip.pack import to_torch

    model, data = _packed(tiny_open_clip_siglip(seed=4), tmp_path)
    twin = to_torch(data)
    assert type(twin).__name__ == "CustomTextCLIP" and model_arch(twin) == data.arch
    pixels, ids = _inputs(32, 16, 100)
    for ours, theirs in zip(_reference(twin, pixels, ids), _reference(model, pixels, ids)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert float(twin.logit_bias) == float(model.logit_bias)


def test_a_clip_file_keeps_the_metadata_it_had_before_siglip():
    """The SigLIP fields are written only where they differ from CLIP's: older readers still read a CLIP."""
    from ternaryclip.arch import ClipArch, TextArch, VisionArch

    clip = ClipArch(32, VisionArch(32, 8, 64, 2, 2, 256), TextArch(16, 100, 48, 2, 2, 192))
    assert set(clip.to_dict()["vision"]) == {
        "image_size", "patch_size", "width", "layers", "heads", "mlp_width", "pool_type", "final_ln_after_pool",
        "no_ln_pre",
    }  # fmt: skip
    assert set(clip.to_dict()["text"]) == {
        "context_length", "vocab_size", "width", "heads", "layers", "mlp_width", "pool_type", "eos_id", "causal",
    }  # fmt: skip
    siglip = model_arch(tiny_open_clip_siglip())
    assert ClipArch.from_dict(siglip.to_dict()) == siglip and ClipArch.from_dict(clip.to_dict()) == clip
