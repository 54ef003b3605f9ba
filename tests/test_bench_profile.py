"""`ternaryclip bench --profile`'s arithmetic count and share of the int8 peak, on a tiny model."""

import json

import pytest

from helpers import TINY_OPEN_CLIP
from ternaryclip import kernels


def _forward_ops(tokens: int, width: int, mlp: int, layers: int, causal: bool, embed: int) -> int:
    """Multiply-adds x 2 of a tower by hand: every block's qkv, attention, out and MLP GEMMs on every
    token, but the last block's out and MLP on the pooled token only, then the projection."""
    pairs = tokens * (tokens + 1) // 2 if causal else tokens * tokens
    qkv_and_attention = 2 * tokens * width * 3 * width + 4 * width * pairs
    block = qkv_and_attention + 2 * tokens * (width * width + 2 * width * mlp)
    last = qkv_and_attention + 2 * (width * width + 2 * width * mlp)
    return (layers - 1) * block + last + 2 * width * embed


def test_profile_counts_the_forwards_arithmetic_and_its_share_of_the_int8_peak(tmp_path, capsys):
    from ternaryclip.bench.profile import format_profile, run_profile

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    report = run_profile(str(config), batches=(1,), threads=1, repeats=1, progress=lambda *_: None)
    rows = report["profile"]
    # image: 32 px in 8 px patches = 16 patches + the class token; width 64, MLP 256, 2 layers, embed 32
    patch_embed = 2 * 16 * (3 * 8 * 8) * 64
    assert rows["image_b1"]["ops"] == patch_embed + _forward_ops(17, 64, 256, 2, causal=False, embed=32)
    # text: the profile's first caption is start + 5 words + end = 7 tokens, and the tower stops there
    assert rows["text_b1"]["ops"] == _forward_ops(7, 48, 192, 2, causal=True, embed=32)
    for row in rows.values():
        assert row["gops"] == pytest.approx(row["ops"] / row["total"] / 1e9)
    peak = report["int8_peak"]
    assert peak["isa"] == kernels.fast_gemm_impl() and peak["threads"] == 1
    if peak["isa"] in ("avx2", "avxvnni", "avx512", "amx"):  # the kernels measure a peak loop for these
        assert peak["gops"] > 0
        for row in rows.values():
            assert row["share_of_int8_peak"] == pytest.approx(row["gops"] / peak["gops"])
        table = format_profile(report)
        assert "| GOPS | of int8 peak |" in table.splitlines()[0]
        share = f"{rows['image_b1']['share_of_int8_peak']:.0%}"
        assert table.splitlines()[2].endswith(f"| {rows['image_b1']['gops']:.0f} | {share} |")
