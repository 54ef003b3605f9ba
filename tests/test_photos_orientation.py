"""Real photographs (scikit-image's) stored sideways with an EXIF orientation tag, at phone size, or as HEIC.

Every path that reads a file (the decoder, the runtime's ``encode_image(path)``, the server's decoder,
``index`` with its thumbnails, search by image) must see them upright; the reduced-scale JPEG decode
that ``index`` uses must embed like a full decode.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ternaryclip.data.images import decode_rgb, decode_sized
from ternaryclip.photos import PhotoStore, RuntimeEncoder, Searcher, index_folder

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")

# EXIF orientation -> how the camera stored the upright picture, from the EXIF definitions of where the
# stored picture's row 0 and column 0 lie (numpy, not Pillow: the decoder under test uses Pillow).
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # row 0 at the top, column 0 at the right
    3: lambda a: a[::-1, ::-1],  # bottom, right
    4: lambda a: a[::-1],  # bottom, left
    5: lambda a: a.transpose(1, 0, 2),  # row 0 at the left, column 0 at the top
    6: lambda a: np.rot90(a, 1),  # right, top: a phone held upright, the usual portrait
    7: lambda a: np.rot90(a, 1)[:, ::-1],  # right, bottom
    8: lambda a: np.rot90(a, -1),  # left, bottom
}


def real_photo(name: str) -> np.ndarray:
    """A scikit-image photograph cropped to multiples of 16 px, so JPEG blocks line up in every orientation."""
    pixels = getattr(pytest.importorskip("skimage.data"), name)()
    return np.ascontiguousarray(pixels[: pixels.shape[0] // 16 * 16, : pixels.shape[1] // 16 * 16])


def save_tagged(upright: np.ndarray, orientation: int, path, fmt: str = "JPEG", quality: int = 95) -> str:
    """Store ``upright`` the way a camera does for ``orientation``, with the tag that undoes it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(STORED[orientation](upright))).save(
        path, fmt, exif=exif.tobytes(), quality=quality
    )
    return str(path)


def phone_size(pixels: np.ndarray, size=(4032, 3024)) -> np.ndarray:
    """A photo cropped to 4:3 and enlarged to a 12-megapixel phone photo's size."""
    h, w = pixels.shape[:2]
    cw = min(w, h * 4 // 3)
    ch = cw * 3 // 4
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(pixels[top : top + ch, left : left + cw])
    return np.asarray(crop.resize(size, Image.Resampling.LANCZOS))


def mean_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


@pytest.fixture(scope="module")
def bundled_tclip(tmp_path_factory):
    """The bundled synthetic-world CLIP (64 px) ternarized: the small real model shipped with the package."""
    import ternaryclip
    from ternaryclip.torch_clip import bundled_teacher

    return str(ternaryclip.save(bundled_teacher(), tmp_path_factory.mktemp("bundled") / "b.tclip", quantize="absmean"))


@pytest.fixture(scope="module")
def tagged_folder(tmp_path_factory):
    """Each photo saved 8 times, once per orientation: ``{(name, orientation): path}``."""
    folder = tmp_path_factory.mktemp("tagged")
    return {(name, o): save_tagged(real_photo(name), o, folder / f"{name}-{o}.jpg") for name in PHOTOS for o in STORED}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_orientation_decodes_upright(tagged_folder, orientation):
    for name in PHOTOS:
        upright = real_photo(name)
        path = tagged_folder[name, orientation]
        image, full = decode_sized(path)
        assert image.size == full == (upright.shape[1], upright.shape[0])
        assert mean_abs(image, upright) < 3.0  # JPEG at quality 95
        # JPEG's blocks line up, so each orientation's file decodes close to the upright file's pixels
        assert mean_abs(image, decode_rgb(tagged_folder[name, 1])) < 2.0
        as_stored = np.asarray(Image.open(path))
        if orientation != 1 and as_stored.shape == upright.shape:  # the tag mattered
            assert mean_abs(as_stored, upright) > 10


def test_a_broken_orientation_tag_leaves_the_pixels_as_stored(tmp_path):
    upright = real_photo("coffee")
    exif = Image.Exif()
    exif[0x0112] = 42  # no such orientation
    Image.fromarray(upright).save(tmp_path / "odd.jpg", exif=exif.tobytes(), quality=95)
    assert mean_abs(decode_rgb(tmp_path / "odd.jpg"), upright) < 3.0


def test_rotated_copies_embed_like_the_upright_photo_on_every_path(bundled_tclip, tagged_folder):
    """The runtime from paths, the server's decoder from bytes: cosine >= 0.999 to the upright file."""
    from ternaryclip.runtime import load
    from ternaryclip.serve.decode import decode_image

    model = load(bundled_tclip)
    for name in PHOTOS:
        paths = [tagged_folder[name, o] for o in sorted(STORED)]
        vectors = model.encode_image(paths, normalize=True)
        assert (vectors @ vectors[0]).min() >= 0.999
        served = [decode_image(open(p, "rb").read(), p, model.preprocess, 10**8) for p in paths]
        assert [(d.width, d.height) for d in served] == [image_size(real_photo(name))] * 8
        from_bytes = model.encode_image(np.stack([d.pixels for d in served]), normalize=True)
        np.testing.assert_allclose(from_bytes, vectors, atol=1e-6)
        # without the tag's turn the sideways copies are farther from the upright one than any tagged copy
        sideways = model.encode_image([Image.open(p).convert("RGB") for p in paths[4:]], normalize=True)
        assert (sideways @ vectors[0]).max() < (vectors @ vectors[0]).min()


def image_size(pixels: np.ndarray) -> tuple[int, int]:
    return pixels.shape[1], pixels.shape[0]


def test_index_stores_upright_thumbnails_and_search_by_a_rotated_copy_finds_all_copies(bundled_tclip, tagged_folder):
    folder = tagged_folder["coffee", 1].rsplit("/", 1)[0]
    encoder = RuntimeEncoder(bundled_tclip)
    with PhotoStore(folder + "/p.db") as store:
        report = index_folder(folder, store, encoder, batch_size=7, progress=False)
        assert (report.embedded, len(report.failed)) == (32, 0)
        ids, vectors = store.embeddings()
        by_path = {store.path_of(int(i)): int(i) for i in ids}
        info = store.photos([int(i) for i in ids])
        for name in PHOTOS:
            upright = real_photo(name)
            want = Image.fromarray(upright)
            want.thumbnail((192, 192), Image.Resampling.BICUBIC)
            for o in STORED:
                photo_id = by_path[tagged_folder[name, o]]
                assert (info[photo_id]["width"], info[photo_id]["height"]) == image_size(upright)
                thumb = Image.open(io.BytesIO(store.thumbnail(photo_id)))
                assert thumb.size == want.size and mean_abs(thumb, want) < 6.0, (name, o)  # JPEG at quality 80
                if o in (2, 3, 4):  # a thumbnail of the pixels as stored would be far off
                    as_stored = Image.fromarray(np.ascontiguousarray(STORED[o](upright)))
                    as_stored.thumbnail((192, 192), Image.Resampling.BICUBIC)
                    assert mean_abs(as_stored, want) > 15
            hits = Searcher(store, encoder).by_image(tagged_folder[name, 6], k=8)
            assert sorted(h.path for h in hits) == sorted(tagged_folder[name, o] for o in STORED)
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # decoded the way index decoded it


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory):
    """The four photos at 4032 x 3024 (JPEG quality 90), rocket also as a tagged portrait: {name: path}."""
    folder = tmp_path_factory.mktemp("phone")
    paths = {}
    for name in PHOTOS:
        paths[name] = str(folder / f"{name}.jpg")
        Image.fromarray(phone_size(real_photo(name))).save(paths[name], quality=90)
    paths["rocket-portrait"] = save_tagged(
        np.ascontiguousarray(np.rot90(phone_size(real_photo("rocket")), -1)),
        6,
        folder / "rocket-portrait.jpg",
        "JPEG",
        90,
    )
    return paths


