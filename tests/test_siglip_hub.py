"""Hub names in one command, offline: a Hugging Face cache laid out by hand, read with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from siglip_support import tiny_hf_siglip, tiny_open_clip_siglip, tiny_siglip_cfg, write_tiny_tokenizer
from ternaryclip.cli import main
from ternaryclip.quant import TernaryConfig, materialize_, ternarize_

torch = pytest.importorskip("torch")
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _snapshot(cache, repo_id: str):
    """``models--ORG--NAME/snapshots/REV`` with ``refs/main`` naming REV, as huggingface_hub writes it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    folder = repo / "snapshots" / REVISION
    folder.mkdir(parents=True)
    return folder


def _ternary(model):
    """A float model whose weights are ternary x scale, as the TernaryCLIP release publishes them."""
    return materialize_(ternarize_(model, TernaryConfig(scope="all", embedding=True)))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TERNARYCLIP_CACHE", str(tmp_path / "tclip-cache"))
    return cache


@pytest.fixture
def open_clip_repo(hub):
    from safetensors.torch import save_file

    folder = _snapshot(hub, "org/tiny-siglip")
    cfg = tiny_siglip_cfg()
    cfg["text_cfg"].update(hf_tokenizer_name="org/tiny-siglip", tokenizer_kwargs={"clean": "canonicalize"})
    preprocess = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
    model = _ternary(tiny_open_clip_siglip(seed=5))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    write_tiny_tokenizer(folder)
    return model, folder


def _runtime_equals(path, model, folder, texts):
    from open_clip.tokenizer import HFTokenizer

    import ternaryclip

    runtime = ternaryclip.load(path, mode="exact")
    ids = HFTokenizer(str(folder), context_length=16, clean="canonicalize")(texts)
    assert np.array_equal(runtime.tokenize(texts), ids.numpy())
    with torch.no_grad():
        reference = model.encode_text(ids).numpy() if hasattr(model, "encode_text") else None
    if reference is None:
        with torch.no_grad():
            out = model.get_text_features(input_ids=ids)
        reference = getattr(out, "pooler_output", out).numpy()
    got = runtime.encode_text(texts)
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.9999
    return runtime


def test_pack_an_open_clip_hub_name_from_the_cache(open_clip_repo, tmp_path, capsys):
    model, folder = open_clip_repo
    out = tmp_path / "m.tclip"
    assert main(["pack", "--open-clip", "hf-hub:org/tiny-siglip", "--out", str(out)]) == 0
    assert "100.00% ternary" not in capsys.readouterr().err
    runtime = _runtime_equals(out, model, folder, ["a photo of a cat", "The SEA, at night!"])
    assert runtime.data.meta["preprocess"]["resize_mode"] == "squash"
    assert runtime.data.meta["provenance"]["source"] == "hf-hub:org/tiny-siglip"


def test_pack_a_transformers_hub_repository_from_the_cache(hub, tmp_path):
    folder = _snapshot(hub, "org/tiny-hf-siglip")
    model = _ternary(tiny_hf_siglip(seed=6))
    model.save_pretrained(str(folder))
    write_tiny_tokenizer(folder)
    out = tmp_path / "hf.tclip"
    assert main(["pack", "--hf", "org/tiny-hf-siglip", "--out", str(out)]) == 0
    _runtime_equals(out, model, folder, ["a dog on the grass"])


@pytest.mark.parametrize(
    "argv",
    [["--open-clip", "hf-hub:org/absent"], ["--hf", "org/absent"]],
    ids=["open_clip", "transformers"],
)
def test_a_repository_not_in_the_cache_offline_is_one_line(hub, tmp_path, capsys, argv):
    assert main(["pack", *argv, "--out", str(tmp_path / "x.tclip")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "org/absent is not in the Hugging Face cache" in err and "HF_HUB_OFFLINE" in err


def test_a_gated_repository_says_how_to_get_in(hub, tmp_path, capsys, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    httpx = pytest.importorskip("httpx")

    def gated(*args, **kwargs):  # what the hub answers an account that has not accepted the terms
        url = "https://huggingface.co/api/models/org/gated/revision/main"
        response = httpx.Response(403, request=httpx.Request("GET", url))
        raise GatedRepoError("403 Client Error: access to model org/gated is restricted", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    assert main(["pack", "--open-clip", "hf-hub:org/gated", "--out", str(tmp_path / "x.tclip")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gated" in err and "HF_TOKEN" in err and "https://huggingface.co/org/gated" in err


def test_serve_and_index_convert_a_hub_name_once(open_clip_repo, tmp_path, capsys):
    import argparse

    from ternaryclip.cli.serve import model_paths

    args = argparse.Namespace(model_path="hf-hub:org/tiny-siglip", model=[])
    paths = model_paths(args)
    path = paths["tiny-siglip"]
    assert path.is_file() and REVISION in path.name and "converting" in capsys.readouterr().out
    mtime = path.stat().st_mtime_ns
    assert model_paths(args)["tiny-siglip"] == path and path.stat().st_mtime_ns == mtime  # once
    assert "converting" not in capsys.readouterr().out
    model, folder = open_clip_repo
    _runtime_equals(path, model, folder, ["two small red circles"])


def test_what_counts_as_a_hub_repository_id(tmp_path):
    from ternaryclip.torch_clip.hub import is_repo_id
    from ternaryclip.torch_clip.loading import _guess_family

    (tmp_path / "org").mkdir()
    assert is_repo_id("org/name") and not is_repo_id(str(tmp_path / "org"))
    for spec in ("hf-hub:org/name", "local-dir:some/dir", "ViT-B-16", "./org/name", "a/b/c", "configs/x.json"):
        assert _guess_family(spec, None) != "hf", spec
    assert _guess_family("org/name", None) == "hf" and _guess_family("org/name", "w.pt") == "open_clip"
