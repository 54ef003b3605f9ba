"""Training checkpoints as one safetensors file: no pickle, written atomically, checksummed.

Tensors: the student's state (latent float weights), the feature projection, every AdamW state
tensor (``optim.<param index>.<key>``) and torch's CPU RNG state.  The ``__metadata__`` JSON holds
the step, the data position, the optimizer's hyper-parameters, the training settings (which a
resume must match) and a CRC32 of every tensor; the JSON itself has a CRC32 beside it.  A resume
verifies all of them, so a flipped bit fails with the file's name instead of training on from
damaged weights.

The file is written to ``<name>.<random>.tmp`` beside it (``files.atomic_write``), then renamed; a
process killed in between leaves that temp file, which :func:`remove_stale_temp_files` deletes when the next run starts.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_write

KEY = "ternaryclip_checkpoint"
STATE_CRC = KEY + "_crc32"
REQUIRED_STATE = ("step", "position", "param_groups", "checksums")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, damaged or from another configuration."""


def tensor_crc32(t: torch.Tensor) -> int:
    """CRC32 of a tensor's bytes (any dtype, 0-d included)."""
    return zlib.crc32(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete ``<name>.*.tmp`` (and the older ``<name>.tmp``) left beside ``path`` by a killed run."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f"{path.name}.*tmp") if p.suffix == ".tmp" and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(
    path: str | Path,
    student: torch.nn.Module,
    projection: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    state: dict,
) -> None:
    tensors = {f"student.{k}": v.detach().contiguous() for k, v in student.state_dict().items()}
    if projection is not None:
        tensors.update({f"projection.{k}": v.detach().contiguous() for k, v in projection.state_dict().items()})
    optim = optimizer.state_dict()
    for index, values in optim["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = (value if torch.is_tensor(value) else torch.tensor(value)).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    # Tensors that share memory (tied weights) must be stored separately.
    tensors = {k: v.clone() if v.data_ptr() in _seen_pointers(tensors, k) else v for k, v in tensors.items()}
    groups = [dict(g) for g in optim["param_groups"]]
    checksums = {k: tensor_crc32(v) for k, v in tensors.items()}
    text = json.dumps({**state, "param_groups": groups, "checksums": checksums})
    meta = {KEY: text, STATE_CRC: str(zlib.crc32(text.encode()))}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _seen_pointers(tensors: dict, upto: str) -> set:
    seen = set()
    for k, v in tensors.items():
        if k == upto:
            return seen
        seen.add(v.data_ptr())
    return seen


def read_state(path: str | Path) -> dict:
    """The JSON part of a checkpoint (step, position, settings, checksums), checked for shape and CRC."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is not a readable checkpoint: {err}") from err
    if KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a ternaryclip checkpoint")
    text = meta[KEY]
    if STATE_CRC not in meta:
        raise CheckpointError(f"{path} carries no checksums (written by an older version); it cannot be verified")
    if meta[STATE_CRC] != str(zlib.crc32(text.encode())):
        raise CheckpointError(f"{path}: the checkpoint's metadata fails its checksum; the file is damaged")
    try:
        state = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: the checkpoint's metadata is not valid JSON ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint's metadata is a JSON {type(state).__name__}, not an object")
    missing = [k for k in REQUIRED_STATE if k not in state]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint's metadata lacks {', '.join(missing)}")
    if not isinstance(state["checksums"], dict):
        raise CheckpointError(f"{path}: the checkpoint's checksums are not a mapping")
    return state


def _verified_tensors(path: str | Path, checksums: dict) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint's tensors: {err}") from err
    missing = sorted(set(checksums) - set(tensors))
    extra = sorted(set(tensors) - set(checksums))
    if missing or extra:
        raise CheckpointError(
            f"{path}: tensors do not match its checksum list (missing {missing[:3]}, unlisted {extra[:3]})"
        )
    damaged = [k for k, v in tensors.items() if tensor_crc32(v) != checksums[k]]
    if damaged:
        raise CheckpointError(
            f"{path}: {len(damaged)} tensor(s) fail their checksum ({', '.join(damaged[:3])}); the file is damaged"
        )
    if "rng.torch" not in tensors:
        raise CheckpointError(f"{path}: the checkpoint lacks the RNG state (rng.torch)")
    return tensors


def _restore(path, module: torch.nn.Module, prefix: str, tensors: dict) -> None:
    values = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        missing, unexpected = module.load_state_dict(values, strict=False)
    except RuntimeError as err:  # shapes that differ
        raise CheckpointError(f"{path}: {prefix.rstrip('.')} tensors do not fit the model: {err}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: {prefix.rstrip('.')} tensors do not match the model "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )


def load_checkpoint(
    path: str | Path, student: torch.nn.Module, projection: torch.nn.Module | None, optimizer: torch.optim.Optimizer
) -> dict:
    """Restore everything :func:`save_checkpoint` wrote into live objects; returns the JSON state."""
    state = read_state(path)
    tensors = _verified_tensors(path, state.pop("checksums"))
    _restore(path, student, "student.", tensors)
    if projection is not None:
        _restore(path, projection, "projection.", tensors)
    optim_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, index, key = k.split(".", 2)
            optim_state.setdefault(int(index), {})[key] = v
    try:
        optimizer.load_state_dict({"state": optim_state, "param_groups": state.pop("param_groups")})
        torch.set_rng_state(tensors["rng.torch"])
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: the optimizer or RNG state does not fit this run: {err}") from None
    return state
