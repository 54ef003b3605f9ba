"""The photo search page as people meet it: real HTTP on 127.0.0.1 and Debian's chromium, headless."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from test_photos import write_photos
from test_photos_orientation import bundled_tclip  # noqa: F401 -- a fixture

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

LABELS = ["red things", "green things", "blue things", "yellow things", "purple things", "cyan things"]
QUERY = "three large red squares"


@contextlib.contextmanager
def served(app):
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    """Index and tag tiny photos, then serve the model and the page with uvicorn in a thread."""
    import open_clip
    import torch

    import ternaryclip
    from helpers import TINY_DISTILL
    from ternaryclip.photos import PhotoStore, RuntimeEncoder, index_folder, tag_photos
    from ternaryclip.photos.web import photo_routes_for
    from ternaryclip.runtime import load
    from ternaryclip.serve import ServeSettings, create_app

    folder = tmp_path_factory.mktemp("page")
    torch.manual_seed(1)
    model_path = str(ternaryclip.save(open_clip.CLIP(**TINY_DISTILL).eval(), folder / "m.tclip", quantize="absmean"))
    paths = write_photos(folder / "pics", n=16, corrupt=1)
    encoder = RuntimeEncoder(model_path)
    with PhotoStore(folder / "p.db") as store:
        index_folder(folder / "pics", store, encoder, progress=False)
        tag_photos(store, encoder, LABELS, top=2)
    app = create_app(
        {"m": load(model_path)}, ServeSettings(), extra_routes=photo_routes_for(folder / "p.db", model_path)
    )
    with served(app) as base:
        yield base, model_path, paths


def expected_top(model_path: str, paths: list[str], query: str) -> tuple[str, str]:
    """The best photo for ``query`` and its best label, computed directly with the runtime."""
    from ternaryclip.runtime import load

    model = load(model_path)
    images = model.encode_image(paths, normalize=True)
    best = int(np.argmax(images @ model.encode_text([query], normalize=True)[0]))
    labels = model.encode_text([f"a photo of {label}" for label in LABELS], normalize=True)
    return paths[best], LABELS[int(np.argmax(labels @ images[best]))]


def test_search_api_thumbnails_originals_and_more_like_this(photo_server):
    base, model_path, paths = photo_server
    best_path, best_label = expected_top(model_path, paths, QUERY)
    with httpx.Client(base_url=base, timeout=30) as client:
        hits = client.get("/photos/api/search", params={"q": QUERY, "k": 5}).json()["results"]
        assert len(hits) == 5 and hits[0]["path"] == best_path and hits[0]["labels"][0]["label"] == best_label
        thumb = client.get(hits[0]["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        original = client.get(hits[0]["photo"])
        assert original.content == open(best_path, "rb").read()
        like = client.get(f"/photos/api/like/{hits[0]['id']}", params={"k": 3}).json()["results"]
        assert len(like) == 3 and hits[0]["id"] not in [h["id"] for h in like]
        assert client.get("/photos/api/stats").json() == {"photos": 16}
        assert client.get("/photos/api/search", params={"q": "  "}).status_code == 400
        assert client.get("/photos/api/search", params={"q": "x", "k": "lots"}).status_code == 400
        assert client.get("/photos/api/thumbnail/99999").status_code == 404
        assert client.get("/photos/api/like/99999").status_code == 404
        page = client.get("/photos/", follow_redirects=True)
        assert page.status_code == 200 and 'id="q"' in page.text
        assert client.get("/photos/app.js").status_code == 200


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_in_headless_chromium(photo_server, tmp_path):
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no chromium installed (apt-get install chromium); the page was not tested in a browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    base, model_path, paths = photo_server
    best_path, best_label = expected_top(model_path, paths, QUERY)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(f"{base}/photos/")
            page.fill("#q", QUERY)
            page.press("#q", "Enter")
            page.wait_for_selector("body[data-state=done] .result", timeout=30_000)
            first = page.locator(".result").first
            assert first.locator(".label").first.inner_text() == best_label
            assert first.locator(".name").inner_text() == best_path.rsplit("/", 1)[1]
            page.wait_for_function("[...document.images].every(im => im.complete && im.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "photo-search.png"), full_page=True)
            first.locator(".like").click()
            page.wait_for_function("document.getElementById('status').textContent.startsWith('15 photos like')")
            assert page.locator(".result").count() == 15  # every other photo, the clicked one left out
        finally:
            browser.close()
    assert (tmp_path / "photo-search.png").stat().st_size > 1000


# ---------------------------------------------------------------- real photos: upright, duplicates side by side

# (photo, orientation of its sideways copy): each photo also has an upright original and a half-size copy.
SIDEWAYS = {"rocket": 6, "coffee": 8, "chelsea": 3, "astronaut": 5}
DISTINCT = ("hubble_deep_field", "immunohistochemistry", "colorwheel")
THRESHOLD = 0.99  # the bundled model's copies sit above 0.995, unrelated photos below 0.97 (test_photos_duplicates)


@pytest.fixture(scope="module")
def library_server(tmp_path_factory, bundled_tclip):  # noqa: F811
    """Real photos, sideways copies tagged with their orientation and resized copies, indexed and served."""
    from PIL import Image

    from ternaryclip.photos import PhotoStore, RuntimeEncoder, index_folder
    from ternaryclip.photos.web import photo_routes_for
    from ternaryclip.runtime import load
    from ternaryclip.serve import ServeSettings, create_app
    from test_photos_orientation import real_photo, save_tagged

    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("library")
    photos = folder / "photos"
    photos.mkdir()
    for name, orientation in SIDEWAYS.items():
        upright = real_photo(name)
        save_tagged(upright, 1, photos / f"{name}.jpg")
        save_tagged(upright, orientation, photos / f"{name}-sideways.jpg")
        half = Image.fromarray(upright).resize((upright.shape[1] // 2, upright.shape[0] // 2), Image.Resampling.LANCZOS)
        half.save(photos / f"{name}-half.jpg", quality=80)
    for name in DISTINCT:
        Image.fromarray(getattr(skimage_data, name)()).save(photos / f"{name}.jpg", quality=90)
    with PhotoStore(folder / "p.db") as store:
        index_folder(photos, store, RuntimeEncoder(bundled_tclip), progress=False)
    app = create_app(
        {"b": load(bundled_tclip)}, ServeSettings(), extra_routes=photo_routes_for(folder / "p.db", bundled_tclip)
    )
    with served(app) as base:
        yield base, photos


def expected_groups(photos) -> list[list[str]]:
    return sorted(sorted(f"{name}{s}.jpg" for s in ("", "-sideways", "-half")) for name in SIDEWAYS)


def test_duplicates_api_groups_the_copies(library_server):
    base, photos = library_server
    with httpx.Client(base_url=base, timeout=60) as client:
        body = client.get("/photos/api/duplicates", params={"threshold": THRESHOLD}).json()
        assert body["threshold"] == THRESHOLD
        assert sorted(sorted(p["name"] for p in g) for g in body["groups"]) == expected_groups(photos)
        for group in body["groups"]:
            assert group[0]["similarity"] == 1.0 and "-half" not in group[0]["name"]  # the full size first
            assert client.get(group[-1]["thumbnail"]).headers["content-type"] == "image/jpeg"
        assert client.get("/photos/api/duplicates", params={"threshold": "1.5"}).status_code == 400
        assert client.get("/photos/api/duplicates", params={"threshold": "most"}).status_code == 400


def test_duplicates_view_shows_rotated_photos_upright_in_chromium(library_server, tmp_path):
    """The groups side by side; every thumbnail's pixels are the upright photo's, as are the originals'."""
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no chromium installed (apt-get install chromium); the page was not tested in a browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    from test_photos_orientation import real_photo

    base, photos = library_server
    shown = tmp_path / "photos-upright.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(f"{base}/photos/?view=duplicates&threshold={THRESHOLD}")
            page.wait_for_selector("body[data-state=done] .group", timeout=60_000)
            page.wait_for_function("[...document.images].every(im => im.complete && im.naturalWidth > 0)")
            groups = page.eval_on_selector_all(
                ".group",
                "groups => groups.map(g => [...g.querySelectorAll('.result')].map(r => ({"
                "name: r.querySelector('.name').textContent, box: r.getBoundingClientRect().toJSON()})))",
            )
            assert sorted(sorted(c["name"] for c in g) for g in groups) == expected_groups(photos)
            for group in groups:  # side by side: one row, left to right
                assert len({round(c["box"]["top"]) for c in group}) == 1
                assert [c["box"]["left"] for c in group] == sorted(c["box"]["left"] for c in group)
            # the thumbnails' pixels as the browser decoded them, drawn on a canvas
            thumbs = page.eval_on_selector_all(
                ".group img.thumb",
                """images => images.map(im => {
                    const c = document.createElement('canvas');
                    c.width = im.naturalWidth; c.height = im.naturalHeight;
                    const g = c.getContext('2d'); g.drawImage(im, 0, 0);
                    return {name: im.alt, w: c.width, h: c.height,
                            rgba: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
                })""",
            )
            originals = page.evaluate(
                """async names => Promise.all([...document.querySelectorAll('.result')]
                    .filter(r => names.includes(r.querySelector('.name').textContent))
                    .map(r => new Promise(done => { const im = new Image();
                        im.onload = () => done([r.querySelector('.name').textContent, im.naturalWidth, im.naturalHeight]);
                        im.src = r.querySelector('.open').href; })))""",
                [f"{name}-sideways.jpg" for name in SIDEWAYS],
            )
            page.screenshot(path=str(shown), full_page=True)
        finally:
            browser.close()
    for thumb in thumbs:
        name = thumb["name"].split("-")[0].removesuffix(".jpg")
        if name not in SIDEWAYS:
            continue
        want = Image.fromarray(real_photo(name))
        want.thumbnail((192, 192), Image.Resampling.BICUBIC)
        got = np.array(thumb["rgba"], np.float64).reshape(thumb["h"], thumb["w"], 4)[..., :3]
        assert (thumb["w"], thumb["h"]) == want.size, thumb["name"]
        assert np.abs(got - np.asarray(want, np.float64)).mean() < 6, thumb["name"]  # a half-size copy re-encoded
    for name, width, height in originals:  # the browser turns the original file upright by its tag too
        upright = real_photo(name.split("-")[0])
        assert (width, height) == (upright.shape[1], upright.shape[0])
    assert shown.stat().st_size > 1000
    if os.environ.get("TERNARYCLIP_SCREENSHOTS"):  # docs/img/photos-upright.png is made this way
        small = Image.open(shown).convert("RGB").quantize(256, dither=Image.Dither.NONE)  # a small file
        small.save(os.path.join(os.environ["TERNARYCLIP_SCREENSHOTS"], shown.name), optimize=True)
