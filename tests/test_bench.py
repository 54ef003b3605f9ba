"""A smoke run of `ternaryclip bench` on a tiny model: the report's shape, never a speed assertion."""

import json
import os
import platform

import numpy as np
import pytest

from helpers import TINY_OPEN_CLIP
from ternaryclip import kernels
from ternaryclip.cli import main


def test_bench_writes_a_complete_report(tmp_path, capsys):
    config = tmp_path / "tiny-bench.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--arch",
                str(config),
                "--batch",
                "1,2",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--json",
                str(out),
                "--plot",
                str(tmp_path / "bench.png"),
            ]
        )
        == 0
    )
    assert "open_clip_fp32" in capsys.readouterr().out
    report = json.loads(out.read_text())
    engines = report["engines"]
    assert set(engines) == {
        "open_clip_fp32",
        "torch_int8_dynamic",
        "onnxruntime_fp32",
        "onnxruntime_2bit",
        "ternaryclip_exact",
        "ternaryclip_fast",
        "ternaryclip_bf16",
    }
    for r in engines.values():
        for key in ("image_b1", "image_b2", "text_b1", "text_b2"):
            assert r[key]["min_s"] <= r[key]["median_s"] <= r[key]["max_s"]
            assert r["speedup_vs_fp32"][key] > 0
        assert r["peak_rss_bytes"] > 0 and r["file_bytes"] > 0
    assert engines["onnxruntime_fp32"]["image_cosine_vs_fp32"] >= 0.9999
    assert engines["onnxruntime_fp32"]["text_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_exact"]["image_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_exact"]["text_cosine_vs_fp32"] >= 0.9999
    assert engines["ternaryclip_bf16"]["image_cosine_vs_fp32"] >= 0.999
    assert engines["ternaryclip_bf16"]["text_cosine_vs_fp32"] >= 0.999
    assert engines["ternaryclip_fast"]["size_ratio_vs_fp32"] > 3
    assert engines["torch_int8_dynamic"]["text_cosine_vs_fp32"] > 0.9  # text tower runs despite int8 Linears
    assert report["tclip_base3_bytes"] < engines["ternaryclip_fast"]["file_bytes"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    machine = report["machine"]  # what the numbers were measured on
    assert machine["cpu"] and machine["cores"] == os.cpu_count()
    assert machine["fast_gemm_impl"] == kernels.fast_gemm_impl()
    assert machine["fast_attention_impl"] == kernels.fast_attention_impl()
    assert machine["cpu_features"]["avx2"] == kernels.cpu_has_avx2()


def test_the_cpu_model_is_read_from_cpuinfo_and_falls_back_to_the_platform(tmp_path, monkeypatch):
    from ternaryclip.bench.machine import cpu_model, machine_info

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.10GHz\n")
    assert cpu_model(str(cpuinfo)) == "Example CPU @ 2.10GHz"
    assert cpu_model(str(tmp_path / "missing")) == (platform.processor() or platform.machine())
    monkeypatch.setenv("TERNARYCLIP_IMPL", "ref")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    info = machine_info()
    assert info["environment"]["TERNARYCLIP_IMPL"] == "ref" and info["fast_gemm_impl"] == "ref"
    assert (
        info["environment"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
        and info["environment"]["ATEN_CPU_CAPABILITY"] == "avx2"
    )
    assert "ONEDNN_MAX_CPU_ISA" not in info["environment"]


def test_each_engine_takes_every_place_in_the_order_over_as_many_repeats(monkeypatch):
    """The timed calls rotate: with three engines and three repeats, each one runs first, second and
    third once, and its times are its own."""
    from ternaryclip.bench import timing

    calls = []

    def fake_ask(conn, request):
        calls.append(conn)
        return {"a": 1.0, "b": 2.0, "c": 3.0}[conn], np.zeros((len(request[1]), 2), np.float32)

    monkeypatch.setattr(timing, "ask", fake_ask)
    monkeypatch.setattr(timing, "SETTLE_S", 0.0)
    workers = {name: (None, name) for name in "abc"}
    results, _ = timing.time_engines(workers, {"image": np.zeros((1, 3), np.float32)}, [1], 3, lambda *_: None)
    timed = calls[3:]  # after one warm-up call each
    assert [timed[i : i + 3] for i in (0, 3, 6)] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert {name: r["image_b1"]["median_s"] for name, r in results.items()} == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert timing.rotated([], 5) == []


def test_kernel_bench_reports_every_engine(tmp_path, capsys):
    from ternaryclip.bench.kernels import run_kernel_bench

    report = run_kernel_bench(threads=1, repeats=1, shapes=[(64, 48)], tokens=(1, 5), progress=lambda *_: None)
    assert [(r["m"], r["k"], r["n"]) for r in report["rows"]] == [(1, 64, 48), (5, 64, 48)]
    assert report["machine"]["arch"] == platform.machine() and "fast_gemm_impl" in report["machine"]
    for row in report["rows"]:
        assert row["ternary_auto_gops_per_core"] > 0 and row["torch_fp32_gops_per_core"] > 0
        assert row["torch_int8_dynamic_gops_per_core"] > 0
    # every path this CPU runs is timed, the test builds (the emulated AVX-VNNI kernels) are not
    assert ("avx2" in report["simd_impls"]) == kernels.cpu_has_avx2()
    assert ("avxvnni" in report["simd_impls"]) == kernels.cpu_has_avx_vnni()
    assert not set(kernels.TEST_IMPLS) & set(report["simd_impls"])
    assert report["avx_vnni"] == kernels.cpu_has_avx_vnni() and "avxvnni" in report["int8_dot_peak_gops"]


def test_onnx_2bit_conversion_matches_the_ternary_matmul(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ternaryclip.bench.ort_2bit import convert

    rng = np.random.default_rng(0)
    k, n = 256, 24
    codes = rng.integers(-1, 2, (n, k))
    scales = rng.random(n).astype(np.float32) + 0.5
    w_nk = (codes * scales[:, None]).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    float_w = rng.standard_normal((k, n)).astype(np.float32)  # not ternary: must stay a MatMul
    nodes = [
        helper.make_node("MatMul", ["x", "w_kn"], ["a"]),
        helper.make_node("Gemm", ["x", "w_nk", "bias"], ["b"], transB=1),
        helper.make_node("MatMul", ["x", "float_w"], ["c"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [3, n]) for o in "abc"],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(w_nk.T), "w_kn"),
            numpy_helper.from_array(w_nk, "w_nk"),
            numpy_helper.from_array(bias, "bias"),
            numpy_helper.from_array(float_w, "float_w"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx")
    assert convert(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx")) == 2
    converted = onnx.load(tmp_path / "q.onnx")
    assert [node.op_type for node in converted.graph.node].count("MatMulNBits") == 2
    x = rng.standard_normal((3, k)).astype(np.float32)
    a, b, c = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    expected = x @ w_nk.T
    tolerance = 0.02 * np.abs(expected).max()  # accuracy_level 4 quantizes activations to int8
    assert np.abs(a - expected).max() < tolerance and np.abs(b - (expected + bias)).max() < tolerance
    assert np.allclose(c, x @ float_w, atol=1e-4)


def test_bench_on_a_given_tclip_file(tmp_path):
    import open_clip
    import torch

    import ternaryclip
    from ternaryclip.bench import run_bench
    from ternaryclip.quant import TernaryConfig, ternarize_

    torch.manual_seed(0)
    model = open_clip.CLIP(**{**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}})
    path = ternaryclip.save(ternarize_(model.eval(), TernaryConfig(embedding=True)), tmp_path / "m.tclip")
    report = run_bench(
        model=str(path),
        batches=(1,),
        threads=1,
        repeats=1,
        engines=("open_clip_fp32", "ternaryclip_fast"),
        progress=lambda *_: None,
    )
    assert report["arch"] == str(path)
    assert report["engines"]["ternaryclip_fast"]["file_bytes"] == path.stat().st_size
    assert report["engines"]["ternaryclip_fast"]["image_cosine_vs_fp32"] > 0.99


def test_profile_splits_the_time_of_both_towers(tmp_path, capsys):
    from ternaryclip import kernels

    config = tmp_path / "tiny-profile.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    gemm = kernels.gemm
    out = tmp_path / "profile.json"
    args = ["bench", "--profile", "--arch", str(config), "--batch", "1,2", "--repeats", "1", "--json", str(out)]
    assert main(args) == 0
    assert "| image_b1 |" in capsys.readouterr().out
    assert kernels.gemm is gemm  # the timers are gone after the run
    rows = json.loads(out.read_text())["profile"]
    assert set(rows) == {"image_b1", "text_b1", "image_b2", "text_b2"}
    for row in rows.values():
        parts = row["gemm"] + row["attention"] + row["norms"] + row["activation"] + row["glue"]
        assert row["gemm"] > 0 and row["attention"] > 0 and row["norms"] > 0
        # on AMX the fast GEMM applies the MLP's activation in its epilogue: its time is the GEMM's
        assert (row["activation"] > 0) != kernels.fuses_epilogue(kernels.fast_gemm_impl())
        assert abs(parts - row["total"]) <= 1e-9 + 1e-6 * row["total"]


def _tiny_bench_config(tmp_path):
    config = tmp_path / "tiny-bench.json"
    config.write_text(json.dumps({**TINY_OPEN_CLIP, "text_cfg": {**TINY_OPEN_CLIP["text_cfg"], "vocab_size": 49408}}))
    return config


def test_openvino_engines_match_open_clip_fp32_of_the_same_weights(tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    pytest.importorskip("nncf", reason="the openvino extra is not installed")
    from ternaryclip.bench import run_bench
    from ternaryclip.bench.openvino_engine import cpu_has_bf16

    notes = []
    report = run_bench(
        arch=str(_tiny_bench_config(tmp_path)),
        batches=(1, 8),
        threads=1,
        repeats=1,
        engines=("open_clip_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8"),
        progress=notes.append,
    )
    engines = report["engines"]
    fp32, int8 = engines["openvino_fp32"], engines["openvino_int8"]
    # f32 forced: the same float graph, only summation order differs
    assert fp32["image_cosine_vs_fp32"] >= 0.999 and fp32["text_cosine_vs_fp32"] >= 0.999
    # NNCF int8 (weights and activations, per-tensor activation scales): on this tiny model (widths
    # 48-64, random ternary weights) the worst of 8 embeddings measured 0.995 for images and 0.80 for
    # texts (0.49 without SmoothQuant), so the bounds are 0.98 and 0.75; a broken graph gives ~0
    assert int8["image_cosine_vs_fp32"] >= 0.98 and int8["text_cosine_vs_fp32"] >= 0.75
    assert int8["file_bytes"] < fp32["file_bytes"] / 2  # int8 weights in the IR's .bin
    assert fp32["file_bytes"] >= engines["open_clip_fp32"]["file_bytes"] * 0.9  # fp32 weights, not fp16
    for r in (fp32, int8):
        assert r["peak_rss_bytes"] > 0 and r["text_b8"]["min_s"] <= r["text_b8"]["median_s"]
    if cpu_has_bf16():
        assert engines["openvino_bf16"]["image_cosine_vs_fp32"] >= 0.99
    else:
        assert "openvino_bf16" not in engines and "openvino_bf16" in report["skipped"]
        assert sum("skipping openvino_bf16" in n for n in notes) == 1


def test_openvino_bf16_is_probed_from_the_cpu_and_skipped_without_it(monkeypatch):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    pytest.importorskip("nncf", reason="the openvino extra is not installed")
    from pathlib import Path

    from ternaryclip.bench import openvino_engine
    from ternaryclip.bench.run import usable_engines

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if flags:  # OpenVINO's capability list agrees with the CPU's own flags
        assert openvino_engine.cpu_has_bf16() == any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
    monkeypatch.setattr(openvino_engine, "cpu_has_bf16", lambda: False)
    notes = []
    engines, skipped = usable_engines(("open_clip_fp32", "openvino_bf16", "openvino_int8"), notes.append)
    assert engines == ("open_clip_fp32", "openvino_int8") and list(skipped) == ["openvino_bf16"]
    assert len(notes) == 1 and "no bf16" in notes[0] and "\n" not in notes[0]
    monkeypatch.setattr(openvino_engine, "cpu_has_bf16", lambda: True)
    assert usable_engines(("openvino_bf16",), notes.append) == (("openvino_bf16",), {})


def test_openvino_engines_without_the_package_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    args = ["bench", "--arch", str(_tiny_bench_config(tmp_path)), "--engines", "open_clip_fp32,openvino_int8"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "ternaryclip bench: error: the openvino engines need OpenVINO and NNCF: pip install 'ternaryclip[openvino]'"
    )
    assert "Traceback" not in captured.err and not list(tmp_path.glob("*.onnx"))


def test_bench_refuses_an_unknown_engine(tmp_path, capsys):
    args = ["bench", "--arch", str(_tiny_bench_config(tmp_path)), "--engines", "open_clip_fp32,openvino_fp16"]
    assert main(args) == 2
    assert "unknown engine(s) openvino_fp16" in capsys.readouterr().err


def test_an_engine_that_fails_in_its_process_is_one_line_and_a_non_zero_exit(tmp_path, capsys, monkeypatch):
    """The engine's own process refuses (here: an instruction set name the kernels do not know, as
    TERNARYCLIP_IMPL passes to every engine): no traceback, the engine named, the others stopped."""
    monkeypatch.setenv("TERNARYCLIP_IMPL", "sse9")
    args = ["bench", "--arch", str(_tiny_bench_config(tmp_path)), "--engines", "open_clip_fp32,ternaryclip_fast"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("ternaryclip bench: error: ternaryclip_fast: ValueError: TERNARYCLIP_IMPL must be one of")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
