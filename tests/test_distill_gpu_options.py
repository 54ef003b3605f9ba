"""The GPU speed settings change speed only: on a CPU they train the same weights as without them."""

import argparse

import torch

from ternaryclip.cli.distill import add_parser, config_from_args
from ternaryclip.distill import DistillConfig, Trainer


def _config(files, out, **kw) -> DistillConfig:
    config, weights = files
    return DistillConfig(
        teacher=config,
        teacher_pretrained=weights,
        data="synthetic",
        steps=2,
        batch_size=8,
        warmup=1,
        out=str(out),
        save_every=100,
        progress=False,
        threads=1,
        workers=1,
        **kw,
    )


def test_channels_last_and_fused_flag_train_the_same_weights(tiny_teacher_files, tmp_path):
    plain = Trainer(_config(tiny_teacher_files, tmp_path / "plain", fused_adamw=False))
    fast = Trainer(_config(tiny_teacher_files, tmp_path / "fast", channels_last=True, fused_adamw=True))
    assert "fused" not in fast.optimizer.defaults or not fast.optimizer.defaults["fused"]  # CPU: plain AdamW
    plain.run(), fast.run()
    a, b = plain.student.state_dict(), fast.student.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_cli_switches_reach_the_config():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(), "distill")
    args = parser.parse_args(["distill", "--compile", "--channels-last", "--no-fused-adamw"])
    config = config_from_args(args)
    assert config.compile and config.channels_last and not config.fused_adamw
    assert not DistillConfig().compile and DistillConfig().fused_adamw
