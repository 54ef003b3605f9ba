"""The photo search page as people meet it: real HTTP on 127.0.0.1 and Debian's chromium, headless."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import numpy as np
import pytest

from test_photos import write_photos

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

LABELS = ["red things", "green things", "blue things", "yellow things", "purple things", "cyan things"]
QUERY = "three large red squares"


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    """Index and tag tiny photos, then serve the model and the page with uvicorn in a thread."""
    import open_clip
    import torch
    import uvicorn

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
    yield f"http://127.0.0.1:{port}", model_path, paths
    server.should_exit = True
    thread.join(10)


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
