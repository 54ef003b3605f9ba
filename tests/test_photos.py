"""Photo index, search and tags against the runtime's own embeddings of the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from ternaryclip.cli import main
from ternaryclip.data.synthetic import SyntheticWorld
from ternaryclip.photos import PhotoStore, RuntimeEncoder, Searcher, index_folder, tag_photos, top_k


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two ternary .tclip files of a tiny CLIP that reads real BPE ids and 32 px images (absmean, twn)."""
    import open_clip
    import torch

    import ternaryclip
    from helpers import TINY_DISTILL

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_DISTILL).eval()
    return tuple(str(ternaryclip.save(model, folder / f"{rule}.tclip", quantize=rule)) for rule in ("absmean", "twn"))


@pytest.fixture
def tiny_tclip(tiny_models):
    return tiny_models[0]


def write_photos(folder, n: int = 10, seed: int = 0, corrupt: int = 1) -> list[str]:
    """``n`` synthetic PNG/JPEG photos (some in a subfolder) and ``corrupt`` undecodable files."""
    images = SyntheticWorld(image_size=32).sample(n, seed=seed).images
    paths = []
    for i, im in enumerate(images):
        sub = folder / ("album" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"photo{i:03d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(im).save(path)
        paths.append(str(path.resolve()))
    for j in range(corrupt):
        (folder / f"broken{j}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    return paths


def reference_vectors(model_path: str, paths: list[str]) -> np.ndarray:
    from ternaryclip.runtime import load

    return load(model_path).encode_image(paths, normalize=True)


def test_index_stores_the_runtime_embeddings_and_counts_corrupt_files(tiny_tclip, tmp_path):
    paths = write_photos(tmp_path / "pics", n=10, corrupt=2)
    with PhotoStore(tmp_path / "p.db") as store:
        report = index_folder(tmp_path / "pics", store, RuntimeEncoder(tiny_tclip), batch_size=4, progress=False)
        assert (report.found, report.embedded, len(report.failed)) == (12, 10, 2)
        assert sorted(os.path.basename(p) for p, _ in store.failures()) == ["broken0.jpg", "broken1.jpg"]
        ids, vectors = store.embeddings()
        stored = dict(zip((store.path_of(int(i)) for i in ids), vectors))
        thumb = Image.open(__import__("io").BytesIO(store.thumbnail(int(ids[0]))))
        assert thumb.format == "JPEG" and thumb.size == (32, 32)
    want = reference_vectors(tiny_tclip, paths)
    got = np.stack([stored[p] for p in paths])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_rerun_embeds_only_new_or_changed_files_and_drops_deleted(tiny_tclip, tmp_path):
    paths = write_photos(tmp_path / "pics", n=8)
    encoder = RuntimeEncoder(tiny_tclip)
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(tmp_path / "pics", store, encoder, batch_size=3, progress=False)
        again = index_folder(tmp_path / "pics", store, encoder, batch_size=3, progress=False)
        assert (again.embedded, again.unchanged, len(again.failed)) == (0, 9, 0)

        new_image = SyntheticWorld(image_size=32).sample(1, seed=99).images[0]
        Image.fromarray(new_image).save(paths[1])  # same name, new content
        os.utime(paths[1], (1, 1))
        os.remove(paths[2])
        changed = index_folder(tmp_path / "pics", store, encoder, batch_size=3, progress=False)
        assert (changed.embedded, changed.removed, store.count()) == (1, 1, 7)
        ids, vectors = store.embeddings()
        row = [store.path_of(int(i)) for i in ids].index(paths[1])
    np.testing.assert_allclose(vectors[row], reference_vectors(tiny_tclip, [paths[1]])[0], atol=1e-6)


class FailingEncoder:
    """Wraps an encoder and raises on its n-th batch: an interrupted run."""

    def __init__(self, inner, fail_on: int):
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.model_id, self.dim, self.preprocess = inner.model_id, inner.dim, inner.preprocess

    def encode_pixels(self, pixels):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        return self.inner.encode_pixels(pixels)


def test_an_interrupted_run_resumes_without_re_embedding(tiny_tclip, tmp_path):
    write_photos(tmp_path / "pics", n=10, corrupt=0)
    encoder = RuntimeEncoder(tiny_tclip)
    with PhotoStore(tmp_path / "p.db") as store:
        with pytest.raises(KeyboardInterrupt):
            index_folder(tmp_path / "pics", store, FailingEncoder(encoder, fail_on=3), batch_size=4, progress=False)
        assert store.count() == 8  # two batches committed
        resumed = index_folder(tmp_path / "pics", store, encoder, batch_size=4, progress=False)
        assert (resumed.embedded, resumed.unchanged, store.count()) == (2, 8, 10)


def test_search_ranks_like_a_brute_force_cosine(tiny_tclip, tmp_path):
    from ternaryclip.runtime import load

    paths = write_photos(tmp_path / "pics", n=12, corrupt=0)
    encoder = RuntimeEncoder(tiny_tclip)
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(tmp_path / "pics", store, encoder, batch_size=5, progress=False)
        searcher = Searcher(store, encoder)
        hits = searcher.by_text("two large red squares", k=5)
        like = searcher.like(hits[0].id, k=3)
        by_image = searcher.by_image(paths[4], k=1)
    model = load(tiny_tclip)
    images = model.encode_image(paths, normalize=True)
    scores = images @ model.encode_text(["two large red squares"], normalize=True)[0]
    order = np.argsort(-scores)[:5]
    assert [h.path for h in hits] == [paths[i] for i in order]
    np.testing.assert_allclose([h.score for h in hits], scores[order], atol=1e-5)
    first = paths.index(hits[0].path)
    like_order = [i for i in np.argsort(-(images @ images[first])) if i != first][:3]
    assert [h.path for h in like] == [paths[i] for i in like_order]
    assert by_image[0].path == paths[4] and by_image[0].score == pytest.approx(1.0, abs=1e-5)


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(0)
    vectors, query = rng.standard_normal((1000, 16)).astype(np.float32), rng.standard_normal(16)
    rows, scores = top_k(vectors, query, 7)
    want = np.argsort(-(vectors @ query.astype(np.float32)))[:7]
    assert rows.tolist() == want.tolist() and np.all(np.diff(scores) <= 0)


def test_tags_are_the_best_labels_by_cosine(tiny_tclip, tmp_path):
    from ternaryclip.runtime import load

    paths = write_photos(tmp_path / "pics", n=6, corrupt=0)
    labels = ["red circle", "blue square", "green cross", "yellow triangle"]
    encoder = RuntimeEncoder(tiny_tclip)
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(tmp_path / "pics", store, encoder, progress=False)
        assert tag_photos(store, encoder, labels, template="a picture of {}", top=2) == 6
        ids, _ = store.embeddings()
        stored = {v["path"]: v["labels"] for v in store.photos([int(i) for i in ids]).values()}
    model = load(tiny_tclip)
    scores = (
        model.encode_image(paths, normalize=True)
        @ model.encode_text([f"a picture of {label}" for label in labels], normalize=True).T
    )
    for path, row in zip(paths, scores):
        best = np.argsort(-row)[:2]
        assert [label for label, _ in stored[path]] == [labels[j] for j in best]
        np.testing.assert_allclose([s for _, s in stored[path]], row[best], atol=1e-5)


def test_readers_see_whole_batches_while_index_writes(tiny_tclip, tmp_path):
    write_photos(tmp_path / "pics", n=12, corrupt=0)
    db = tmp_path / "p.db"
    PhotoStore(db).close()
    seen, errors, done = [], [], threading.Event()

    def read():
        with PhotoStore(db, readonly=True) as reader:
            while not done.is_set():
                try:
                    ids, vectors = reader.embeddings()
                    seen.append(len(ids))
                    assert vectors.shape[0] == len(ids)
                except Exception as err:  # noqa: BLE001 -- any reader error fails the test below
                    errors.append(err)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with PhotoStore(db) as store:
            index_folder(tmp_path / "pics", store, RuntimeEncoder(tiny_tclip), batch_size=4, progress=False)
    finally:
        done.set()
        thread.join()
    assert not errors
    assert set(seen) <= {0, 4, 8, 12} and max(seen) == 12


def test_a_database_refuses_a_second_model(tiny_models, tmp_path):
    tiny_tclip, other = tiny_models
    write_photos(tmp_path / "pics", n=2, corrupt=0)
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(tmp_path / "pics", store, RuntimeEncoder(tiny_tclip), progress=False)
        with pytest.raises(ValueError, match="was indexed with model"):
            index_folder(tmp_path / "pics", store, RuntimeEncoder(other), progress=False)


def test_cli_index_search_tag(tiny_tclip, tmp_path, capsys):
    paths = write_photos(tmp_path / "pics", n=6, corrupt=1)
    db, report = str(tmp_path / "p.db"), tmp_path / "failed.tsv"
    assert main(["index", str(tmp_path / "pics"), "--model", tiny_tclip, "--db", db, "--no-progress"]) == 0
    assert main(["index", str(tmp_path / "pics"), "--model", tiny_tclip, "--db", db, "--report", str(report)]) == 0
    assert report.read_text().startswith(str((tmp_path / "pics" / "broken0.jpg").resolve()) + "\t")
    (tmp_path / "labels.txt").write_text("# colours\nred things\nblue things\n\ngreen things\n")
    assert main(["tag", "--db", db, "--model", tiny_tclip, "--labels", str(tmp_path / "labels.txt"), "--top", "1"]) == 0
    capsys.readouterr()
    assert main(["search", "red squares", "--db", db, "--model", tiny_tclip, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all(h["path"] in paths for h in hits)
    assert len(hits[0]["labels"]) == 1 and hits[0]["labels"][0]["label"] in (
        "red things",
        "blue things",
        "green things",
    )
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_without_model_uses_the_one_the_database_was_indexed_with(tiny_models, tmp_path, capsys):
    import shutil

    model = shutil.copy(tiny_models[0], tmp_path / "indexed.tclip")
    write_photos(tmp_path / "pics", n=5, corrupt=0)
    db = str(tmp_path / "p.db")
    assert main(["index", str(tmp_path / "pics"), "--model", str(model), "--db", db, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "red squares", "--db", db, "--model", str(model), "-k", "3", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert main(["search", "red squares", "--db", db, "-k", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == given
    with PhotoStore(db, readonly=True) as store:
        recorded = json.loads(store.get_meta("model"))
    assert recorded["path"] == str(model.resolve()) and len(recorded["sha256"]) == 64

    shutil.copy(tiny_models[1], model)  # another model under the same name
    assert main(["search", "red squares", "--db", db]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert str(model.resolve()) in err and "has changed since" in err
    model.unlink()
    assert main(["search", "red squares", "--db", db]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert str(model.resolve()) in err and "is missing" in err


def test_a_database_that_records_no_model_file_asks_for_model(tmp_path, capsys):
    with PhotoStore(tmp_path / "p.db") as store:
        store.check_model("imported:0123", 32)  # as ``index --import`` records it: no file
    assert main(["search", "red", "--db", str(tmp_path / "p.db")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "does not record the model it was indexed with: give --model" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "x", "--db", "{tmp}/missing.db", "--model", "{model}"], "no photo database"),
        (["serve", "{model}", "--db", "{tmp}/missing.db", "--port", "1"], "no photo database"),
        (["search", "--db", "{tmp}/p.db", "--model", "{model}"], "give a query text or --image"),
        (["index", "{tmp}/nowhere", "--model", "{model}", "--db", "{tmp}/p.db"], "no such folder"),
        (["tag", "--db", "{tmp}/p.db", "--model", "{model}", "--labels", "{tmp}/empty.txt"], "no labels"),
        (["search", "x", "--db", "{tmp}/junk.db", "--model", "{model}"], "not a photo database"),
        (["search", "--image", "{tmp}/empty.txt", "--db", "{tmp}/p.db", "--model", "{model}"], "cannot decode"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(tiny_tclip, tmp_path, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    write_photos(tmp_path / "pics", n=1, corrupt=0)
    assert main(["index", str(tmp_path / "pics"), "--model", tiny_tclip, "--db", str(tmp_path / "p.db")]) == 0
    capsys.readouterr()
    argv = [a.format(tmp=tmp_path, model=tiny_tclip) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_photo_tools_never_import_torch(tiny_tclip, tmp_path):
    write_photos(tmp_path / "pics", n=2, corrupt=0)
    code = (
        "import sys; from ternaryclip.cli import main; "
        f"main(['index', {str(tmp_path / 'pics')!r}, '--model', {tiny_tclip!r}, '--db', {str(tmp_path / 'p.db')!r}]); "
        f"main(['search', 'red', '--model', {tiny_tclip!r}, '--db', {str(tmp_path / 'p.db')!r}]); "
        "import ternaryclip.photos.web; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_ray_data_shards_import_into_the_same_database(tiny_tclip, tmp_path):
    ray = pytest.importorskip("ray")
    from ternaryclip.photos.ray_embed import embed_with_ray

    paths = write_photos(tmp_path / "pics", n=7, corrupt=1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert embed_with_ray(tmp_path / "pics", tiny_tclip, tmp_path / "shards", batch_size=3) == 8
    finally:
        ray.shutdown()
    db = str(tmp_path / "p.db")
    assert main(["index", "--import", str(tmp_path / "shards"), "--db", db]) == 0
    with PhotoStore(db) as store:
        ids, vectors = store.embeddings()
        stored = dict(zip((store.path_of(int(i)) for i in ids), vectors))
        assert [os.path.basename(p) for p, _ in store.failures()] == ["broken0.jpg"]
        # the import counts as indexing: a local rerun with the same model has nothing left to embed
        rerun = index_folder(tmp_path / "pics", store, RuntimeEncoder(tiny_tclip), progress=False)
    assert (rerun.embedded, rerun.unchanged) == (0, 8)
    np.testing.assert_allclose(np.stack([stored[p] for p in paths]), reference_vectors(tiny_tclip, paths), atol=1e-6)
