"""The .tclip file: lossless save/read, to_torch forward, import of float ternary checkpoints, CLI."""

import json

import numpy as np
import pytest
import torch

import ternaryclip
from helpers import TINY_OPEN_CLIP, random_inputs
from ternaryclip.cli import main
from ternaryclip.pack import read, to_torch
from ternaryclip.pack.export import NotTernaryError, detect_ternary
from ternaryclip.quant import TernaryConfig, materialize_, ternarize_, ternary_sites


def site_codes(model):
    out = {}
    for name, module, param_name, p in ternary_sites(model):
        codes, scales = p.quantize(module.parametrizations[param_name].original)
        out[name] = (codes.numpy(), scales.numpy())
    return out


@pytest.mark.parametrize("packing", ["2bit", "base3"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_save_then_read_gives_identical_codes_and_scales(tiny_open_clip, tmp_path, packing, granularity):
    ternarize_(tiny_open_clip, TernaryConfig(granularity=granularity, group_size=20, embedding=True))
    expected = site_codes(tiny_open_clip)
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip", packing=packing)
    model = read(path)
    assert set(model.ternary) == set(expected)
    for name, (codes, scales) in expected.items():
        assert np.array_equal(model.ternary[name].codes(), codes), name
        assert np.array_equal(model.ternary[name].scales, scales), name
    floats = {n: p.detach().numpy() for n, p in tiny_open_clip.named_parameters() if "parametrizations" not in n}
    assert set(model.floats) == set(floats)
    for name, value in floats.items():
        assert np.array_equal(model.floats[name], value), name


def test_file_is_readable_by_the_safetensors_library(tiny_open_clip, tmp_path):
    from safetensors.numpy import load_file

    ternarize_(tiny_open_clip, TernaryConfig())
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip")
    raw = load_file(path)
    model = read(path)
    name = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert np.array_equal(raw[name + ".ternary"], model.ternary[name].packed)
    assert np.array_equal(raw["visual.ln_pre.weight"], model.floats["visual.ln_pre.weight"])


def test_fp16_floats_and_base3_shrink_the_file(tiny_open_clip, tmp_path):
    ternarize_(tiny_open_clip, TernaryConfig(embedding=True))
    a = ternaryclip.save(tiny_open_clip, tmp_path / "a.tclip", packing="2bit")
    b = ternaryclip.save(tiny_open_clip, tmp_path / "b.tclip", packing="base3", float_dtype="fp16")
    assert b.stat().st_size < a.stat().st_size
    model = read(b)
    assert model.floats["visual.ln_pre.weight"].dtype == np.float16


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_to_torch_forward_equals_the_saved_ternary_model(tiny_open_clip, tmp_path, packing):
    ternarize_(tiny_open_clip, TernaryConfig(rule="twn", embedding=True))
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip", packing=packing)
    rebuilt = to_torch(path)
    image, text = random_inputs()
    with torch.no_grad():
        assert torch.allclose(rebuilt.encode_image(image), tiny_open_clip.encode_image(image), atol=1e-5)
        assert torch.allclose(rebuilt.encode_text(text), tiny_open_clip.encode_text(text), atol=1e-5)


def test_detect_ternary_accepts_exact_rows_and_rejects_a_fourth_value():
    w = torch.tensor([[0.5, -0.5, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, -2.0]])
    codes, scales = detect_ternary(w)
    assert codes.tolist() == [[1, -1, 0], [0, 0, 0], [1, 1, -1]]
    assert scales[:, 0].tolist() == [0.5, 0.0, 2.0]
    with pytest.raises(NotTernaryError, match="row 1"):
        detect_ternary(torch.tensor([[0.5, -0.5, 0.0], [0.5, 0.25, 0.0]]))
    g_codes, g_scales = detect_ternary(torch.tensor([[1.0, -1.0, 3.0, 0.0, 0.2]]), group_size=2)
    assert g_codes.tolist() == [[1, -1, 1, 0, 1]]
    assert torch.equal(g_scales, torch.tensor([[1.0, 3.0, 0.2]]))


def _ternary_checkpoint(model, tmp_path, suffix):
    ternarize_(model, TernaryConfig(embedding=True))
    expected = site_codes(model)
    materialize_(model)
    path = tmp_path / f"ternary{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    return path, expected


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pack_cli_imports_a_float_ternary_open_clip_checkpoint(tiny_open_clip, tiny_config_path, tmp_path, suffix):
    ckpt, expected = _ternary_checkpoint(tiny_open_clip, tmp_path, suffix)
    out = tmp_path / "m.tclip"
    assert (
        main(
            [
                "pack",
                "--open-clip",
                str(tiny_config_path),
                "--pretrained",
                str(ckpt),
                "--embedding",
                "--packing",
                "base3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    model = read(out)
    for name, (codes, scales) in expected.items():
        assert np.array_equal(model.ternary[name].codes(), codes), name
        assert np.allclose(
            np.broadcast_to(model.ternary[name].scales, (codes.shape[0], 1)),
            np.broadcast_to(scales, (codes.shape[0], 1)),
        ), name


def test_pack_refuses_non_ternary_weights_unless_asked_to_quantize(tiny_config_path, tmp_path, capsys):
    import open_clip

    ckpt = tmp_path / "float.pt"
    torch.save(open_clip.CLIP(**TINY_OPEN_CLIP).state_dict(), ckpt)
    out = tmp_path / "m.tclip"
    args = ["pack", "--open-clip", str(tiny_config_path), "--pretrained", str(ckpt), "--out", str(out)]
    assert main(args) == 2  # scope auto: not one weight is ternary
    err = capsys.readouterr().err
    assert "found no weight that is ternary x scale" in err and "--quantize" in err and not out.exists()
    assert main(args + ["--scope", "all"]) == 2
    err = capsys.readouterr().err
    assert "are not ternary" in err and "text_projection (row 0" in err and "visual.conv1.weight" in err
    assert "--quantize" in err
    assert not out.exists()
    assert main(args + ["--quantize", "twn", "--scope", "ffn"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["quantization"]["post_training_rule"] == "twn" and info["quantization"]["scope"] == "ffn"
    assert 0 < info["ternary_fraction"] < 1


# ---------------------------------------------------------------- scope auto: partly ternary checkpoints

PARTLY = r"transformer\.resblocks\.0\.|mlp"  # leaves conv1, projections and block 1's attention float


def test_pack_scope_auto_keeps_float_what_training_left_float(tiny_open_clip, tiny_config_path, tmp_path, capsys):
    ternarize_(tiny_open_clip, TernaryConfig(scope=PARTLY, embedding=True))
    expected = site_codes(tiny_open_clip)
    materialize_(tiny_open_clip)
    ckpt = tmp_path / "partly.pt"
    torch.save(tiny_open_clip.state_dict(), ckpt)
    out = tmp_path / "m.tclip"
    assert main(["pack", "--open-clip", str(tiny_config_path), "--pretrained", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    model = read(out)
    assert set(model.ternary) == set(expected)  # exactly the weights that are ternary x scale
    for name, (codes, _) in expected.items():
        assert np.array_equal(model.ternary[name].codes(), codes), name
    kept = model.meta["quantization"]["kept_float"]
    assert {"visual.conv1.weight", "visual.proj", "text_projection"} <= set(kept)
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in kept and not set(kept) & set(expected)
    assert printed.startswith(f"kept float ({len(kept)} weights not ternary x scale): ") and all(
        k in printed for k in kept
    )
    rebuilt = to_torch(out)
    image, text = random_inputs()
    with torch.no_grad():
        assert torch.equal(rebuilt.visual.conv1.weight, tiny_open_clip.visual.conv1.weight)
        assert torch.allclose(rebuilt.encode_image(image), tiny_open_clip.encode_image(image), atol=1e-5)
        assert torch.allclose(rebuilt.encode_text(text), tiny_open_clip.encode_text(text), atol=1e-5)
    assert main(["pack", "--open-clip", str(tiny_config_path), "--pretrained", str(ckpt), "--out", str(out),
                 "--scope", "auto", "--quantize", "twn"]) == 2  # fmt: skip
    assert "scope 'auto' packs the weights that are already ternary" in capsys.readouterr().err


def test_pack_scope_auto_on_a_hugging_face_folder(tiny_hf_clip, tmp_path, capsys):
    """The patch convolution left float by the trainer stays float; every ternary Linear is packed."""
    from transformers import CLIPModel

    from helpers import tiny_hf_config

    ternarize_(tiny_hf_clip, TernaryConfig(scope=r"_proj\.weight|fc[12]", embedding=True))
    expected = site_codes(tiny_hf_clip)
    materialize_(tiny_hf_clip)
    tiny_hf_clip.save_pretrained(tmp_path / "hf")
    out = tmp_path / "hf.tclip"
    assert main(["pack", "--hf", str(tmp_path / "hf"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    model = read(out)
    kept = ["vision_model.embeddings.patch_embedding.weight", "visual_projection.weight", "text_projection.weight"]
    assert (
        model.meta["quantization"]["kept_float"] == kept
        and f"(3 weights not ternary x scale): {', '.join(kept)}" in printed
    )
    assert {"visual.conv1.weight", "visual.proj", "text_projection"} <= set(model.floats)
    assert (
        "visual.transformer.resblocks.1.attn.in_proj_weight" in model.ternary
        and "token_embedding.weight" in model.ternary
    )
    assert len(model.ternary) == len(expected) - 2 * 2 * 2  # q, k, v of 2 blocks x 2 towers stack into one
    image, text = random_inputs(vocab=tiny_hf_config().text_config.vocab_size - 1)
    text[:, -3] = tiny_hf_config().text_config.eos_token_id
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    rebuilt = to_torch(out)
    with torch.no_grad():
        hf_img = hf.get_image_features(pixel_values=image)
        hf_img = getattr(hf_img, "pooler_output", hf_img)
        assert torch.allclose(rebuilt.encode_image(image), hf_img, atol=1e-5)


def test_hf_folder_import_and_forward(tiny_hf_clip, tmp_path):
    """HF CLIP (materialized ternary weights) -> .tclip with open_clip names -> open_clip forward equal to HF."""
    from transformers import CLIPModel

    from helpers import tiny_hf_config

    config = tiny_hf_config()
    ternarize_(tiny_hf_clip, TernaryConfig(embedding=True))
    materialize_(tiny_hf_clip)
    tiny_hf_clip.save_pretrained(tmp_path / "hf")
    out = tmp_path / "hf.tclip"
    assert main(["pack", "--hf", str(tmp_path / "hf"), "--embedding", "--out", str(out)]) == 0
    model = read(out)
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in model.ternary
    assert model.ternary["visual.proj"].out_axis == 1
    rebuilt = to_torch(out)
    image, text = random_inputs(vocab=config.text_config.vocab_size - 1)
    text[:, -3] = config.text_config.eos_token_id  # HF pools at the first eos token
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        hf_img = hf.get_image_features(pixel_values=image)
        hf_txt = hf.get_text_features(input_ids=text)
        hf_img, hf_txt = (getattr(x, "pooler_output", x) for x in (hf_img, hf_txt))
        assert torch.allclose(rebuilt.encode_image(image), hf_img, atol=1e-5)
        assert torch.allclose(rebuilt.encode_text(text), hf_txt, atol=1e-5)


def test_pack_cli_openai_layout_checkpoint(tmp_path):
    import open_clip

    cfg = {
        **TINY_OPEN_CLIP,
        "vision_cfg": {**TINY_OPEN_CLIP["vision_cfg"], "head_width": 64},
        "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "width": 64, "heads": 1},
        "quick_gelu": True,
    }
    model = open_clip.CLIP(**cfg).eval()
    ckpt, expected = _ternary_checkpoint(model, tmp_path, ".pt")
    out = tmp_path / "m.tclip"
    assert main(["pack", "--checkpoint", str(ckpt), "--embedding", "--out", str(out)]) == 0
    rebuilt = to_torch(out)
    image, text = random_inputs()
    with torch.no_grad():
        assert torch.allclose(rebuilt.encode_text(text), model.encode_text(text), atol=1e-5)
    assert read(out).arch.quick_gelu


def test_info_cli_reports_sizes(tiny_open_clip, tmp_path, capsys):
    ternarize_(tiny_open_clip, TernaryConfig(embedding=True))
    path = ternaryclip.save(tiny_open_clip, tmp_path / "m.tclip", packing="base3")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    total = sum(p.numel() for p in tiny_open_clip.parameters())
    assert info["total_params"] == total and info["file_bytes"] == path.stat().st_size
    assert info["compression_vs_fp32"] == pytest.approx(4 * total / path.stat().st_size)
    assert info["bits_per_ternary_weight"] == pytest.approx(1.6, abs=0.01)
    assert main(["info", str(path)]) == 0
    assert "smaller" in capsys.readouterr().out
