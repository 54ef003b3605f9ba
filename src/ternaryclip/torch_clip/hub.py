"""Hugging Face hub names, resolved through huggingface_hub's cache: one folder per repository revision.

``hf-hub:ORG/NAME`` (an open_clip repository: ``open_clip_config.json`` + weights) and an HF repo id
``ORG/NAME`` (a transformers folder: ``config.json`` + weights) both become the local snapshot folder
``$HF_HUB_CACHE/models--ORG--NAME/snapshots/REV``, downloaded once with network access and read from
the cache afterwards (with ``HF_HUB_OFFLINE=1``, from the cache only).  Every failure is one line:
a gated repository says how to accept its terms and set ``HF_TOKEN``; no network and no cached copy
says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

OPEN_CLIP_FILES = ["open_clip_config.json", "*.safetensors", "*.json", "*.model", "*.txt"]
TRANSFORMERS_FILES = ["*.json", "*.safetensors", "*.model", "*.txt"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "*.model", "*.txt"]
HF_HUB_PREFIX = "hf-hub:"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def is_repo_id(spec: str) -> bool:
    """``ORG/NAME`` that is not a local path: one slash, two non-empty parts, no scheme (``hf-hub:``,
    ``local-dir:``), nothing on disk by that name."""
    parts = spec.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and ":" not in spec
        and not spec.startswith((".", "~"))
        and not os.path.exists(spec)
    )


def snapshot(repo_id: str, patterns: list[str]) -> Path:
    """The local folder of ``repo_id``'s files matching ``patterns`` (downloaded once, then cached)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise ValueError(f"{repo_id}: hub names need huggingface_hub (pip install 'ternaryclip[train]')") from None
    url = f"https://huggingface.co/{repo_id}"
    try:
        folder = snapshot_download(
            repo_id,
            allow_patterns=patterns,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=_offline(),
        )
    except GatedRepoError:
        raise PermissionError(
            f"{repo_id} is a gated repository: accept its terms at {url} while logged in, then set HF_TOKEN "
            "to an access token of that account (https://huggingface.co/settings/tokens)"
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"no Hugging Face repository {repo_id} (a private one needs HF_TOKEN); for a local folder give its path"
        ) from None
    except RevisionNotFoundError as err:
        raise FileNotFoundError(f"{repo_id}: {' '.join(str(err).split())[:200]}") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if _offline() else "the hub cannot be reached (no network?)"
        raise FileNotFoundError(
            f"{repo_id} is not in the Hugging Face cache ({os.environ.get('HF_HUB_CACHE') or 'the default cache'}) "
            f"and {why}: run once with network access, or give a local folder"
        ) from None
    except (HfHubHTTPError, OSError) as err:
        raise OSError(f"{repo_id}: the hub answered {' '.join(str(err).split())[:200]}") from None
    return Path(folder)


def open_clip_snapshot(name: str) -> Path:
    """The snapshot folder of ``hf-hub:ORG/NAME``, checked to hold an open_clip model."""
    repo_id = name[len(HF_HUB_PREFIX) :]
    folder = snapshot(repo_id, OPEN_CLIP_FILES)
    if not (folder / "open_clip_config.json").is_file():
        raise FileNotFoundError(
            f"{repo_id} has no open_clip_config.json: not an open_clip model (a transformers one loads with --hf)"
        )
    return folder


def has_tokenizer(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / "tokenizer.json").is_file() or any(folder.glob("*.model"))


def tokenizer_of(spec: str, family: str) -> tuple[Path | None, str]:
    """``(folder, clean)``: where the tokenizer of the model ``spec`` names lives, and open_clip's clean rule.

    A transformers folder or repository holds its own; an open_clip one names it in its config
    (``text_cfg.hf_tokenizer_name``, often the same repository).  ``(None, ...)`` when there is none.
    """
    if family == "hf":
        folder = Path(spec) if os.path.isdir(spec) else snapshot(spec, TRANSFORMERS_FILES) if is_repo_id(spec) else None
        return (folder if folder is not None and has_tokenizer(folder) else None), "canonicalize"
    if spec.startswith(HF_HUB_PREFIX):
        folder = open_clip_snapshot(spec)
    elif spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:") :])
    else:
        return None, "canonicalize"
    config = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    text_cfg = config.get("model_cfg", {}).get("text_cfg", {})
    clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace")  # open_clip HFTokenizer's default
    if has_tokenizer(folder):
        return folder, clean
    name = text_cfg.get("hf_tokenizer_name")
    if name and is_repo_id(name):
        return snapshot(name, TOKENIZER_FILES), clean
    return None, clean
