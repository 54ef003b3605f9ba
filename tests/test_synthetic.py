"""The synthetic world: deterministic per seed, and every label agrees with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ternaryclip.data.synthetic import BACKGROUNDS, COLOURS, COUNTS, SHAPES, SIZES, SyntheticWorld, heldout_pairs


def shape_from_pixels(mask: np.ndarray) -> str:
    """Tell a shape by pixel statistics: the fraction of its bounding box it fills (square 1, circle
    pi/4, cross ~0.6, triangle ~0.5), and for the last two whether it widens from top to bottom."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    fill = box.mean()
    if fill > 0.9:
        return "square"
    if fill > 0.7:
        return "circle"
    quarter = max(1, len(box) // 4)
    top, bottom = box[:quarter].sum(1).mean(), box[-quarter:].sum(1).mean()
    return "triangle" if bottom > 1.6 * top else "cross"


def test_same_seed_same_batch_other_seed_other_batch():
    world = SyntheticWorld()
    a, b, c = world.sample(16, seed=5), world.sample(16, seed=5), world.sample(16, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and not np.array_equal(a.images, c.images)
    assert a.images.dtype == np.uint8 and a.images.shape == (16, 64, 64, 3)


def test_heldout_pairs_never_appear_in_training():
    held = {(SHAPES.index(s), list(COLOURS).index(c)) for s, c in heldout_pairs()}
    assert {s for s, _ in heldout_pairs()} == set(SHAPES) and len(held) == len(COLOURS)
    train = SyntheticWorld().attributes(5000, seed=0, split="train")
    assert not held & set(zip(train["shape"].tolist(), train["colour"].tolist()))
    test = SyntheticWorld().attributes(500, seed=0, split="heldout")
    assert set(zip(test["shape"].tolist(), test["colour"].tolist())) == held


def _objects(image, background):
    """Mask of pixels that differ clearly from the background."""
    return np.abs(image.astype(np.int16) - np.asarray(background, np.int16)).sum(-1) > 60


def test_labels_match_pixels():
    world = SyntheticWorld(noise=0.0)
    labels = world.attributes(300, seed=3, split="train")
    images = world.render(labels, seed=3)
    palette, backgrounds = np.array(list(COLOURS.values())), np.array(list(BACKGROUNDS.values()))
    shape_hits = 0
    for i, image in enumerate(images):
        bg = np.median(image.reshape(-1, 3), axis=0)
        assert np.abs(backgrounds - bg).sum(1).argmin() == labels["background"][i]
        mask = _objects(image, bg)
        colour = image[mask].mean(axis=0)
        assert np.abs(palette - colour).sum(1).argmin() == labels["colour"][i]
        cells = {(y * 3 // 64, x * 3 // 64) for y, x in zip(*np.nonzero(mask))}
        per_object = [mask[r * 64 // 3 : (r + 1) * 64 // 3, c * 64 // 3 : (c + 1) * 64 // 3] for r, c in cells]
        per_object = [m for m in per_object if m.sum() > 10]  # an antialiased rim may spill into a neighbour cell
        assert len(per_object) == labels["count"][i] + 1, i
        area = np.mean([m.sum() for m in per_object])
        assert (area > 150) == (SIZES[labels["size"][i]] == "large"), (i, area)
        shape_hits += shape_from_pixels(per_object[0]) == SHAPES[labels["shape"][i]]
    assert shape_hits / len(images) > 0.97


def test_captions_name_every_attribute():
    world = SyntheticWorld()
    batch = world.sample(50, seed=1)
    for i, caption in enumerate(batch.captions):
        shape = SHAPES[batch.labels["shape"][i]]
        assert shape[:-1] in caption, caption  # singular or plural ("cross" / "crosses")
        assert list(COLOURS)[batch.labels["colour"][i]] in caption
        assert SIZES[batch.labels["size"][i]] in caption
        count = COUNTS[batch.labels["count"][i]]
        assert count in caption or (count == "one" and "a single" in caption)


def test_retrieval_set_has_no_duplicate_descriptions():
    images, captions = SyntheticWorld().retrieval_set("heldout", captions_per_image=2)
    assert len(images) == len(captions) == 6 * 3 * 2 * 3
    assert all(len(c) == 2 and c[0] != c[1] for c in captions)
    assert len({c for cs in captions for c in cs}) == 2 * len(captions)


def test_generation_is_fast():
    import time

    world = SyntheticWorld()
    start = time.perf_counter()
    world.sample(1000, seed=0)
    assert time.perf_counter() - start < 5.0  # ~0.4 s here: thousands a second; generous on a noisy machine


def test_bad_arguments():
    with pytest.raises(ValueError):
        SyntheticWorld(image_size=50)
    with pytest.raises(ValueError, match="split"):
        SyntheticWorld().attributes(3, 0, split="validation")
    with pytest.raises(ValueError, match="task"):
        SyntheticWorld().zero_shot_set("texture")
