"""Training checkpoints as one safetensors file: no pickle, written atomically.

Tensors: the student's state (latent float weights), the feature projection, every AdamW state
tensor (``optim.<param index>.<key>``) and torch's CPU RNG state.  The ``__metadata__`` JSON holds
the step, the data position, the optimizer's hyper-parameters and the training settings, which a
resume must match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_write

KEY = "ternaryclip_checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or from another configuration."""


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
    groups = [{k: v for k, v in g.items()} for g in optim["param_groups"]]
    meta = {KEY: json.dumps({**state, "param_groups": groups})}
    # Tensors that share memory (tied weights) must be stored separately.
    tensors = {k: v.clone() if v.data_ptr() in _seen_pointers(tensors, k) else v for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _seen_pointers(tensors: dict, upto: str) -> set:
    seen = set()
    for k, v in tensors.items():
        if k == upto:
            return seen
        seen.add(v.data_ptr())
    return seen


def read_state(path: str | Path) -> dict:
    """The JSON part of a checkpoint (step, position, settings)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is not a readable checkpoint: {err}") from err
    if KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a ternaryclip checkpoint")
    return json.loads(meta[KEY])


def load_checkpoint(
    path: str | Path, student: torch.nn.Module, projection: torch.nn.Module | None, optimizer: torch.optim.Optimizer
) -> dict:
    """Restore everything :func:`save_checkpoint` wrote into live objects; returns the JSON state."""
    state = read_state(path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    student.load_state_dict({k[len("student.") :]: v for k, v in tensors.items() if k.startswith("student.")})
    if projection is not None:
        projection.load_state_dict(
            {k[len("projection.") :]: v for k, v in tensors.items() if k.startswith("projection.")}
        )
    optim_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, index, key = k.split(".", 2)
            optim_state.setdefault(int(index), {})[key] = v
    optimizer.load_state_dict({"state": optim_state, "param_groups": state.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    return state
