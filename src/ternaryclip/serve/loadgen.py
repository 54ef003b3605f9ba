"""A bounded load generator for the server: N client threads for T seconds, mixed and partly malformed.

Used by the load smoke test and by ``benchmarks/serve.py``.  Loopback only: ``LocalServer`` binds
127.0.0.1 and the clients talk to whatever URL they are given, which callers keep on 127.0.0.1.
Every request is answered or times out; the run stops by itself after ``seconds``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import numpy as np

TEXTS = (
    "a photo of a cat",
    "a red car on a street",
    "two dogs playing in the snow",
    "a bowl of soup",
    "a mountain lake",
)
KINDS = ("text", "image", "malformed")


@dataclass
class LoadResult:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    failures: list[str] = field(default_factory=list)  # valid requests not answered 200, malformed not 4xx

    def count(self, kind: str) -> int:
        return sum(self.statuses[kind].values())

    def throughput(self, kind: str) -> float:
        return self.count(kind) / self.seconds

    def percentile(self, kind: str, q: float) -> float:
        return float(np.percentile(self.latencies[kind], q)) if self.latencies[kind] else float("nan")

    def summary(self) -> dict:
        out = {"seconds": round(self.seconds, 2), "failures": len(self.failures), "failure_examples": self.failures[:5]}
        for kind in KINDS:
            if self.count(kind):
                out[kind] = {
                    "requests": self.count(kind),
                    "per_s": round(self.throughput(kind), 2),
                    "p50_ms": round(1000 * self.percentile(kind, 50), 1),
                    "p99_ms": round(1000 * self.percentile(kind, 99), 1),
                    "statuses": {str(k): v for k, v in sorted(self.statuses[kind].items())},
                }
        return out


def malformed_request(rng: random.Random) -> dict:
    """One of the mistakes clients make; each must get a 4xx and hurt nobody else."""
    choice = rng.randrange(4)
    if choice == 0:
        return {"url": "/v1/embed/text", "content": b"{not json", "headers": {"content-type": "application/json"}}
    if choice == 1:
        return {"url": "/v1/embed/text", "json": {"texts": "not a list"}}
    if choice == 2:
        return {"url": "/v1/embed/image", "files": [("image", ("broken.jpg", b"\xff\xd8\xff garbage"))]}
    return {"url": "/v1/embed/image", "json": {"images": ["%%% not base64"]}}


def request_for(kind: str, rng: random.Random, image: bytes) -> dict:
    if kind == "text":
        return {"url": "/v1/embed/text", "json": {"texts": [rng.choice(TEXTS)]}}
    if kind == "image":
        return {"url": "/v1/embed/image", "files": [("image", ("photo.jpg", image))]}
    return malformed_request(rng)


def run_load(
    base_url: str,
    clients: int,
    seconds: float,
    image: bytes,
    image_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
    seed: int = 0,
    timeout_s: float = 60.0,
) -> LoadResult:
    """``clients`` threads, each sending one request after another for ``seconds``; returns what came back."""
    result, lock = LoadResult(seconds), threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=base_url, timeout=timeout_s) as http:
            while time.perf_counter() < stop_at:
                roll = rng.random()
                kind = (
                    "malformed"
                    if roll < malformed_fraction
                    else "image"
                    if roll < malformed_fraction + image_fraction
                    else "text"
                )
                req = request_for(kind, rng, image)
                start = time.perf_counter()
                try:
                    status = http.post(**req).status_code
                except httpx.HTTPError as err:
                    status, error = 0, f"{kind}: {type(err).__name__} {err}"
                else:
                    error = None
                elapsed = time.perf_counter() - start
                ok = status == 200 if kind != "malformed" else 400 <= status < 500
                with lock:
                    result.statuses[kind][status] += 1
                    result.latencies[kind].append(elapsed)
                    if not ok:
                        result.failures.append(error or f"{kind} {req['url']}: status {status}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout_s + 5)
    result.seconds = time.perf_counter() - started
    return result


class LocalServer:
    """``with LocalServer(app) as url:`` a real uvicorn on 127.0.0.1 at a free port, in a thread."""

    def __init__(self, app, log_level: str = "warning"):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
