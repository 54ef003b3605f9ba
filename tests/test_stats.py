"""`ternary_stats` against counts done by hand on the tiny model, and the `stats` CLI."""

import json
import math

import pytest

from helpers import TINY_OPEN_CLIP
from ternaryclip.cli import main
from ternaryclip.quant import TernaryConfig, ternarize_, ternary_stats


def hand_counts():
    v, t, e = TINY_OPEN_CLIP["vision_cfg"], TINY_OPEN_CLIP["text_cfg"], TINY_OPEN_CLIP["embed_dim"]
    wv, wt = v["width"], t["width"]
    block_v = 3 * wv * wv + wv * wv + 4 * wv * wv * 2  # in_proj, out_proj, c_fc, c_proj
    block_t = 3 * wt * wt + wt * wt + 4 * wt * wt * 2
    conv = wv * 3 * v["patch_size"] ** 2
    ternary_v = conv + v["layers"] * block_v + wv * e
    ternary_t = t["layers"] * block_t + wt * e
    embedding = t["vocab_size"] * wt
    scales = (wv + v["layers"] * (3 * wv + wv + 4 * wv + wv) + e) + (t["layers"] * (3 * wt + wt + 4 * wt + wt) + e)
    return ternary_v, ternary_t, embedding, scales


def test_stats_match_hand_counts(tiny_open_clip):
    total = sum(p.numel() for p in tiny_open_clip.parameters())
    ternarize_(tiny_open_clip, TernaryConfig(scope="all", embedding=True))
    s = ternary_stats(tiny_open_clip, packing="2bit")
    ternary_v, ternary_t, embedding, scales = hand_counts()
    assert s["total_params"] == total
    assert s["ternary_params"] == ternary_v + ternary_t + embedding
    assert s["per_tower"]["vision"]["ternary_params"] == ternary_v
    assert s["per_tower"]["text"]["ternary_params"] == ternary_t + embedding
    assert s["per_tower"]["other"]["total_params"] == 1  # logit_scale
    assert s["scale_count"] == scales + TINY_OPEN_CLIP["text_cfg"]["vocab_size"]
    assert math.isclose(s["ternary_fraction"], s["ternary_params"] / total)
    bits = s["ternary_params"] * 2 + s["scale_count"] * 32 + (total - s["ternary_params"]) * 32
    assert math.isclose(s["compression_vs_fp32"], 32 * total / bits)


def test_sparsity_counts_zero_codes(tiny_open_clip):
    ternarize_(tiny_open_clip, TernaryConfig(scope="ffn"))
    s = ternary_stats(tiny_open_clip)
    zeros = numel = 0
    for block in list(tiny_open_clip.visual.transformer.resblocks) + list(tiny_open_clip.transformer.resblocks):
        for lin in (block.mlp.c_fc, block.mlp.c_proj):
            zeros += int((lin.weight == 0).sum())
            numel += lin.weight.numel()
    assert s["ternary_params"] == numel
    assert math.isclose(s["sparsity"], zeros / numel)
    row = next(r for r in s["modules"] if r["name"] == "visual.transformer.resblocks.0.mlp.c_fc.weight")
    assert row["ternary"] and row["kind"] == "linear" and row["scales"] == row["shape"][0]


def test_float_model_has_no_ternary_weights(tiny_open_clip):
    s = ternary_stats(tiny_open_clip)
    assert s["ternary_params"] == 0 and s["compression_vs_fp32"] == 1.0


def test_unknown_packing_is_refused(tiny_open_clip):
    with pytest.raises(ValueError, match="packing"):
        ternary_stats(tiny_open_clip, packing="3bit")


def test_stats_cli_json(tiny_config_path, capsys):
    assert main(["stats", "--open-clip", str(tiny_config_path), "--scope", "all", "--embedding", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ternary_v, ternary_t, embedding, _ = hand_counts()
    assert out["ternary_params"] == ternary_v + ternary_t + embedding
    assert out["packing"] == "base3" and out["bits_per_weight"] == 1.6


def test_stats_cli_table_and_errors(tiny_config_path, capsys):
    assert main(["stats", "--open-clip", str(tiny_config_path), "--scope", "ffn"]) == 0
    assert "compression vs fp32" in capsys.readouterr().out
    assert main(["stats", "--open-clip", str(tiny_config_path), "--scope", "nothing_here"]) == 2
    assert "matches no weight" in capsys.readouterr().err
    assert main(["stats", "--open-clip", "ViT-Z-99"]) == 2
    assert "unknown open_clip model" in capsys.readouterr().err
