"""The models behind the server: one text and one image batcher per model, the decoder, the metrics.

Routes (ours, and any added with ``create_app(extra_routes=...)``) reach it as
``request.app.state.service``: ``await service.embed_texts(texts)``, ``await service.embed_images(files)``.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Awaitable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from starlette.requests import Request

from .. import kernels
from ..runtime import TernaryCLIP
from .batcher import Batcher
from .decode import DecodedImage, ImageDecoder
from .errors import ApiError
from .metrics import ServeMetrics
from .settings import ServeSettings

IMAGE_CHUNK = 8  # images per forward pass; a text batch waits at most for one such chunk


class ForwardGate:
    """``capacity`` forward passes at a time (one per stream), text first.

    The kernels spread one batch over the threads of its stream; more batches than streams at once
    (a text and an image one) would make their threads stall each other at every barrier.  Image
    batches go through in chunks of ``IMAGE_CHUNK`` and yield to any waiting text batch between
    chunks, so a search query is not stuck behind a large batch of photos.  With one kernel thread
    and one stream (``--threads 1``) the towers run side by side instead: the gate is open.
    """

    def __init__(self, enabled: bool = True, capacity: int = 1):
        self.enabled, self.capacity = enabled, capacity
        self._cond = threading.Condition()
        self._busy = 0
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self._cond:
            self._urgent_waiting += urgent
            try:
                self._cond.wait_for(lambda: self._busy < self.capacity and (urgent or not self._urgent_waiting))
            finally:
                self._urgent_waiting -= urgent
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


def kernel_path() -> str:
    return kernels.fast_gemm_impl()


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


class EmbeddingService:
    def __init__(self, models: Mapping[str, TernaryCLIP], settings: ServeSettings, metrics: ServeMetrics):
        if not models:
            raise ValueError("serve needs at least one model")
        self.models, self.settings, self.metrics = dict(models), settings, metrics
        self.default_model = next(iter(self.models))
        # One inference thread per tower and stream, one forward pass per stream at a time through the
        # gate (text first).  The kernels' thread count is per calling thread: the inference threads take the
        # models' (``load(..., threads=N)``) or else the one set in this thread, split between the
        # streams, else they would use every core whatever --threads says.
        threads = next((m.threads for m in self.models.values() if m.threads), None) or kernels.get_num_threads()
        self.streams = settings.streams
        if self.streams > threads:
            raise ValueError(f"--streams {self.streams} needs at least as many kernel threads, got {threads}")
        self.stream_threads = threads // self.streams
        if self.streams > 1:  # a model applies its own count in every call: copies that share the weights
            self.models = {name: copy.copy(m) for name, m in self.models.items()}
            for model in self.models.values():
                model.threads = self.stream_threads
        self.inference = {
            tower: ThreadPoolExecutor(
                self.streams,
                f"ternaryclip-{tower}",
                initializer=kernels.set_num_threads,
                initargs=(self.stream_threads,),
            )
            for tower in ("text", "image")
        }
        self.gate = ForwardGate(enabled=threads > 1, capacity=self.streams)
        self.decoder = ImageDecoder(
            settings.decode_workers, settings.max_decodes, settings.max_pixels, settings.retry_after_s
        )
        self.batchers: dict[tuple[str, str], Batcher] = {}
        for name, model in self.models.items():
            model.batch_size = settings.max_batch
            self._add_batcher(name, "text", lambda texts, model=model: self._encode_texts(model, texts))
            self._add_batcher(name, "image", lambda pixels, model=model: self._encode_images(model, pixels))

    def _encode_texts(self, model: TernaryCLIP, texts: list[str]) -> np.ndarray:
        with self.gate.hold(urgent=True):
            return model.encode_text(texts)

    def _encode_images(self, model: TernaryCLIP, pixels: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(pixels), IMAGE_CHUNK):
            with self.gate.hold(urgent=False):
                out.append(model.encode_image(np.stack(pixels[i : i + IMAGE_CHUNK])))
        return np.concatenate(out)

    def _add_batcher(self, model: str, tower: str, encode) -> None:
        s = self.settings

        def record(size: int, seconds: float) -> None:
            self.metrics.batch_size.labels(model, tower).observe(size)
            self.metrics.batch_seconds.labels(model, tower).observe(seconds)

        batcher = Batcher(
            f"{model}/{tower}",
            encode,
            self.inference[tower],
            s.max_batch,
            s.max_wait_ms / 1000,
            s.max_queue,
            s.retry_after_s,
            record,
            concurrency=self.streams,
        )
        self.batchers[model, tower] = batcher
        self.metrics.queue_depth.labels(model, tower).set_function(lambda: batcher.depth)

    def model_name(self, name: str | None) -> str:
        if name is None:
            return self.default_model
        if name not in self.models:
            raise ApiError(400, f"unknown model {name!r}; served: {', '.join(self.models)}")
        return name

    async def embed_texts(self, texts: list[str], model: str | None = None, normalize: bool = True) -> np.ndarray:
        """``[len(texts), dim]``; texts longer than the context are truncated as the tokenizer does."""
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "texts must be a list of strings")
        out = await self.batchers[self.model_name(model), "text"].submit(texts) if texts else self._empty(model)
        return normalized(out) if normalize else out

    async def decode_images(self, files: list[tuple[str, bytes]], model: str | None = None) -> list[DecodedImage]:
        return await self.decoder.decode(files, self.models[self.model_name(model)].preprocess)

    async def embed_pixels(
        self, images: list[DecodedImage], model: str | None = None, normalize: bool = True
    ) -> np.ndarray:
        pixels = [image.pixels for image in images]
        out = await self.batchers[self.model_name(model), "image"].submit(pixels) if pixels else self._empty(model)
        return normalized(out) if normalize else out

    async def embed_images(
        self, files: list[tuple[str, bytes]], model: str | None = None, normalize: bool = True
    ) -> np.ndarray:
        """``(name, bytes)`` image files -> ``[len(files), dim]``; a bad file raises ImageError naming it."""
        return await self.embed_pixels(await self.decode_images(files, model), model, normalize)

    def _empty(self, model: str | None) -> np.ndarray:
        return np.zeros((0, self.models[self.model_name(model)].arch.embed_dim), np.float32)

    async def guard(self, request: Request, work: Awaitable):
        """Run ``work`` under the request timeout; a client that disconnects meanwhile cancels it."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {task, gone}, timeout=self.settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if gone in done:
            raise ApiError(499, "client disconnected")
        raise ApiError(504, f"no answer within {self.settings.timeout_s:g} s (--timeout-s)")

    def health(self) -> dict:
        return {
            "status": "ok",
            "default_model": self.default_model,
            "models": {
                name: {
                    "mode": m.mode,
                    "dim": m.arch.embed_dim,
                    "image_size": m.arch.vision.image_size,
                    "context_length": m.arch.text.context_length,
                }
                for name, m in self.models.items()
            },
            "kernel": kernel_path(),
            "attention": kernels.fast_attention_impl(),
            "threads": kernels.get_num_threads(),
            "streams": self.streams,
            "threads_per_stream": self.stream_threads,
            "queue_depth": {f"{m}/{t}": b.depth for (m, t), b in self.batchers.items()},
            "decoding": self.decoder.pending,
            "settings": {
                k: getattr(self.settings, k) for k in ("max_batch", "max_wait_ms", "max_queue", "max_body_mb")
            },
        }

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.decoder.close()
        for pool in self.inference.values():
            pool.shutdown(wait=False, cancel_futures=True)


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
