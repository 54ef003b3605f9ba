"""Distillation: losses against references, schedule, checkpoints (bit-exact resume), bad input."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_DISTILL, tiny_hf_config
from ternaryclip.distill import (
    DistillConfig,
    DistillLoss,
    LogitDistillLoss,
    LossWeights,
    Trainer,
    TrainingDiverged,
    lr_at,
)
from ternaryclip.distill.checkpoint import CheckpointError
from ternaryclip.distill.losses import ClipLoss, FeatureDistillLoss
from ternaryclip.distill.trainer import param_groups


def tiny_config(files, tmp_path, **kw) -> DistillConfig:
    config, weights = files
    base = dict(
        teacher=config,
        teacher_pretrained=weights,
        data="synthetic",
        steps=6,
        batch_size=8,
        lr=1e-3,
        warmup=2,
        out=str(tmp_path / "run"),
        save_every=3,
        log_every=1,
        progress=False,
        threads=1,
        workers=1,
    )
    return DistillConfig(**{**base, **kw})


# ---------------------------------------------------------------- losses


def test_clip_loss_equals_open_clip():
    from open_clip.loss import ClipLoss as OpenClipLoss

    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(10, 16), dim=-1), F.normalize(torch.randn(10, 16), dim=-1)
    scale = torch.tensor(20.0)
    assert torch.allclose(ClipLoss()(image, text, scale), OpenClipLoss()(image, text, scale), atol=1e-6)


def test_logit_distillation_is_kl_both_ways():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 6), torch.randn(6, 6)
    for tau in (1.0, 2.0):
        expected = 0.0
        for s, t in ((student, teacher), (student.T, teacher.T)):
            expected += (
                0.5
                * F.kl_div(
                    F.log_softmax(s / tau, -1), F.log_softmax(t / tau, -1), log_target=True, reduction="batchmean"
                )
                * tau**2
            )
        assert torch.allclose(LogitDistillLoss(tau)(student, teacher), expected, atol=1e-6)
    reverse = 0.5 * (
        F.kl_div(F.log_softmax(teacher, -1), F.log_softmax(student, -1), log_target=True, reduction="batchmean")
        + F.kl_div(F.log_softmax(teacher.T, -1), F.log_softmax(student.T, -1), log_target=True, reduction="batchmean")
    )
    assert torch.allclose(LogitDistillLoss(reverse=True)(student, teacher), reverse, atol=1e-6)
    assert float(LogitDistillLoss()(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        LogitDistillLoss(0.0)


def test_feature_loss_and_weighted_total():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    assert float(FeatureDistillLoss("cosine")(a, b)) == pytest.approx(float((1 - (a * b).sum(-1)).mean()), rel=1e-6)
    assert float(FeatureDistillLoss("mse")(a, b)) == pytest.approx(float(((a - b) ** 2).sum(-1).mean()), rel=1e-6)
    si, st, ti, tt = (torch.randn(5, 8) for _ in range(4))
    scale = torch.tensor(10.0)
    loss = DistillLoss(LossWeights(0.5, 2.0, 3.0), temperature=2.0)
    objective, parts = loss(si, st, scale, ti, tt, scale)
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    expected = (
        0.5 * ClipLoss()(n(si), n(st), scale)
        + 2.0 * LogitDistillLoss(2.0)(scale * n(si) @ n(st).T, scale * n(ti) @ n(tt).T)
        + 3.0 * 0.5 * (FeatureDistillLoss()(n(si), n(ti)) + FeatureDistillLoss()(n(st), n(tt)))
    )
    assert float(objective) == pytest.approx(float(expected), rel=1e-5)
    assert parts["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert set(parts) == {"contrastive", "logit", "feature", "loss", "teacher_cosine"}
    only_clip, parts = loss(si, st, scale)
    assert set(parts) == {"contrastive", "loss"}


# ---------------------------------------------------------------- schedule and optimizer groups


def test_warmup_cosine_schedule():
    c = DistillConfig(steps=10, warmup=2, lr=1.0, min_lr=0.1)
    assert [lr_at(s, c) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(2, c) == pytest.approx(1.0)
    assert lr_at(6, c) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(10, c) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_biases_and_logit_scale(tiny_open_clip):
    from ternaryclip.quant import TernaryConfig, ternarize_

    ternarize_(tiny_open_clip, TernaryConfig(embedding=True))
    decay, plain = param_groups(tiny_open_clip, 0.1)
    names = {id(p): n for n, p in tiny_open_clip.named_parameters()}
    plain_names = [names[id(p)] for p in plain["params"]]
    assert any("logit_scale" in n for n in plain_names) and any("ln_1" in n for n in plain_names)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any("c_fc" in names[id(p)] for p in decay["params"]) and plain["weight_decay"] == 0.0


# ---------------------------------------------------------------- the trainer


def _student_state(trainer: Trainer) -> dict:
    return {k: v.clone() for k, v in trainer.student.state_dict().items()}


def test_resume_is_bit_exact(tiny_teacher_files, tmp_path):
    straight = Trainer(tiny_config(tiny_teacher_files, tmp_path / "a", accum=2))
    straight.run()

    def interrupt(model, step):
        if step == 5:  # after the step-3 checkpoint, before the next one: work since then is lost
            raise KeyboardInterrupt
        return {}

    first = Trainer(tiny_config(tiny_teacher_files, tmp_path / "b", eval_every=1, accum=2), eval_fn=interrupt)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    resumed = Trainer(tiny_config(tiny_teacher_files, tmp_path / "b", resume=True, accum=2))
    assert resumed.step == 3
    resumed.run()
    a, b = _student_state(straight), _student_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(line) for line in open(tmp_path / "b" / "run" / "metrics.jsonl")]
    assert [m["step"] for m in log] == [1, 2, 3, 4, 5, 6]  # steps 4-5 of the killed run are dropped
    resumed_log = log[3:]
    assert [m["loss"] for m in resumed_log] == [m["loss"] for m in straight.history[3:]]


def test_resume_refuses_other_settings(tiny_teacher_files, tmp_path):
    Trainer(tiny_config(tiny_teacher_files, tmp_path, steps=3)).run()
    with pytest.raises(CheckpointError, match="lr"):
        Trainer(tiny_config(tiny_teacher_files, tmp_path, steps=3, lr=5e-4, resume=True))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(tiny_config(tiny_teacher_files, tmp_path / "elsewhere", resume=True))


def _rewrite_checkpoint(path, edit_state=None, drop=(), keep_checksums=False, state_crc=True):
    """Rewrite a checkpoint with its JSON edited and/or tensors dropped (their checksums too, unless asked)."""
    import zlib

    from safetensors import safe_open
    from safetensors.torch import save_file

    from ternaryclip.distill.checkpoint import KEY, STATE_CRC

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if k not in drop}
    state = json.loads(meta[KEY])
    if not keep_checksums:
        state["checksums"] = {k: v for k, v in state["checksums"].items() if k not in drop}
    text = json.dumps(edit_state(state) if edit_state else state)
    meta = {KEY: text, STATE_CRC: str(zlib.crc32(text.encode())) if state_crc else meta[STATE_CRC]}
    save_file(tensors, str(path), metadata=meta)


def _flip_bit_in(path, tensor: str) -> None:
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    start = json.loads(raw[8 : 8 + n])[tensor]["data_offsets"][0]
    raw[8 + n + start + 1] ^= 0x10
    path.write_bytes(bytes(raw))


def test_damaged_checkpoints_are_refused_by_name(tiny_teacher_files, tmp_path):
    config = tiny_config(tiny_teacher_files, tmp_path, steps=2, save_every=2)
    Trainer(config).run()
    path = tmp_path / "run" / "checkpoint.safetensors"
    good = path.read_bytes()
    resume = tiny_config(tiny_teacher_files, tmp_path, steps=2, save_every=2, resume=True)
    assert Trainer(resume).step == 2
    cases = [
        (
            lambda: _flip_bit_in(path, "student.visual.conv1.parametrizations.weight.original"),
            "fail their checksum.*conv1",
        ),
        (lambda: _flip_bit_in(path, "rng.torch"), "fail their checksum.*rng.torch"),
        (lambda: _rewrite_checkpoint(path, state_crc=False, edit_state=lambda s: {**s, "step": 1}), "metadata fails"),
        (lambda: _rewrite_checkpoint(path, edit_state=lambda s: [s]), "metadata is a JSON list"),
        (
            lambda: _rewrite_checkpoint(path, edit_state=lambda s: {k: v for k, v in s.items() if k != "step"}),
            "lacks step",
        ),
        (lambda: _rewrite_checkpoint(path, drop=["rng.torch"]), r"lacks the RNG state"),
        (
            lambda: _rewrite_checkpoint(path, drop=["student.logit_scale"]),
            r"student tensors .*missing \['logit_scale'\]",
        ),
        (lambda: _rewrite_checkpoint(path, drop=["student.logit_scale"], keep_checksums=True), "missing.*logit_scale"),
        (lambda: path.write_bytes(good[:-100]), "not a readable checkpoint|cannot read"),
    ]
    for damage, message in cases:
        path.write_bytes(good)
        damage()
        with pytest.raises(CheckpointError, match=message) as caught:
            Trainer(resume)
        assert str(path) in str(caught.value)


def test_cli_resume_from_a_damaged_checkpoint_is_one_line(tiny_teacher_files, tmp_path):
    import subprocess
    import sys

    config, weights = tiny_teacher_files
    args = [sys.executable, "-m", "ternaryclip", "distill", "--teacher", str(config), "--teacher-pretrained",
            str(weights), "--steps", "1", "--batch-size", "4", "--threads", "1", "--workers", "1",
            "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert subprocess.run(args, capture_output=True, timeout=300).returncode == 0
    path = tmp_path / "run" / "checkpoint.safetensors"
    _flip_bit_in(path, "student.visual.conv1.parametrizations.weight.original")
    result = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"ternaryclip distill: error: {path}: 1 tensor(s) fail")


def test_stale_temp_files_are_removed_on_start(tiny_teacher_files, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / "checkpoint.safetensors.4242.tmp", run / "checkpoint.safetensors.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (run / "notes.tmp").write_text("not ours")
    Trainer(tiny_config(tiny_teacher_files, tmp_path, steps=1))
    assert not any(p.exists() for p in stale) and (run / "notes.tmp").exists()
    assert "removed" in capsys.readouterr().out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_teacher_files, tmp_path):
    trainer = Trainer(tiny_config(tiny_teacher_files, tmp_path, steps=2, save_every=1))
    trainer.run()
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    with torch.no_grad():
        trainer.student.visual.ln_post.weight.fill_(float("nan"))
    trainer.config.steps = 4
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        trainer.run()
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before


def test_distillation_learns_the_teacher(tiny_teacher_files, tmp_path):
    """QAT + KD from a copy of the teacher: the student's embeddings move toward the teacher's."""
    trainer = Trainer(
        tiny_config(
            tiny_teacher_files, tmp_path, steps=40, lr=2e-3, batch_size=16, warmup=5, contrastive=0.0, save_every=100
        )
    )
    history = trainer.run()
    early = np.mean([h["teacher_cosine"] for h in history[:5]])
    late = np.mean([h["teacher_cosine"] for h in history[-5:]])
    assert late > early + 0.02, (early, late)
    assert np.mean([h["loss"] for h in history[-5:]]) < np.mean([h["loss"] for h in history[:5]])
    assert trainer.stats()["ternary_fraction"] > 0.99


def test_export_runs_in_the_runtime(tiny_teacher_files, tmp_path):
    import ternaryclip

    trainer = Trainer(tiny_config(tiny_teacher_files, tmp_path, steps=2))
    trainer.run()
    path = trainer.export()
    runtime = ternaryclip.load(path, mode="exact", threads=1)
    from ternaryclip.eval.encoders import TorchEncoder

    texts = ["two small red circles on a dark background", "a blue square"]
    torch_text = TorchEncoder(trainer.student).encode_text(texts)
    np.testing.assert_allclose(runtime.encode_text(texts), torch_text, rtol=1e-3, atol=1e-4)


def test_embedding_mismatch_needs_projection(tiny_teacher_files, tmp_path):
    other = dict(TINY_DISTILL, embed_dim=16)
    path = tmp_path / "student-16.json"
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="--project"):
        Trainer(tiny_config(tiny_teacher_files, tmp_path, student=str(path)))
    trainer = Trainer(tiny_config(tiny_teacher_files, tmp_path, student=str(path), project=True, steps=2))
    assert trainer.run()[-1]["feature"] > 0


def test_bad_data_spec_fails_before_training(tiny_teacher_files, tmp_path):
    from ternaryclip.distill.data import DataError

    with pytest.raises(DataError, match="does not exist"):
        Trainer(tiny_config(tiny_teacher_files, tmp_path, data=str(tmp_path / "missing.csv")))
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(DataError, match="no image"):
        Trainer(tiny_config(tiny_teacher_files, tmp_path, data=str(tmp_path / "empty.tar")))


def test_config_file_and_cli_flags(tmp_path):
    from ternaryclip.cli import build_parser
    from ternaryclip.cli.distill import config_from_args

    (tmp_path / "c.yaml").write_text("steps: 7\nbatch-size: 12\nlr: 0.002\nscope: ffn\n")
    args = build_parser().parse_args(
        ["distill", "--config", str(tmp_path / "c.yaml"), "--lr", "0.005", "--no-embedding"]
    )
    config = config_from_args(args)
    assert (config.steps, config.batch_size, config.lr, config.scope, config.embedding) == (7, 12, 0.005, "ffn", False)
    (tmp_path / "bad.json").write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match="stepz"):
        DistillConfig.from_file(str(tmp_path / "bad.json"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: '10'\n", "setting steps must be int, got '10'"),
        ("data: [a.tar, b.tar]\n", "setting data must be str"),
        ("lr: yes\n", "setting lr must be float, got True"),
        ("save_every: 0\n", "save_every must be >= 1"),
        ("log-every: 0\n", "log_every must be >= 1"),
        ("threads: -1\n", "threads must be >= 1"),
        ("1: 2\n", r"unknown setting\(s\) \['1'\]"),
    ],
)
def test_config_file_values_are_checked_before_training(tmp_path, text, message):
    """A file's values arrive untyped; each mistake is a ValueError (one CLI line), not a crash mid-run."""
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        DistillConfig.from_file(str(tmp_path / "c.yaml"))
    assert DistillConfig(out=tmp_path / "run").out == str(tmp_path / "run")  # a Path is still welcome


