"""A synthetic image-caption world that is small enough to learn on a laptop and hard enough to measure.

Every image holds 1-3 identical shapes (circle, square, triangle, cross) of one colour and one size on
a plain background; its caption says all of that in one of several templates.  Images are drawn with
numpy from analytic masks at twice the resolution and averaged down (anti-aliasing), so generation
runs at thousands of images a second, needs no files, and every label is exact by construction.

Some (shape, colour) pairs are **held out**: the training stream never shows them, and the zero-shot
tasks and the held-out retrieval split use only them, so accuracy there measures composition, not
memory.  Everything is a pure function of a seed.

>>> world = SyntheticWorld()
>>> batch = world.sample(4, seed=0, split="train")
>>> batch.images.shape, batch.captions[0]                          # doctest: +SKIP
((4, 64, 64, 3), 'two small red circles on a dark background')
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
SHAPE_PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
}
SIZES = ("small", "large")
COUNTS = ("one", "two", "three")
BACKGROUNDS = {"dark": (25, 25, 25), "gray": (128, 128, 128), "light": (235, 235, 235)}
SPLITS = ("train", "seen", "heldout")

CAPTION_TEMPLATES = (
    "{count} {size} {colour} {shapes} on a {bg} background",
    "a picture of {count} {colour} {shapes}, {size}, on {bg}",
    "{bg} background with {count} {size} {colour} {shapes}",
    "{count} {colour} {shapes} of {size} size on {bg}",
    "{count} {shapes} in {colour}, {size} size, {bg} backdrop",
    "an image showing {count} {size} {shapes} coloured {colour}, {bg} background",
)

# Zero-shot tasks: the attribute, its class names and prompt templates (CLIP_benchmark's shape).
ZERO_SHOT_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shape": (SHAPES, ("a single {c}", "one {c}", "an image showing one {c}")),
    "colour": (tuple(COLOURS), ("a picture of {c} shapes", "something {c}", "{c} objects")),
    "count": (COUNTS, ("a picture of {c} shapes", "{c} objects", "there are {c} things")),
    "size": (SIZES, ("a picture of {c} shapes", "{c} objects", "the objects are {c}")),
    "background": (tuple(BACKGROUNDS), ("shapes on a {c} background", "a {c} backdrop", "{c} background")),
}

# The bundled benchmark's zero-shot tasks: every attribute on held-out (shape, colour) pairs, and shape
# on new images of seen pairs too -- a small ViT learns shape as part of shape-colour conjunctions
# first, so shape on held-out pairs stays near chance while on seen pairs it is learned but not
# saturated, which is what retention needs.
BENCHMARK_TASKS = ("shape", "colour", "count", "size", "background", "shape-seen")


def benchmark_task(name: str) -> tuple[str, str]:
    """``(attribute, split)`` of a benchmark task name: ``shape`` -> held-out pairs, ``shape-seen`` -> seen."""
    attribute, _, split = name.partition("-")
    if attribute not in ZERO_SHOT_TASKS or split not in ("", "seen"):
        raise ValueError(f"unknown zero-shot task {name!r}; choose from {BENCHMARK_TASKS}")
    return attribute, split or "heldout"


_RADIUS = {"small": (5.5, 6.5), "large": (8.0, 9.5)}  # in output pixels at 64 px


def heldout_pairs() -> tuple[tuple[str, str], ...]:
    """The (shape, colour) pairs never shown in training: one per colour, every shape at least once."""
    colours = list(COLOURS)
    return tuple((SHAPES[(-j) % len(SHAPES)], colours[j]) for j in range(len(colours)))


@dataclass
class SyntheticBatch:
    """``images``: uint8 ``[B, H, W, 3]``; ``captions``: one string each; ``labels``: attribute -> int array."""

    images: np.ndarray
    captions: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SyntheticWorld:
    """The generator. ``image_size`` must be a multiple of 16; shapes scale with it."""

    image_size: int = 64
    noise: float = 6.0

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 and >= 16, got {self.image_size}")

    # ------------------------------------------------------------ attribute sampling
    def _pairs(self, split: str) -> list[tuple[int, int]]:
        held = {(SHAPES.index(s), list(COLOURS).index(c)) for s, c in heldout_pairs()}
        every = list(itertools.product(range(len(SHAPES)), range(len(COLOURS))))
        if split == "heldout":
            return sorted(held)
        if split in ("train", "seen"):
            return [p for p in every if p not in held]
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")

    def attributes(self, n: int, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """Random attribute indices for ``n`` images of ``split``."""
        rng = np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else 99, 1])
        pairs = np.array(self._pairs(split))
        pick = pairs[rng.integers(len(pairs), size=n)]
        return {
            "shape": pick[:, 0],
            "colour": pick[:, 1],
            "count": rng.integers(len(COUNTS), size=n),
            "size": rng.integers(len(SIZES), size=n),
            "background": rng.integers(len(BACKGROUNDS), size=n),
        }

    def all_combinations(self, split: str) -> dict[str, np.ndarray]:
        """Each distinct attribute tuple of ``split`` once (retrieval sets without duplicate captions)."""
        rows = [
            (s, c, k, z, b)
            for (s, c) in self._pairs(split)
            for k in range(len(COUNTS))
            for z in range(len(SIZES))
            for b in range(len(BACKGROUNDS))
        ]
        cols = np.array(rows).T
        return dict(zip(("shape", "colour", "count", "size", "background"), cols))

    # ------------------------------------------------------------ drawing
    def render(self, labels: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """uint8 ``[B, H, W, 3]`` images of the given attributes (positions and jitter from ``seed``)."""
        n = len(labels["shape"])
        size, hi = self.image_size, 2 * self.image_size
        rng = np.random.default_rng([seed, 2])
        scale = size / 64.0
        ys, xs = np.mgrid[0:hi, 0:hi].astype(np.float32) + 0.5
        colours, backgrounds = (
            np.array(list(COLOURS.values()), np.float32),
            np.array(list(BACKGROUNDS.values()), np.float32),
        )
        masks = np.zeros((n, hi, hi), bool)
        cell = hi / 3.0
        for i in range(n):  # placement is per image; every pixel operation below is batched
            count = int(labels["count"][i]) + 1
            lo_r, hi_r = _RADIUS[SIZES[labels["size"][i]]]
            radius = rng.uniform(lo_r, hi_r) * scale * 2
            cells = rng.permutation(9)[:count]  # one object per 3x3 cell: never overlapping
            slack = max(cell / 2 - 1.15 * radius, 0.0)
            cx = (cells % 3 + 0.5) * cell + rng.uniform(-slack, slack, count)
            cy = (cells // 3 + 0.5) * cell + rng.uniform(-slack, slack, count)
            reach = 1.2 * radius + 1
            for x0, y0 in zip(cx, cy):  # evaluate each mask only in the object's bounding box
                x1, x2 = max(int(x0 - reach), 0), min(int(x0 + reach) + 1, hi)
                y1, y2 = max(int(y0 - reach), 0), min(int(y0 + reach) + 1, hi)
                masks[i, y1:y2, x1:x2] |= _shape_mask(
                    SHAPES[labels["shape"][i]], xs[y1:y2, x1:x2] - x0, ys[y1:y2, x1:x2] - y0, radius
                )
        m = masks.view(np.uint8)  # 2x2 supersampling: the fraction of each pixel a shape covers
        coverage = (
            (m[:, 0::2, 0::2] + m[:, 1::2, 0::2] + m[:, 0::2, 1::2] + m[:, 1::2, 1::2]).astype(np.float32) * 0.25
        )[..., None]
        colour = np.clip(colours[labels["colour"]] + rng.uniform(-15, 15, (n, 3)), 0, 255).astype(np.float32)[
            :, None, None, :
        ]
        bg = np.clip(backgrounds[labels["background"]] + rng.uniform(-10, 10, (n, 3)), 0, 255).astype(np.float32)[
            :, None, None, :
        ]
        picture = bg + coverage * (colour - bg)
        picture += self.noise * rng.standard_normal(picture.shape, dtype=np.float32)
        images = np.clip(picture + 0.5, 0, 255).astype(np.uint8)
        return images

    # ------------------------------------------------------------ captions and batches
    def captions(self, labels: dict[str, np.ndarray], seed: int, template: int | None = None) -> list[str]:
        """One caption per image; a random template each unless ``template`` fixes one."""
        rng = np.random.default_rng([seed, 3])
        out = []
        for i in range(len(labels["shape"])):
            shape, count = SHAPES[labels["shape"][i]], COUNTS[labels["count"][i]]
            t = CAPTION_TEMPLATES[template if template is not None else rng.integers(len(CAPTION_TEMPLATES))]
            count_word = ("a single" if rng.random() < 0.5 else "one") if count == "one" and template is None else count
            out.append(
                t.format(
                    count=count_word,
                    size=SIZES[labels["size"][i]],
                    colour=list(COLOURS)[labels["colour"][i]],
                    shapes=shape if count == "one" else SHAPE_PLURALS[shape],
                    bg=list(BACKGROUNDS)[labels["background"][i]],
                )
            )
        return out

    def sample(self, n: int, seed: int, split: str = "train") -> SyntheticBatch:
        """``n`` random image-caption pairs of ``split``; the same ``seed`` gives the same batch."""
        labels = self.attributes(n, seed, split)
        return SyntheticBatch(self.render(labels, seed), self.captions(labels, seed), labels)

    def retrieval_set(
        self, split: str = "heldout", captions_per_image: int = 2, seed: int = 0
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Every attribute tuple of ``split`` once, each with ``captions_per_image`` different templates."""
        if not 1 <= captions_per_image <= len(CAPTION_TEMPLATES):
            raise ValueError(f"captions_per_image must be 1..{len(CAPTION_TEMPLATES)}")
        labels = self.all_combinations(split)
        images = self.render(labels, seed=10_000 + seed)
        per_template = [self.captions(labels, seed, template=t) for t in range(len(CAPTION_TEMPLATES))]
        rng = np.random.default_rng([seed, 4])
        texts = []
        for i in range(len(images)):
            chosen = rng.choice(len(CAPTION_TEMPLATES), size=captions_per_image, replace=False)
            texts.append([per_template[t][i] for t in chosen])
        return images, texts

    def zero_shot_set(
        self, task: str, n: int = 600, split: str | None = None, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
        """Images, their class indices, class names and prompt templates for one zero-shot task.

        ``task`` is an attribute or a benchmark task name (``shape-seen``); ``split`` overrides its split.
        """
        attribute, task_split = benchmark_task(task)
        split = split or task_split
        labels = self.attributes(n, 20_000 + seed, split)
        classnames, templates = ZERO_SHOT_TASKS[attribute]
        return self.render(labels, seed=20_000 + seed), labels[attribute], classnames, templates


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Pixels inside a shape of 'radius' ``r`` centred at the origin; areas are roughly equal."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.88 * r
    if shape == "triangle":  # apex up, base at +0.8 r, base half-width 1.15 r
        t = (dy + 1.1 * r) / (1.9 * r)
        return (dy >= -1.1 * r) & (dy <= 0.8 * r) & (np.abs(dx) <= 1.15 * r * t)
    if shape == "cross":
        arm, half = 0.42 * r, 1.1 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= half)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= half))
    raise ValueError(f"unknown shape {shape!r}")
