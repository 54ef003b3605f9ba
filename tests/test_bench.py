"""A smoke run of `ternaryclip bench` on a tiny model: the report's shape, never a speed assertion."""

import json

from conftest import TINY_OPEN_CLIP
from ternaryclip.cli import main


def test_bench_writes_a_complete_report(tmp_path, capsys):
    config = tmp_path / "tiny-bench.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    out = tmp_path / "bench.json"
    assert main(["bench", "--arch", str(config), "--batch", "1,2", "--repeats", "1", "--threads", "1",
                 "--json", str(out), "--plot", str(tmp_path / "bench.png")]) == 0
    assert "open_clip_fp32" in capsys.readouterr().out
    report = json.loads(out.read_text())
    engines = report["engines"]
    assert set(engines) == {"open_clip_fp32", "torch_int8_dynamic", "onnxruntime_fp32", "ternaryclip_exact",
                            "ternaryclip_fast"}
    for name, r in engines.items():
        for key in ("image_b1", "image_b2", "text_b1", "text_b2"):
            assert r[key]["min_s"] <= r[key]["median_s"] <= r[key]["max_s"]
            assert r["speedup_vs_fp32"][key] > 0
        assert r["peak_rss_bytes"] > 0 and r["file_bytes"] > 0
    assert engines["onnxruntime_fp32"]["image_cosine_vs_fp32"] >= 0.9999
    assert engines["onnxruntime_fp32"]["text_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_exact"]["image_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_exact"]["text_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_fast"]["size_ratio_vs_fp32"] > 3
    assert engines["torch_int8_dynamic"]["text_cosine_vs_fp32"] > 0.9  # text tower runs despite int8 Linears
    assert report["tclip_base3_bytes"] < engines["ternaryclip_fast"]["file_bytes"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernel_bench_reports_every_engine(tmp_path, capsys):
    from ternaryclip.bench.kernels import run_kernel_bench

    report = run_kernel_bench(threads=1, repeats=1, shapes=[(64, 48)], tokens=(1, 5), progress=lambda *_: None)
    assert [(r["m"], r["k"], r["n"]) for r in report["rows"]] == [(1, 64, 48), (5, 64, 48)]
    for row in report["rows"]:
        assert row["ternary_auto_gops_per_core"] > 0 and row["torch_fp32_gops_per_core"] > 0
        assert row["torch_int8_dynamic_gops_per_core"] > 0
