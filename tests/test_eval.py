"""`ternaryclip eval` / `report` and the CLIP_benchmark plugin, offline on locally written data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ternaryclip.cli import main as cli
from ternaryclip.data.images import DataError
from ternaryclip.eval.datasets import caption_file_set, export_clip_benchmark, image_folder_set, synthetic_sets
from ternaryclip.eval.run import evaluate_set, load_model


@pytest.fixture
def tiny_tclip(tiny_teacher_files, tmp_path):
    """The tiny teacher, ternarized and packed: the 'student' these tests evaluate."""
    import ternaryclip
    from ternaryclip.quant import TernaryConfig, ternarize_
    from ternaryclip.torch_clip import load_float_clip

    config, weights = tiny_teacher_files
    model = ternarize_(load_float_clip(config, weights), TernaryConfig(rule="twn", embedding=True))
    path = tmp_path / "student.tclip"
    ternaryclip.save(model, path, packing="base3")
    return str(path)


def test_eval_cli_student_vs_teacher(tiny_tclip, tiny_teacher_files, tmp_path, capsys):
    config, weights = tiny_teacher_files
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert (
        cli(
            [
                "eval",
                "--model",
                tiny_tclip,
                "--mode",
                "exact",
                "--teacher",
                config,
                "--teacher-pretrained",
                weights,
                "--dataset",
                "synthetic/colour",
                "--json",
                str(out),
                "--plot",
                str(png),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert [r["dataset"] for r in data["results"]] == ["synthetic/colour"] * 2
    student, teacher = data["results"]
    assert student["task"] == "zeroshot_classification" and student["metrics"]["acc5"] is not None
    assert student["file_bytes"] == __import__("os").path.getsize(tiny_tclip)
    row = next(r for r in data["retention"] if r["metric"] == "acc1")
    assert row["retention"] == pytest.approx(student["metrics"]["acc1"] / teacher["metrics"]["acc1"])
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "retention" in out and "skipped" not in out  # synthetic images all decode: no "skipped 0"


def test_runtime_and_torch_twin_score_alike(tiny_tclip):
    """The same ternary weights through the runtime (exact) and through torch give the same metrics."""
    import ternaryclip
    from ternaryclip.eval.encoders import TorchEncoder
    from ternaryclip.eval.run import LoadedModel
    from ternaryclip.pack import to_torch
    from ternaryclip.protocols import Encoder

    runtime = load_model(tiny_tclip, mode="exact", threads=1)
    twin = LoadedModel(TorchEncoder(to_torch(tiny_tclip)), "twin", "torch")
    assert isinstance(runtime.encoder, Encoder) and isinstance(twin.encoder, Encoder)
    assert not isinstance(to_torch(tiny_tclip), Encoder)  # a bare torch CLIP has no preprocess or arch
    for data in synthetic_sets("shape", image_size=32, n=200) + synthetic_sets("retrieval", image_size=32):
        a, b = evaluate_set(runtime, data)["metrics"], evaluate_set(twin, data)["metrics"]
        for key in a:
            if np.isfinite(a[key]):
                assert abs(a[key] - b[key]) <= 2 / 200, key
    del ternaryclip


def _folder(root, broken=True):
    for name, colour in (("redthing", (220, 30, 30)), ("bluething", (30, 30, 220))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 36), colour).save(root / name / f"{i}.png")
    if broken:
        (root / "redthing" / "bad.jpg").write_bytes(b"not an image")


def test_image_folder_counts_broken_images(tiny_tclip, tmp_path):
    _folder(tmp_path / "data")
    (tmp_path / "names.json").write_text(json.dumps({"redthing": "red", "bluething": "blue"}))
    (tmp_path / "templates.txt").write_text("a {c} picture\n{c}\n")
    data = image_folder_set(str(tmp_path / "data"), str(tmp_path / "names.json"), str(tmp_path / "templates.txt"))
    assert data.classnames == ["blue", "red"] and data.templates == ["a {c} picture", "{c}"]
    result = evaluate_set(load_model(tiny_tclip, threads=1), data)
    assert result["skipped"] == {"cannot decode": 1} and result["images"] == 6
    assert 0 <= result["metrics"]["acc1"] <= 1 and np.isnan(result["metrics"]["acc5"])


def test_eval_data_errors(tmp_path):
    _folder(tmp_path / "data", broken=False)
    (tmp_path / "data" / "emptyclass").mkdir()
    with pytest.raises(DataError, match="without images"):
        image_folder_set(str(tmp_path / "data"))
    with pytest.raises(DataError, match="does not exist"):
        image_folder_set(str(tmp_path / "nowhere"))
    (tmp_path / "names.txt").write_text("only one\n")
    (tmp_path / "data" / "emptyclass").rmdir()
    with pytest.raises(DataError, match="1 class names"):
        image_folder_set(str(tmp_path / "data"), str(tmp_path / "names.txt"))
    (tmp_path / "c.csv").write_text("image,text\na.png,hello\n")
    with pytest.raises(DataError, match="needs columns"):
        caption_file_set(str(tmp_path / "c.csv"))
    (tmp_path / "c.csv").write_text("filepath,title\na.png,hello\na.png,hi there\nb.png,x\n")
    grouped = caption_file_set(str(tmp_path / "c.csv"))
    assert [len(c) for c in grouped.captions] == [2, 1]


def _clip_benchmark(tmp_path, model, data, task, name):
    from ternaryclip.eval.clip_benchmark import main

    root = export_clip_benchmark(data, str(tmp_path / name))
    output = tmp_path / f"{name}.json"
    main(
        [
            "eval",
            "--model_type",
            "ternaryclip",
            "--model",
            model,
            "--pretrained",
            "fast",
            "--dataset",
            f"wds/{name}",
            "--dataset_root",
            root,
            "--task",
            task,
            "--no_amp",
            "--batch_size",
            "64",
            "--num_workers",
            "0",
            "--recall_k",
            "1",
            "5",
            "10",
            "--output",
            str(output),
        ]
    )
    return json.loads(output.read_text())


def test_clip_benchmark_plugin_matches_our_metrics(tiny_tclip, tmp_path):
    """CLIP_benchmark's own loop and metrics, with our loader, give the numbers `ternaryclip eval` gives."""
    model = load_model(tiny_tclip, mode="fast", threads=1)
    (colour,) = synthetic_sets("colour", image_size=32, n=120)
    theirs = _clip_benchmark(tmp_path, tiny_tclip, colour, "zeroshot_classification", "synth-colour")
    ours = evaluate_set(model, colour)["metrics"]
    assert theirs["model"] == tiny_tclip and theirs["task"] == "zeroshot_classification"
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert theirs["metrics"][key] == pytest.approx(ours[key], abs=1.01 / 120), key
    (retrieval,) = synthetic_sets("retrieval", image_size=32)
    retrieval.images, retrieval.captions = retrieval.images[:60], retrieval.captions[:60]
    theirs = _clip_benchmark(tmp_path, tiny_tclip, retrieval, "zeroshot_retrieval", "synth-retrieval")
    ours = evaluate_set(model, retrieval)["metrics"]
    for key in ("image_retrieval_recall@1", "text_retrieval_recall@1", "image_retrieval_recall@5"):
        assert theirs["metrics"][key] == pytest.approx(ours[key], abs=1.01 / 60), key
    # and `ternaryclip report` reads CLIP_benchmark's files next to ours
    assert (
        cli(
            [
                "report",
                str(tmp_path / "synth-colour.json"),
                str(tmp_path / "synth-retrieval.json"),
                "--out",
                str(tmp_path / "report.md"),
                "--plot",
                str(tmp_path / "report.png"),
            ]
        )
        == 0
    )
    text = (tmp_path / "report.md").read_text()
    assert "wds/synth-colour" in text and "R@1" in text and (tmp_path / "report.png").exists()