def test_hugging_face_teacher_and_student(tmp_path):
    """A Hugging Face CLIP folder as teacher (student = its copy): trains, exports, runs in the runtime."""
    from transformers import CLIPModel

    import ternaryclip
    from ternaryclip.eval.encoders import TorchEncoder

    torch.manual_seed(0)
    # real CLIP BPE ids: the synthetic captions are tokenized with CLIP's vocabulary
    config = tiny_hf_config(vocab_size=49408, context=24, bos=49406, eos=49407, pad=0)
    CLIPModel(config).save_pretrained(tmp_path / "hf")
    trainer = Trainer(
        DistillConfig(
            teacher=str(tmp_path / "hf"),
            data="synthetic",
            steps=3,
            batch_size=8,
            warmup=1,
            out=str(tmp_path / "run"),
            progress=False,
            threads=1,
            workers=1,
        )
    )
    history = trainer.run()
    assert all(np.isfinite(h["loss"]) for h in history) and "feature" in history[0]
    path = trainer.export()
    texts = ["one red circle on a dark background"]
    np.testing.assert_allclose(
        ternaryclip.load(path, mode="exact").encode_text(texts),
        TorchEncoder(trainer.student).encode_text(texts),
        rtol=1e-3,
        atol=1e-4,
    )


def test_token_distillation(tiny_teacher_files, tmp_path):
    """Last-block tokens: zero loss for a float copy of the teacher, positive once ternary, and it trains."""
    float_copy = Trainer(
        tiny_config(tiny_teacher_files, tmp_path / "f", ternary=False, token_feature=1.0, steps=1, lr=1e-9)
    )
    assert float_copy.run()[0]["token_feature"] == pytest.approx(0.0, abs=1e-5)
    trainer = Trainer(tiny_config(tiny_teacher_files, tmp_path / "t", token_feature=1.0, steps=2))
    history = trainer.run()
    assert history[0]["token_feature"] > 1e-3
    assert history[0]["loss"] == pytest.approx(
        sum(history[0][k] for k in ("contrastive", "logit", "feature", "token_feature")), rel=1e-5
    )