def test_phone_jpegs_decode_at_a_reduced_scale(phone_folder):
    image, full = decode_sized(phone_folder["coffee"], min_side=448)  # twice ViT-B/16's 224
    assert (image.size, full) == ((1008, 756), (4032, 3024))  # 1/4: 1/8 would give 378 < 448
    image, full = decode_sized(phone_folder["coffee"], min_side=192)
    assert (image.size, full) == ((504, 378), (4032, 3024))
    image, full = decode_sized(phone_folder["rocket-portrait"], min_side=192)
    assert (image.size, full) == ((378, 504), (3024, 4032))
    assert decode_rgb(phone_folder["coffee"], min_side=3000).size == (4032, 3024)  # halving would go below


@pytest.mark.parametrize("size", [224, 336])
def test_reduced_scale_gives_the_model_the_same_pixels_at_vit_sizes(phone_folder, size):
    """At twice the input side the model's resize sees the full decode's picture (ViT-B/16, ViT-L/14-336)."""
    from ternaryclip.runtime.preprocess import Preprocess

    preprocess = Preprocess(size, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    for path in phone_folder.values():
        full, draft = preprocess(decode_rgb(path)), preprocess(decode_rgb(path, min_side=2 * size))
        assert np.abs(full - draft).mean() < 0.01  # of a normalized range about 7 wide


def test_reduced_scale_embeds_within_cosine_0999_of_a_full_decode(bundled_tclip, phone_folder, tmp_path):
    """Index (reduced-scale decode) against the runtime's full decode of the same files."""
    from ternaryclip.runtime import load

    paths = sorted(phone_folder.values())
    encoder = RuntimeEncoder(bundled_tclip)
    folder = paths[0].rsplit("/", 1)[0]
    with PhotoStore(tmp_path / "p.db") as store:
        index_folder(folder, store, encoder, batch_size=2, progress=False)
        ids, vectors = store.embeddings()
        stored = {store.path_of(int(i)): v for i, v in zip(ids, vectors)}
        info = {p["path"]: p for p in store.photos([int(i) for i in ids]).values()}
        thumbs = {store.path_of(int(i)): Image.open(io.BytesIO(store.thumbnail(int(i)))).size for i in ids}
    full = load(bundled_tclip).encode_image(paths, normalize=True)
    cosines = (np.stack([stored[p] for p in paths]) * full).sum(1)
    assert cosines.min() >= 0.999, cosines
    portrait = phone_folder["rocket-portrait"]
    assert (info[portrait]["width"], info[portrait]["height"]) == (3024, 4032) and thumbs[portrait] == (144, 192)
    assert (info[phone_folder["coffee"]]["width"], thumbs[phone_folder["coffee"]]) == (4032, (192, 144))


def test_heic_photos_decode_upright_and_are_indexed(bundled_tclip, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()  # for writing them here; the decoder registers it by itself
    upright = real_photo("rocket")
    folder = tmp_path / "heic"
    folder.mkdir()
    paths = {o: save_tagged(upright, o, folder / f"rocket-{o}.heic", "HEIF", 90) for o in (1, 3, 6, 8)}
    for path in paths.values():
        assert mean_abs(decode_rgb(path), upright) < 3.0
    with PhotoStore(tmp_path / "p.db") as store:
        report = index_folder(folder, store, RuntimeEncoder(bundled_tclip), progress=False)
        _, vectors = store.embeddings()
    assert (report.embedded, len(report.failed)) == (4, 0) and (vectors @ vectors[0]).min() >= 0.999
