"""Evaluation data: image folders per class, CSV/TSV captions, the synthetic tasks, CLIP_benchmark export.

``--dataset`` specs:

- ``synthetic`` (every bundled task) or ``synthetic/<task>`` with task ``shape``, ``colour``,
  ``count``, ``size``, ``background`` (zero-shot, held-out pairs) or ``retrieval``;
- a folder ``root/<class>/*.jpg`` (zero-shot classification); class names are the folder names
  unless ``classnames`` names a TXT (one per line, in sorted folder order) or JSON (folder -> name)
  file; prompt templates from a TXT (one per line, ``{c}`` for the class) or JSON list;
- a ``.csv``/``.tsv`` with an image column and a caption column (retrieval); rows that repeat an
  image add captions to it.

Images that fail to decode are counted in ``skipped`` and left out; a class left with no image at
all is an error (:func:`check_every_class_kept`), not a silent candidate without examples.
Templates may name ``{c}`` and nothing else (:func:`check_templates`).
"""

from __future__ import annotations

import json
import os
import string
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..data.images import IMAGE_SUFFIXES, DataError, decode_rgb, read_caption_table
from ..data.synthetic import BENCHMARK_TASKS, SyntheticWorld

DEFAULT_TEMPLATES = ("a photo of a {c}.", "a picture of a {c}.", "an image of a {c}.")


@dataclass
class ClassificationSet:
    name: str
    images: list  # file paths, or uint8 HWC arrays (synthetic)
    labels: np.ndarray
    classnames: list[str]
    templates: list[str]
    skipped: Counter = field(default_factory=Counter)


@dataclass
class RetrievalSet:
    name: str
    images: list
    captions: list[list[str]]
    skipped: Counter = field(default_factory=Counter)


def synthetic_sets(task: str | None, image_size: int, seed: int = 0, n: int = 600) -> list:
    """The bundled benchmark's tasks (all of them when ``task`` is None)."""
    world = SyntheticWorld(image_size=image_size)
    tasks = [task] if task else [*BENCHMARK_TASKS, "retrieval"]
    out = []
    for name in tasks:
        if name == "retrieval":
            seen, seen_caps = world.retrieval_set("seen", seed=seed)
            held, held_caps = world.retrieval_set("heldout", seed=seed)
            out.append(RetrievalSet("synthetic/retrieval", list(np.concatenate([seen, held])), seen_caps + held_caps))
        elif name in BENCHMARK_TASKS:
            images, labels, classnames, templates = world.zero_shot_set(name, n=n, seed=seed)
            out.append(ClassificationSet(f"synthetic/{name}", list(images), labels, list(classnames), list(templates)))
        else:
            raise DataError(f"unknown synthetic task {name!r}; choose from {[*BENCHMARK_TASKS, 'retrieval']}")
    return out


def _read_list(path: str, what: str):
    if not os.path.isfile(path):
        raise DataError(f"{what} file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            return json.load(f)
        return [line.strip() for line in f if line.strip()]


def image_folder_set(root: str, classnames: str | None = None, templates: str | None = None) -> ClassificationSet:
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist")
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not folders:
        raise DataError(f"{root}: no class folders (expected {root}/<class name>/*.jpg)")
    names = list(folders)
    if classnames:
        given = _read_list(classnames, "class names")
        if isinstance(given, dict):
            missing = [d for d in folders if d not in given]
            if missing:
                raise DataError(f"{classnames} has no name for class folder(s) {missing}")
            names = [given[d] for d in folders]
        elif len(given) != len(folders):
            raise DataError(f"{classnames} lists {len(given)} class names but {root} has {len(folders)} class folders")
        else:
            names = list(given)
    images, labels = [], []
    for index, folder in enumerate(folders):
        files = sorted(f for f in os.listdir(os.path.join(root, folder)) if f.lower().endswith(IMAGE_SUFFIXES))
        images += [os.path.join(root, folder, f) for f in files]
        labels += [index] * len(files)
    empty = [f for i, f in enumerate(folders) if i not in set(labels)]
    if empty:
        raise DataError(f"{root}: class folder(s) without images: {empty}")
    prompts = _read_list(templates, "templates") if templates else list(DEFAULT_TEMPLATES)
    check_templates(prompts, templates or "the default templates")
    return ClassificationSet(os.path.basename(os.path.normpath(root)), images, np.array(labels), names, prompts)


def check_templates(templates, source: str) -> list[str]:
    """Templates that ``t.format(c=name)`` fills: each a string with ``{c}`` and no other field."""
    if not isinstance(templates, list) or not templates:
        raise DataError(f"{source}: expected a non-empty list of prompt templates")
    for t in templates:
        if not isinstance(t, str):
            raise DataError(f"{source}: template {t!r} is not a string")
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(t) if name is not None}
        except ValueError as err:  # a lone { or }
            raise DataError(
                f"{source}: template {t!r} is not a format string ({err}); write {{{{ for a brace"
            ) from None
        if fields != {"c"}:
            others = sorted(fields - {"c"})
            raise DataError(
                f"{source}: template {t!r} "
                + (f"has field(s) {others}; " if others else "")
                + "a template needs {c} where the class name goes and no other {field}"
            )
    return templates


