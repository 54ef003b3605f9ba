"""Near-duplicate groups: the blocked search against a full similarity matrix, and real photos with their copies."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ternaryclip.cli import main
from ternaryclip.photos import PhotoStore, RuntimeEncoder, duplicate_groups, find_duplicates, index_folder
from test_photos_orientation import bundled_tclip, real_photo  # noqa: F401 -- a fixture and a helper

skimage_data = pytest.importorskip("skimage.data")


def reference_groups(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Connected components of the full cosine >= threshold graph, by repeated search from each row."""
    linked = vectors @ vectors.T >= threshold
    seen, groups = set(), []
    for start in range(len(vectors)):
        if start in seen:
            continue
        group, todo = {start}, [start]
        while todo:
            for other in np.nonzero(linked[todo.pop()])[0].tolist():
                if other not in group:
                    group.add(other)
                    todo.append(other)
        seen |= group
        if len(group) > 1:
            groups.append(sorted(group))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_blocked_groups_equal_the_full_matrix_components(block):
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, 24))
    # clusters of 1-5 jittered copies, and chains (each step close, the ends far apart) in one set
    rows = [c + 0.05 * rng.standard_normal((rng.integers(1, 6), 24)) for c in centres]
    chain = centres[0] + np.cumsum(0.15 * rng.standard_normal((6, 24)), axis=0)
    vectors = np.concatenate(rows + [chain])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    for threshold in (0.95, 0.99):
        want = reference_groups(vectors, threshold)
        assert [g.tolist() for g in duplicate_groups(vectors, threshold, block=block)] == want
    assert any(len(g) > 1 for g in want)


def test_no_photos_and_bad_thresholds():
    assert duplicate_groups(np.zeros((0, 8), np.float32), 0.9) == []
    with pytest.raises(ValueError, match="threshold"):
        duplicate_groups(np.eye(3, dtype=np.float32), 1.5)


def save_jpeg(image: Image.Image, path, quality: int = 90) -> None:
    image.save(path, "JPEG", quality=quality)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Four photos, each with a resized, a re-encoded and a slightly cropped copy; three distinct photos alone."""
    folder = tmp_path_factory.mktemp("library")
    groups = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(real_photo(name))
        w, h = image.size
        save_jpeg(image, folder / f"{name}.jpg")
        save_jpeg(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), folder / f"{name}-small.jpg")
        save_jpeg(image, folder / f"{name}-q40.jpg", quality=40)
        crop = image.crop((w // 50, h // 50, w - w // 50, h - h // 50))  # 2% off each side
        save_jpeg(crop, folder / f"{name}-crop.jpg")
        groups.append(sorted(str((folder / f"{name}{s}.jpg").resolve()) for s in ("", "-small", "-q40", "-crop")))
    for name in ("hubble_deep_field", "immunohistochemistry", "colorwheel"):
        save_jpeg(Image.fromarray(getattr(skimage_data, name)()), folder / f"{name}.jpg")
    return folder, sorted(groups)


# The bundled model knows only synthetic shapes, so unrelated natural photos sit closer together than under
# a real CLIP (up to 0.96 here) while copies stay above 0.995: the tests group at 0.99.
THRESHOLD = 0.99


def test_copies_group_and_distinct_photos_do_not(bundled_tclip, library, tmp_path):  # noqa: F811
    folder, want = library
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(folder, store, RuntimeEncoder(bundled_tclip), progress=False)
        groups = find_duplicates(store, THRESHOLD)
        ids, vectors = store.embeddings()
        paths = [store.path_of(int(i)) for i in ids]
    assert sorted(sorted(p["path"] for p in g) for g in groups) == want
    for group in groups:  # the original first: most pixels (with the re-encode), then the largest file
        assert "-" not in group[0]["path"].rsplit("/", 1)[1]
        first = vectors[paths.index(group[0]["path"])]
        for photo in group:
            assert photo["similarity"] == pytest.approx(float(vectors[paths.index(photo["path"])] @ first), abs=1e-6)
    assert [g.tolist() for g in duplicate_groups(vectors, THRESHOLD)] == reference_groups(vectors, THRESHOLD)


def test_cli_duplicates_lists_groups_and_json(bundled_tclip, library, tmp_path, capsys):  # noqa: F811
    folder, want = library
    db = str(tmp_path / "p.db")
    assert main(["index", str(folder), "--model", bundled_tclip, "--db", db, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["duplicates", "--db", db, "--threshold", str(THRESHOLD), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert sorted(sorted(p["path"] for p in g) for g in groups) == want
    assert main(["duplicates", "--db", db, "--threshold", str(THRESHOLD)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"4 groups of near-duplicates (16 of 19 photos) at threshold {THRESHOLD}"
    assert sum(line.startswith("group ") for line in out) == 4
    assert main(["duplicates", "--db", db, "--threshold", "1.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threshold must be in (0, 1]" in err[0]


def test_identical_files_group_at_any_threshold(bundled_tclip, tmp_path):  # noqa: F811
    folder = tmp_path / "same"
    folder.mkdir()
    data = io.BytesIO()
    Image.fromarray(real_photo("chelsea")).save(data, "JPEG")
    for name in ("a", "b", "c"):
        (folder / f"{name}.jpg").write_bytes(data.getvalue())
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(folder, store, RuntimeEncoder(bundled_tclip), progress=False)
        (group,) = find_duplicates(store, 1.0 - 1e-6)
    assert [p["path"].rsplit("/", 1)[1] for p in group] == ["a.jpg", "b.jpg", "c.jpg"]