def test_student_copied_from_a_frozen_teacher_trains(tiny_teacher_files, tmp_path):
    from ternaryclip.distill.models import freeze
    from ternaryclip.torch_clip import load_float_clip

    teacher = freeze(load_float_clip(*tiny_teacher_files))
    trainer = Trainer(tiny_config(tiny_teacher_files, tmp_path, teacher=None, steps=1), student=copy.deepcopy(teacher))
    before = trainer.student.visual.ln_post.weight.clone()
    trainer.run()
    assert not torch.equal(before, trainer.student.visual.ln_post.weight)


@pytest.mark.slow
def test_vit_b_32_distillation_steps(tmp_path):
    """Real shapes: two QAT + KD steps of a ViT-B/32 student from a ViT-B/32 teacher (random weights)."""
    from ternaryclip.torch_clip import load_float_clip

    teacher = load_float_clip("ViT-B-32")
    trainer = Trainer(
        DistillConfig(
            teacher=None,
            data="synthetic",
            steps=2,
            batch_size=4,
            warmup=1,
            out=str(tmp_path),
            progress=False,
            workers=1,
        ),
        teacher=teacher,
        student=copy.deepcopy(teacher),
    )
    history = trainer.run()
    assert all(np.isfinite(h["loss"]) for h in history) and history[0]["teacher_cosine"] < 1.0
    assert trainer.stats()["ternary_fraction"] > 0.99