def check_every_class_kept(data: ClassificationSet, kept: np.ndarray) -> None:
    """A ``DataError`` naming the classes none of whose images could be decoded."""
    labels = np.asarray(data.labels)
    present, listed = set(labels[np.asarray(kept, dtype=np.int64)].tolist()), set(labels.tolist())
    lost = [name for i, name in enumerate(data.classnames) if i in listed and i not in present]
    if lost:
        raise DataError(
            f"{data.name}: no image of class(es) {lost[:5]}{' ...' if len(lost) > 5 else ''} could be decoded; "
            "fix or remove those class folders"
        )


def caption_file_set(path: str, image_key: str = "filepath", caption_key: str = "title") -> RetrievalSet:
    grouped: dict[str, list[str]] = {}
    for image, caption in read_caption_table(path, image_key, caption_key):
        if caption.strip():
            grouped.setdefault(image, []).append(caption.strip())
    if not grouped:
        raise DataError(f"{path}: no image-caption rows")
    return RetrievalSet(os.path.basename(path), list(grouped), list(grouped.values()))


def open_eval_sets(
    spec: str,
    image_size: int,
    classnames: str | None = None,
    templates: str | None = None,
    image_key: str = "filepath",
    caption_key: str = "title",
    task: str = "auto",
) -> list:
    if spec == "synthetic" or spec.startswith("synthetic/"):
        return synthetic_sets(spec.partition("/")[2] or None, image_size)
    if spec.endswith((".csv", ".tsv")):
        sets = [caption_file_set(spec, image_key, caption_key)]
    else:
        sets = [image_folder_set(spec, classnames, templates)]
    wanted = {"zeroshot_classification": ClassificationSet, "zeroshot_retrieval": RetrievalSet}.get(task)
    if wanted and not isinstance(sets[0], wanted):
        raise DataError(f"{spec} is a {type(sets[0]).__name__}, not a {task} data set")
    return sets


def export_clip_benchmark(data: ClassificationSet | RetrievalSet, root: str, shard_size: int = 1000) -> str:
    """Write ``data`` in CLIP_benchmark's webdataset layout (``--dataset wds/NAME --dataset_root root``)."""
    import io
    import tarfile

    from PIL import Image

    test = os.path.join(root, "test")
    os.makedirs(test, exist_ok=True)
    shards = max(1, -(-len(data.images) // shard_size))
    for s in range(shards):
        with tarfile.open(os.path.join(test, f"{s}.tar"), "w") as tar:
            for i in range(s * shard_size, min((s + 1) * shard_size, len(data.images))):
                image = data.images[i]
                buf = io.BytesIO()
                (Image.fromarray(image) if isinstance(image, np.ndarray) else decode_rgb(image)).save(buf, "PNG")
                label = (
                    str(int(data.labels[i])) if isinstance(data, ClassificationSet) else "\n".join(data.captions[i])
                ).encode()
                for ext, payload in (
                    ("png", buf.getvalue()),
                    ("cls" if isinstance(data, ClassificationSet) else "txt", label),
                ):
                    info = tarfile.TarInfo(f"s{i:07d}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    with open(os.path.join(test, "nshards.txt"), "w") as f:
        f.write(f"{shards}\n")
    if isinstance(data, ClassificationSet):
        with open(os.path.join(root, "classnames.txt"), "w") as f:
            f.write("\n".join(data.classnames) + "\n")
        with open(os.path.join(root, "zeroshot_classification_templates.txt"), "w") as f:
            f.write("\n".join(data.templates) + "\n")
    else:
        with open(os.path.join(root, "dataset_type.txt"), "w") as f:
            f.write("retrieval\n")
    return root
