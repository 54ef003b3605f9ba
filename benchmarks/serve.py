"""Bounded load test of ``ternaryclip serve`` on loopback, against batching off and a simple open_clip server.

    python benchmarks/serve.py --json benchmarks/results/serve.json --plot benchmarks/results/serve.png

Three servers, each its own process on 127.0.0.1, all with the same ViT-B/32-shaped weights (random
init, ternarized, scope ``all`` + token embedding):

- ``batched``: ``ternaryclip serve --max-batch 32 --max-wait-ms 5``;
- ``streams``: the same with ``--streams`` = ``--threads`` (one kernel thread a stream: batches run
  side by side instead of each on every thread);
- ``max-batch 1``: the same server as ``batched`` with batching off;
- ``open_clip fp32``: one process serving the same endpoints the simple way (Starlette, each request
  runs its own forward pass in the worker thread pool, no batching).

Scenarios, run server by server (the same client code, the same payloads):

- ``text x1`` and ``text x16``: single-query latency and p99 under 16 concurrent text clients;
- ``text x32``: text-query throughput under 32 clients;
- ``image x16``: image throughput (640x480 JPEGs, decoded and resized by the server);
- ``mixed x64`` (``--seconds``, 20 by default): 64 clients, 25% images, 5% malformed requests; every
  valid one must get 200, every malformed one a 4xx, and the server's RSS at the end must be within
  10% of its RSS after a warm-up under the same mix (``--warmup-seconds``).

The client threads run in this process and share the CPU with the server: on a 2-core machine
they take a real share, the same for every server.  Ratios are what to compare.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from ternaryclip.serve.loadgen import run_load

SERVERS = ("batched", "streams", "max-batch 1", "open_clip fp32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- the simple open_clip server
def simple_app(tclip: str, threads: int):
    """open_clip fp32 behind the same two endpoints, written the way a first server usually is."""
    import torch
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from ternaryclip.pack.export import to_torch
    from ternaryclip.pack.format import read
    from ternaryclip.runtime import ClipTokenizer, Preprocess

    torch.set_num_threads(threads)
    model = to_torch(tclip).eval()
    preprocess = Preprocess.from_meta(read(tclip).meta["preprocess"])
    tokenize = ClipTokenizer(model.context_length)

    def forward(fn, x) -> list:
        with torch.inference_mode():
            out = fn(torch.from_numpy(x))
        return torch.nn.functional.normalize(out, dim=-1).tolist()

    async def text(request):
        try:
            texts = (await request.json())["texts"]
            if not isinstance(texts, list):
                raise TypeError("texts must be a list of strings")
            ids = tokenize(texts)
        except Exception as err:  # any bad input is the client's
            return JSONResponse({"error": str(err)}, 400)
        return JSONResponse({"embeddings": await run_in_threadpool(forward, model.encode_text, ids)})

    async def image(request):
        try:
            if request.headers.get("content-type", "").startswith("multipart/"):
                files = [await f.read() for _, f in (await request.form()).multi_items() if hasattr(f, "read")]
            else:
                import base64

                files = [base64.b64decode(s, validate=True) for s in (await request.json())["images"]]
            pixels = np.stack([preprocess(Image.open(io.BytesIO(b))) for b in files])
        except Exception as err:  # any bad input is the client's
            return JSONResponse({"error": str(err)}, 400)
        return JSONResponse({"embeddings": await run_in_threadpool(forward, model.encode_image, pixels)})

    async def ping(request):
        return PlainTextResponse("pong")

    routes = [Route("/v1/embed/text", text, methods=["POST"]), Route("/v1/embed/image", image, methods=["POST"])]
    return Starlette(routes=[*routes, Route("/ping", ping)])


# ---------------------------------------------------------------- running servers
class ServerProcess:
    def __init__(self, name: str, command: list[str], port: int):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{name} exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.5)
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def batch_stats(self) -> dict:
        """Cumulative ``(count, sum)`` of the batch-size histogram per tower (ternaryclip servers only)."""
        try:
            text = httpx.get(self.url + "/metrics", timeout=10).text
        except httpx.HTTPError:
            return {}
        out = {}
        for tower in ("text", "image"):
            values = [
                re.search(rf'^ternaryclip_batch_size_{k}{{.*tower="{tower}"}} (\S+)$', text, re.M)
                for k in ("count", "sum")
            ]
            if all(values):
                out[tower] = tuple(float(v.group(1)) for v in values)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_servers(tclip: str, threads: int) -> dict[str, ServerProcess]:
    serve = [sys.executable, "-m", "ternaryclip", "serve", tclip, "--threads", str(threads)]
    servers = {}
    for name, extra in (
        ("batched", []),
        ("streams", ["--streams", str(threads)]),
        ("max-batch 1", ["--max-batch", "1"]),
    ):
        port = free_port()
        servers[name] = ServerProcess(name, [*serve, "--port", str(port), *extra], port)
    port = free_port()
    simple = [sys.executable, __file__, "--simple-server", tclip, "--port", str(port), "--threads", str(threads)]
    servers["open_clip fp32"] = ServerProcess("open_clip fp32", simple, port)
    return servers


def mean_batch(before: dict, after: dict, tower: str) -> float | None:
    if tower not in before or tower not in after:
        return None
    count, total = (a - b for a, b in zip(after[tower], before[tower]))
    return round(total / count, 2) if count else None


def scenario(
    server: ServerProcess,
    image: bytes,
    clients: int,
    seconds: float,
    image_fraction: float,
    malformed: float,
    seed: int,
) -> dict:
    before = server.batch_stats()
    result = run_load(server.url, clients, seconds, image, image_fraction, malformed, seed=seed)
    after = server.batch_stats()
    out = result.summary()
    out["mean_batch"] = {t: mean_batch(before, after, t) for t in ("text", "image")}
    return out


SCENARIOS = {  # name: (clients, image fraction, malformed fraction)
    "text x1": (1, 0.0, 0.0),
    "text x16": (16, 0.0, 0.0),
    "text x32": (32, 0.0, 0.0),
    "image x16": (16, 1.0, 0.0),
}


def run(args) -> dict:
    from ternaryclip.bench.files import prepare_files

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="serve-bench-"))
    files = prepare_files(args.arch, args.model, tmp)
    image = photo_jpeg()
    servers = start_servers(files["tclip"], args.threads)
    report = {
        "arch": args.arch,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "seconds": args.short_seconds,
        "scenarios": {},
    }
    try:
        for s in servers.values():  # warm-up: the first requests pay for lazy setup
            run_load(s.url, 4, 2, image, 0.5, 0.0)
        for index, (name, (clients, image_fraction, malformed)) in enumerate(SCENARIOS.items()):
            order = list(servers.values())
            first = index % len(order)
            for s in order[first:] + order[:first]:  # who goes first changes: neighbours' load drifts
                out = scenario(s, image, clients, args.short_seconds, image_fraction, malformed, seed=1)
                report["scenarios"].setdefault(name, {})[s.name] = out
                print(f"{name:10s} {s.name:15s} {json.dumps(out)}", flush=True)
        for s in servers.values():
            # Warm-up under the same load first: the batch shapes, decoder threads and allocator arenas
            # of a 64-client mix are set up in its first seconds; "flat" is about what happens after.
            run_load(s.url, args.clients, args.warmup_seconds, image, 0.25, 0.05, seed=3)
            warm = s.rss_mb()
            out = scenario(s, image, args.clients, args.seconds, 0.25, 0.05, seed=2)
            out["rss_mb_after_warmup"], out["rss_mb_end"] = round(warm, 1), round(s.rss_mb(), 1)
            report["scenarios"].setdefault(f"mixed x{args.clients}", {})[s.name] = out
            print(f"mixed x{args.clients} {s.name:15s} {json.dumps(out)}", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    report["ratios"] = ratios(report)
    return report


def ratios(report: dict) -> dict:
    sc = report["scenarios"]

    def per_s(name, server, kind):  # NaN when nothing of that kind came back
        return sc[name][server].get(kind, {}).get("per_s", float("nan"))

    out = {
        "text x32 throughput, batched / max-batch 1": per_s("text x32", "batched", "text")
        / per_s("text x32", "max-batch 1", "text"),
        "text x32 throughput, batched / open_clip fp32": per_s("text x32", "batched", "text")
        / per_s("text x32", "open_clip fp32", "text"),
        "image x16 throughput, batched / max-batch 1": per_s("image x16", "batched", "image")
        / per_s("image x16", "max-batch 1", "image"),
        "image x16 throughput, batched / open_clip fp32": per_s("image x16", "batched", "image")
        / per_s("image x16", "open_clip fp32", "image"),
        "text x32 throughput, streams / max-batch 1": per_s("text x32", "streams", "text")
        / per_s("text x32", "max-batch 1", "text"),
        "image x16 throughput, streams / batched": per_s("image x16", "streams", "image")
        / per_s("image x16", "batched", "image"),
    }
    for server in ("batched", "streams"):
        out[f"text p99 at x16 / p50 at x1 ({server})"] = (
            sc["text x16"][server]["text"]["p99_ms"] / sc["text x1"][server]["text"]["p50_ms"]
        )
    for name, run_ in sc[next(k for k in sc if k.startswith("mixed"))].items():
        out[f"mixed RSS end / after warm-up ({name})"] = run_["rss_mb_end"] / run_["rss_mb_after_warmup"]
    return {k: round(v, 2) for k, v in out.items()}


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("text x32", "text", "text queries/s, 32 clients"), ("image x16", "image", "images/s, 16 clients")]
    panels.append((next(k for k in report["scenarios"] if k.startswith("mixed")), "text", "text queries/s, mixed load"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (name, kind, title) in zip(axes, panels):
        values = [report["scenarios"][name][s].get(kind, {}).get("per_s", 0) for s in SERVERS]
        ax.bar(range(len(SERVERS)), values, color=["tab:green", "tab:blue", "tab:olive", "tab:gray"])
        ax.set_xticks(range(len(SERVERS)), SERVERS, fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"ternaryclip serve, {report['arch']}, {report['threads']} threads, loopback")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--model", help="a .tclip to serve instead of random ViT weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clients", type=int, default=64, help="clients of the mixed run")
    p.add_argument("--seconds", type=float, default=20, help="length of the mixed run")
    p.add_argument("--short-seconds", type=float, default=8, help="length of each other run")
    p.add_argument("--warmup-seconds", type=float, default=6, help="mixed load before the RSS baseline")
    p.add_argument("--workdir")
    p.add_argument("--json")
    p.add_argument("--plot")
    p.add_argument("--simple-server", metavar="TCLIP", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.simple_server:
        import uvicorn

        uvicorn.run(simple_app(args.simple_server, args.threads), host="127.0.0.1", port=args.port, log_level="warning")
        return 0
    report = run(args)
    print(json.dumps(report["ratios"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
