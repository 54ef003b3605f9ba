"""The command line as a user meets it: every verb has help, and every mistake is one line, never a traceback.

Mistakes run in a subprocess (bounded by a timeout), as from a shell: the exit status, stdout and stderr
are what a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY_DISTILL, TINY_OPEN_CLIP
from ternaryclip.cli import main

TIMEOUT = 240


def ternaryclip(*args: str, **kwargs) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ternaryclip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def assert_user_error(done: subprocess.CompletedProcess, verb: str, *phrases: str) -> str:
    """Non-zero exit, no traceback, and the error on one line (argparse adds its usage above it)."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    error = lines[-1]
    assert error.startswith(f"ternaryclip {verb}: error: "), done.stderr
    if not lines[0].startswith("usage:"):
        assert len(lines) == 1, done.stderr
    for phrase in phrases:
        assert phrase in error, error
    return error


@pytest.fixture
def tiny_tclip(tmp_path):
    """A tiny ternary CLIP that reads real CLIP BPE ids, packed."""
    import open_clip
    import torch

    import ternaryclip
    from ternaryclip.quant import TernaryConfig, ternarize_

    torch.manual_seed(0)
    path = tmp_path / "tiny.tclip"
    ternaryclip.save(ternarize_(open_clip.CLIP(**TINY_DISTILL).eval(), TernaryConfig()), path)
    return path


def test_every_verb_has_help(capsys):
    from ternaryclip.cli import VERBS

    for verb in VERBS:
        with pytest.raises(SystemExit) as exit_info:
            main([verb, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        # clip-benchmark hands every flag to CLIP_benchmark's own CLI
        assert ("usage: clip_benchmark" if verb == "clip-benchmark" else "usage: ternaryclip") in out


def test_version_is_the_package_version(capsys):
    from ternaryclip import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ternaryclip {__version__}"


def test_unknown_flag_shows_the_verbs_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--jsn", "x.tclip"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ternaryclip info ")
    assert "unrecognized arguments: --jsn" in err


def test_info_on_a_folder_says_it_is_a_folder(tmp_path):
    assert_user_error(ternaryclip("info", str(tmp_path)), "info", "is a folder")


@pytest.mark.parametrize(
    "args",
    [
        ("quickstart", "--steps", "0"),
        ("quickstart", "--threads", "-1"),
        ("quickstart", "--batch-size", "-3"),
        ("quickstart", "--lr", "nan"),
        ("distill", "--threads", "-1"),
        ("distill", "--workers", "-1"),  # 0 is DataLoader's "decode on this thread"
        ("embed", "x.tclip", "--texts", "a", "--out", "o.npz", "--batch-size", "-1"),
        ("eval", "x.tclip", "--dataset", "synthetic", "--threads", "0"),
    ],
)
def test_bad_counts_are_refused_before_any_work(args):
    assert_user_error(ternaryclip(*args), args[0], "must be")


def test_threads_in_a_distill_config_file_are_checked(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"threads": -1, "data": "synthetic", "out": str(tmp_path / "out")}))
    assert_user_error(ternaryclip("distill", "--config", str(config)), "distill", "threads must be")


def test_a_pickle_with_objects_is_refused_by_name(tmp_path):
    import torch

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": object()}, evil)
    done = ternaryclip("stats", "--open-clip", str(config), "--pretrained", str(evil))
    assert_user_error(done, "stats", "not a weights-only checkpoint", str(evil))


def test_a_checkpoint_of_another_architecture_names_the_tensors(tmp_path, tiny_open_clip):
    from safetensors.torch import save_file

    other = dict(TINY_OPEN_CLIP, embed_dim=16)
    config = tmp_path / "other.json"
    config.write_text(json.dumps(other))
    weights = tmp_path / "tiny.safetensors"
    state = {k: v.contiguous() for k, v in tiny_open_clip.state_dict().items()}
    state.pop("logit_scale")
    save_file(state, str(weights))
    error = assert_user_error(
        ternaryclip("stats", "--open-clip", str(config), "--pretrained", str(weights)),
        "stats",
        "is not a checkpoint of open_clip model",
        "missing 1: logit_scale",
        "mismatched shapes",
        "text_projection (48, 32) vs (48, 16)",
    )
    assert "Half" not in error


def test_a_file_that_is_not_safetensors(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all, nor tensors")
    done = ternaryclip("pack", "--open-clip", str(config), "--pretrained", str(fake), "--out", str(tmp_path / "x"))
    assert_user_error(done, "pack", "not a safetensors file")
    done = ternaryclip("pack", "--checkpoint", str(fake), "--out", str(tmp_path / "x.tclip"))
    assert_user_error(done, "pack", "not a safetensors file")


def test_info_into_a_closed_pipe_exits_quietly(tiny_tclip):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ternaryclip", "info", str(tiny_tclip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first line is written, as with `| head -0`
    _, err = proc.communicate(timeout=TIMEOUT)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    assert proc.returncode == 141


def test_embed_writes_the_path_it_prints(tiny_tclip, tmp_path):
    out = tmp_path / "embeddings.txt"
    done = ternaryclip("embed", str(tiny_tclip), "--texts", "a red circle", "two squares", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}:" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.txt", "tiny.tclip"]
    with np.load(out) as saved:
        assert saved["text"].shape == (2, TINY_DISTILL["embed_dim"])
        assert np.isfinite(saved["text"]).all() and np.abs(saved["text"]).sum() > 0


def test_embed_on_an_empty_folder_is_an_error(tiny_tclip, tmp_path):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    done = ternaryclip("embed", str(tiny_tclip), "--images", str(empty), "--out", str(tmp_path / "e.npz"))
    assert_user_error(done, "embed", "no image files", str(empty))
    assert not (tmp_path / "e.npz").exists()
