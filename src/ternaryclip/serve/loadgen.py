"""A bounded load generator for the server: N client threads for T seconds, mixed and partly malformed.

Used by the load smoke test and by ``benchmarks/serve.py``.  Loopback only: ``LocalServer`` binds
127.0.0.1 and the clients talk to whatever URL they are given, which callers keep on 127.0.0.1.
Every request is answered or times out; the run stops by itself after ``seconds``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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


def json_body(payload) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), "application/json"


def multipart_body(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """One file as ``multipart/form-data`` (RFC 7578), the way a browser or ``curl -F`` sends it."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    content_type: str


def malformed_request(rng: random.Random) -> Request:
    """One of the mistakes clients make; each must get a 4xx and hurt nobody else."""
    choice = rng.randrange(4)
    if choice == 0:
        return Request("/v1/embed/text", b"{not json", "application/json")
    if choice == 1:
        return Request("/v1/embed/text", *json_body({"texts": "not a list"}))
    if choice == 2:
        return Request("/v1/embed/image", *multipart_body("image", "broken.jpg", b"\xff\xd8\xff garbage"))
    return Request("/v1/embed/image", *json_body({"images": ["%%% not base64"]}))


def request_for(kind: str, rng: random.Random, image: bytes) -> Request:
    if kind == "text":
        return Request("/v1/embed/text", *json_body({"texts": [rng.choice(TEXTS)]}))
    if kind == "image":
        return Request("/v1/embed/image", *multipart_body("image", "photo.jpg", image))
    return malformed_request(rng)


class Connection:
    """One keep-alive HTTP/1.1 connection, reopened after an error.

    The standard library's client, not httpx: the clients share the cores with the server they
    measure, and this one costs ~0.7 ms of CPU a request against httpx's ~2.5 ms (ViT-B/32 text
    queries on 2 Zen 3 cores).
    """

    def __init__(self, base_url: str, timeout_s: float):
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout_s = parts.hostname, parts.port or 80, timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def post(self, req: Request) -> int:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.conn.request("POST", req.url, body=req.body, headers={"Content-Type": req.content_type})
            response = self.conn.getresponse()
            response.read()
            return response.status
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


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
    connections = [Connection(base_url, timeout_s) for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    stop_at = 0.0

    def client(index: int) -> None:
        rng, connection = random.Random(seed * 1000 + index), connections[index]
        ready.wait()
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
                status, error = connection.post(req), None
            except (OSError, http.client.HTTPException) as err:
                status, error = 0, f"{kind}: {type(err).__name__} {err}"
            elapsed = time.perf_counter() - start
            ok = status == 200 if kind != "malformed" else 400 <= status < 500
            with lock:
                result.statuses[kind][status] += 1
                result.latencies[kind].append(elapsed)
                if not ok:
                    result.failures.append(error or f"{kind} {req.url}: status {status}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    stop_at = started + seconds
    ready.wait()
    for t in threads:
        t.join(seconds + timeout_s + 5)
    result.seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
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
