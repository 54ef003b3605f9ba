"""The server under bad input and pressure: body size, pixel bombs, broken images, full queues,
timeouts, disconnects, and the batcher that keeps one caller's fault from reaching another."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import ternaryclip  # noqa: E402
from serve_support import build_tiny_tclip, cosine, header_bomb_png, image_bytes, pil  # noqa: E402
from ternaryclip.serve import ServeSettings, create_app  # noqa: E402
from ternaryclip.serve.batcher import Batcher  # noqa: E402
from ternaryclip.serve.loadgen import LocalServer  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return ternaryclip.load(build_tiny_tclip(tmp_path_factory.mktemp("limits") / "tiny.tclip"))


def make_client(model, **settings) -> TestClient:
    return TestClient(create_app({"tiny": model}, ServeSettings(**settings)))


def asgi_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_oversize_body_is_refused_before_it_is_read(model):
    with make_client(model, max_body_mb=0.01) as client:
        declared = client.post("/v1/embed/text", content=b"x" * 20_000, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and "max-body-mb" in declared.json()["error"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(10):
                yield b"y" * 4096

        streamed = client.post("/v1/embed/image", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/v1/embed/text", json={"texts": ["a cat"]}).status_code == 200


def test_pixel_limit_and_header_bombs_get_400_naming_the_file(model):
    with make_client(model, max_pixels=48 * 36) as client:
        small = client.post("/v1/embed/image", files=[("image", ("ok.jpg", image_bytes(size=(48, 36))))])
        assert small.status_code == 200
        big = client.post("/v1/embed/image", files=[("image", ("big.png", image_bytes(size=(49, 36), fmt="PNG")))])
        assert big.status_code == 400 and "big.png" in big.json()["error"] and "49x36" in big.json()["error"]
    with make_client(model) as client:  # default limit; the header claims 10^10 pixels, the file is tiny
        bomb = client.post("/v1/embed/image", files=[("image", ("bomb.png", header_bomb_png()))])
        assert bomb.status_code == 400 and "bomb.png" in bomb.json()["error"]


def test_a_broken_image_names_its_file_and_poisons_nothing(model):
    good = image_bytes(seed=5)
    with make_client(model) as client:
        r = client.post(
            "/v1/embed/image", files=[("image", ("good.jpg", good)), ("image", ("cut.jpg", good[: len(good) // 3]))]
        )
        assert r.status_code == 400 and "cut.jpg" in r.json()["error"]
        for name, data in [("empty.jpg", b""), ("text.jpg", b"hello")]:
            r = client.post("/v1/embed/image", files=[("image", (name, data))])
            assert r.status_code == 400 and name in r.json()["error"]
        r = client.post("/v1/embed/image", json={"images": ["!!!"]})
        assert r.status_code == 400 and "images[0]" in r.json()["error"]
        after = client.post("/v1/embed/image", json={"images": [base64.b64encode(good).decode()]})
        assert after.status_code == 200
        assert cosine(after.json()["embeddings"], model.encode_image([pil(good)]))[0] >= 0.9999


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400),
        ({"json": ["a list"]}, 400),
        ({"json": {"texts": "a cat"}}, 400),
        ({"json": {"texts": ["ok", 3]}}, 400),
        ({"json": {"texts": ["ok"], "normalize": "maybe"}}, 400),
        ({"json": {"texts": ["x"] * 300}}, 400),  # more than the queue can ever hold
    ],
)
def test_malformed_text_requests_get_400(model, kwargs, status):
    with make_client(model) as client:
        r = client.post("/v1/embed/text", **kwargs)
        assert r.status_code == status and r.json()["error"]


def test_unknown_route_and_method_answer_json(model):
    with make_client(model) as client:
        assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
        assert client.get("/v1/embed/text").status_code == 405


def test_full_queue_answers_503_with_retry_after(model):
    app = create_app({"tiny": model}, ServeSettings(max_queue=2, max_batch=8, max_wait_ms=500))

    async def scenario():
        async with asgi_client(app) as http:
            first = asyncio.create_task(http.post("/v1/embed/text", json={"texts": ["a", "b"]}))
            await asyncio.sleep(0.1)  # the first request now fills the queue while it waits for its batch
            second = await http.post("/v1/embed/text", json={"texts": ["c"]})
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert (
        second.status_code == 503 and second.headers["retry-after"] == "1" and "queue is full" in second.json()["error"]
    )


def test_timeout_answers_504_and_frees_the_queue(model):
    app = create_app({"tiny": model}, ServeSettings(timeout_s=0.2, max_wait_ms=3000, max_batch=8))

    async def scenario():
        async with asgi_client(app) as http:
            start = time.perf_counter()
            r = await http.post("/v1/embed/text", json={"texts": ["a cat"]})
            return r, time.perf_counter() - start, app.state.service.batchers["tiny", "text"].depth

    r, seconds, depth = asyncio.run(scenario())
    assert r.status_code == 504 and "timeout-s" in r.json()["error"]
    assert seconds < 2 and depth == 0


def test_a_client_that_disconnects_frees_its_slot(model):
    """Real uvicorn on 127.0.0.1: the request waits 3 s for a batch; the client hangs up after 0.2 s."""
    app = create_app({"tiny": model}, ServeSettings(max_wait_ms=3000, max_batch=8))
    batcher = app.state.service.batchers["tiny", "text"]
    with LocalServer(app) as url:
        port = int(url.rsplit(":", 1)[1])
        body = b'{"texts": ["a cat", "a dog"]}'
        head = f"POST /v1/embed/text HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head.encode() + body)
            deadline = time.monotonic() + 2
            while batcher.depth != 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert batcher.depth == 2
        deadline = time.monotonic() + 1.5  # well before the batch would have run
        while batcher.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.depth == 0
        assert httpx.get(url + "/ping").text == "pong"


# ------------------------------------------------------------------ the batcher itself
def run_batcher(encode, scenario, **kwargs):
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher("t", encode, pool, **{"max_batch": 4, "max_wait_s": 0.05, "max_queue": 16, **kwargs})
            try:
                return await scenario(batcher)
            finally:
                await batcher.close()

    return asyncio.run(main())


def test_requests_arriving_together_share_a_batch_and_get_their_own_rows():
    batches = []

    def encode(items):
        batches.append(list(items))
        return np.array([[float(x), 2.0 * x] for x in items])

    async def scenario(batcher):
        return await asyncio.gather(
            batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5]), batcher.submit([6])
        )

    results = run_batcher(encode, scenario)
    assert [r[:, 0].tolist() for r in results] == [[1, 2], [3], [4, 5], [6]]
    assert batches == [[1, 2, 3], [4, 5, 6]]  # max_batch 4: [4, 5] does not fit after [1, 2, 3]


def test_a_cancelled_request_is_never_encoded_and_a_failing_batch_fails_only_its_callers():
    seen = []

    def encode(items):
        seen.extend(items)
        if "boom" in items:
            raise RuntimeError("kernel fault")
        return np.zeros((len(items), 2))

    async def scenario(batcher):
        doomed = asyncio.create_task(batcher.submit(["gone"]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.sleep(0.01)
        assert batcher.depth == 0
        failing = await asyncio.gather(batcher.submit(["boom"]), return_exceptions=True)
        ok = await batcher.submit(["fine"])
        return failing, ok

    failing, ok = run_batcher(encode, scenario)
    assert "gone" not in seen and isinstance(failing[0], RuntimeError) and ok.shape == (1, 2)


def test_with_two_streams_two_batches_run_at_once():
    both_running = threading.Barrier(2, timeout=5)  # one batch at a time would never pass it

    def encode(items):
        both_running.wait()
        return np.array([[float(x)] for x in items])

    async def main():
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher("t", encode, pool, max_batch=1, max_wait_s=0.0, max_queue=8, concurrency=2)
            try:
                return await asyncio.gather(batcher.submit([1]), batcher.submit([2]))
            finally:
                await batcher.close()

    assert [r.tolist() for r in asyncio.run(main())] == [[[1.0]], [[2.0]]]


def test_idle_streams_share_what_is_waiting():
    batches = []

    def encode(items):
        batches.append(list(items))
        return np.array([[float(x)] for x in items])

    async def main():
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher("t", encode, pool, max_batch=32, max_wait_s=0.05, max_queue=16, concurrency=2)
            try:
                return await asyncio.gather(*(batcher.submit([i]) for i in range(5)))
            finally:
                await batcher.close()

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[[float(i)]] for i in range(5)]
    assert sorted(batches) == [[0, 1, 2], [3, 4]]  # 5 waiting, 2 idle streams: 3 and 2, not 5 and none


def test_streams_split_the_threads_and_give_the_runtime_s_embeddings(model):
    from ternaryclip import kernels

    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(2)
        app = create_app({"tiny": model}, ServeSettings(streams=2, max_wait_ms=1))
        service = app.state.service
        pools = service.inference.values()
        assert [pool._max_workers for pool in pools] == [2, 2]
        assert [pool.submit(kernels.get_num_threads).result() for pool in pools] == [1, 1]
        assert service.models["tiny"].threads == 1 and model.threads is None  # the caller's model is untouched
        texts = [f"a photo number {i}" for i in range(6)]
        with TestClient(app) as client:
            health = client.get("/health").json()
            answers = [client.post("/v1/embed/text", json={"texts": [t]}).json()["embeddings"][0] for t in texts]
        assert (health["streams"], health["threads_per_stream"]) == (2, 1)
        assert cosine(np.array(answers), model.encode_text(texts, normalize=True)).min() > 0.9999
    finally:
        kernels.set_num_threads(before)


def test_the_forward_gate_lets_a_waiting_text_batch_go_before_the_next_image_chunk():
    from ternaryclip.serve.service import ForwardGate

    gate, order = ForwardGate(), []
    image_started = threading.Event()

    def image_chunks():
        for i in range(3):
            with gate.hold(urgent=False):
                order.append(f"image {i}")
                image_started.set()
                time.sleep(0.5)  # long enough for the text thread to be waiting, even on a busy machine

    def text():
        image_started.wait()
        with gate.hold(urgent=True):
            order.append("text")

    threads = [threading.Thread(target=image_chunks), threading.Thread(target=text)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["image 0", "text", "image 1", "image 2"]


def test_a_gate_for_two_streams_lets_two_forward_passes_in_and_holds_the_third():
    from ternaryclip.serve.service import ForwardGate

    gate, inside, most, done = ForwardGate(capacity=2), [0], [0], []
    lock, release = threading.Lock(), threading.Event()

    def forward():
        with gate.hold(urgent=False):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            release.wait(10)
            with lock:
                inside[0] -= 1
        done.append(1)

    threads = [threading.Thread(target=forward) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while inside[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the third has had time to get in, were the gate open
    assert inside[0] == 2
    release.set()
    for t in threads:
        t.join(10)
    assert most[0] == 2 and len(done) == 3


def test_inference_threads_use_the_thread_count_of_the_loading_thread(model):
    from ternaryclip import kernels

    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        app = create_app({"tiny": model})
        pools = app.state.service.inference.values()
        assert [pool.submit(kernels.get_num_threads).result() for pool in pools] == [1, 1]
    finally:
        kernels.set_num_threads(before)
