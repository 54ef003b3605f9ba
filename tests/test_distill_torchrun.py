"""Scale-out: two torchrun processes (gloo, CPU) follow the loss curve of one process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.numpy import load_file


def _run(nproc: int, config: dict, tmp_path, name: str) -> tuple[list[dict], dict]:
    out = tmp_path / name
    cfg = tmp_path / f"{name}.json"
    cfg.write_text(json.dumps({**config, "out": str(out)}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "ternaryclip",
        "distill",
        "--config",
        str(cfg),
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return log, load_file(str(out / "checkpoint.safetensors"))


def test_two_processes_match_one(tiny_teacher_files, tmp_path):
    teacher, weights = tiny_teacher_files
    config = dict(
        teacher=teacher,
        teacher_pretrained=weights,
        data="synthetic",
        steps=4,
        batch_size=8,
        lr=1e-3,
        warmup=1,
        save_every=4,
        log_every=1,
        threads=1,
        workers=1,
    )
    one, state_one = _run(1, config, tmp_path, "one")
    two, state_two = _run(2, config, tmp_path, "two")
    assert [m["step"] for m in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        for key in ("loss", "contrastive", "logit", "feature"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    latent = "student.visual.transformer.resblocks.0.mlp.c_fc.parametrizations.weight.original"
    assert abs(state_one[latent] - state_two[latent]).max() < 1e-4