def test_clip_benchmark_unknown_dataset_is_a_clear_error(tiny_tclip, capsys):
    assert (
        cli(
            [
                "clip-benchmark",
                "eval",
                "--model_type",
                "ternaryclip",
                "--model",
                tiny_tclip,
                "--dataset",
                "no_such_set",
                "--no_amp",
                "--output",
                "/dev/null",
            ]
        )
        == 2
    )
    assert "no_such_set" in capsys.readouterr().err


def test_plugin_refuses_other_models():
    from ternaryclip.eval.clip_benchmark import load_ternaryclip

    with pytest.raises(ValueError, match="open_clip"):
        load_ternaryclip("ViT-B-32", "laion2b")


# ---------------------------------------------------------------- user mistakes and broken data


@pytest.mark.parametrize(
    "templates, message",
    [
        ("{c} {0}\n", r"template '\{c\} \{0\}' has field\(s\) \['0'\]"),
        ("a {thing}\n", r"template 'a \{thing\}' has field\(s\) \['thing'\]"),
        ("a photo\n", r"template 'a photo' a template needs \{c\}"),
        ("a {c\n", r"template 'a \{c' is not a format string"),
        ('{"a": "{c}"}', "expected a non-empty list"),
    ],
)
def test_bad_templates_are_named(tmp_path, templates, message):
    _folder(tmp_path / "data", broken=False)
    path = tmp_path / ("t.json" if templates.startswith('{"') else "t.txt")
    path.write_text(templates)
    with pytest.raises(DataError, match=message) as caught:
        image_folder_set(str(tmp_path / "data"), templates=str(path))
    assert str(path) in str(caught.value)
    assert image_folder_set(str(tmp_path / "data")).templates  # the defaults pass the same check


def test_class_whose_images_all_fail_is_an_error(tiny_tclip, tmp_path):
    _folder(tmp_path / "data", broken=False)
    for png in (tmp_path / "data" / "bluething").iterdir():
        png.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = image_folder_set(str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"no image of class\(es\) \['bluething'\] could be decoded"):
        evaluate_set(load_model(tiny_tclip, threads=1), data)


def test_eval_cli_mistakes_are_one_line(tiny_tclip, tiny_teacher_files, tmp_path, capsys):
    config, weights = tiny_teacher_files
    _folder(tmp_path / "data")
    base = ["eval", "--model", tiny_tclip, "--dataset", str(tmp_path / "data"), "--threads", "1"]
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it before any work: usage + one error line
        cli([*base, "--batch-size", "-1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "ternaryclip eval: error: argument --batch-size: must be >= 1, got -1" in err and "Traceback" not in err
    (tmp_path / "t.txt").write_text("{c} {0}\n")
    assert cli([*base, "--templates", str(tmp_path / "t.txt")]) == 2
    assert "template '{c} {0}'" in capsys.readouterr().err
    # One broken image, two models: said once for the data set.
    assert cli([*base, "--teacher", config, "--teacher-pretrained", weights]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 1 and "data: skipped 1 images {'cannot decode': 1}" in out


def test_skipped_lines_once_per_data_set_and_never_zero():
    from ternaryclip.eval.report import skipped_lines

    results = [
        {"dataset": "a", "model": "m", "skipped": {"cannot decode": 2}},
        {"dataset": "a", "model": "t", "skipped": {"cannot decode": 2}},
        {"dataset": "b", "model": "m", "skipped": {"cannot decode": 0}},
        {"dataset": "c", "model": "m", "skipped": {}},
    ]
    assert skipped_lines(results) == ["a: skipped 2 images {'cannot decode': 2}"]
