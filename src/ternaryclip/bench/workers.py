"""Process control for ``ternaryclip bench``: one process per engine, spoken to through a pipe.

Workers are separate processes so that each engine's thread pool has the CPU to itself while it is
timed, and so that peak memory is that engine's alone.  The protocol, both ends in this file:
``("image"|"text", array)`` -> ``(seconds, embeddings)``; ``("rss",)`` -> bytes; ``("stop",)``; a
failure in the engine's process comes back as ``("error", message)`` and is raised as :class:`EngineError`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np


class EngineError(RuntimeError):
    """An engine failed in its own process (its model did not load or run there); the message names it."""


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (VmHWM), the figure a user sees in top."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(conn, engine: str, files: dict, threads: int) -> None:
    """The engine's side: load it, then serve timing requests until told to stop."""
    from .engines import ENGINES

    try:
        model = ENGINES[engine](files, threads)
        conn.send(("ready", peak_rss_bytes()))
        while True:
            request = conn.recv()
            if request[0] == "stop":
                break
            if request[0] == "rss":
                conn.send(peak_rss_bytes())
                continue
            kind, data = request
            encode = model.encode_image if kind == "image" else model.encode_text
            start = time.perf_counter()
            out = encode(data)
            conn.send((time.perf_counter() - start, out))
    except Exception as err:  # report instead of hanging the parent
        conn.send(("error", f"{engine}: {type(err).__name__}: {err}"))
    finally:
        conn.close()
        os._exit(0)


def start(engine: str, files: dict, threads: int):
    """A fresh process serving ``engine`` (spawned: no state inherited from the parent); its (process, pipe)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=worker, args=(child, engine, files, threads), daemon=True)
    proc.start()
    reply = parent.recv()
    if reply[0] == "error":
        proc.join(timeout=30)
        raise EngineError(reply[1])
    return proc, parent


def stop(workers) -> None:
    """Stop the engine processes that are still serving (a failed one has exited already)."""
    for proc, conn in workers:
        if proc.is_alive():
            try:
                conn.send(("stop",))
            except OSError:
                pass
        proc.join(timeout=30)


def ask(conn, request):
    """Send one request and wait for its reply; an error reply raises :class:`EngineError`."""
    reply = conn.recv() if conn.send(request) is None else None
    if isinstance(reply, tuple) and reply and reply[0] == "error":
        raise EngineError(reply[1])
    return reply


def peak_rss(engine: str, files: dict, threads: int, image: np.ndarray) -> int:
    """Peak RSS of a fresh process that loads the model and encodes one image."""
    proc, conn = start(engine, files, threads)
    ask(conn, ("image", image[:1]))
    rss = ask(conn, ("rss",))
    conn.send(("stop",))
    proc.join(timeout=30)
    return rss
