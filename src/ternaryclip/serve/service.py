"""The models behind the server: one text and one image batcher per model, the decoder, the metrics.

Routes (ours, and any added with ``create_app(extra_routes=...)``) reach it as
``request.app.state.service``: ``await service.embed_texts(texts)``, ``await service.embed_images(files)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from starlette.requests import Request

from .. import kernels
from ..runtime import TernaryCLIP
from .batcher import Batcher
from .decode import DecodedImage, ImageDecoder
from .errors import ApiError
from .metrics import ServeMetrics
from .settings import ServeSettings


def kernel_path() -> str:
    if kernels.cpu_has_avx512_vnni():
        return "avx512"
    return "avx2" if kernels.cpu_has_avx2() else "ref"


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


class EmbeddingService:
    def __init__(self, models: Mapping[str, TernaryCLIP], settings: ServeSettings, metrics: ServeMetrics):
        if not models:
            raise ValueError("serve needs at least one model")
        self.models, self.settings, self.metrics = dict(models), settings, metrics
        self.default_model = next(iter(self.models))
        # One inference thread: the kernels spread each batch over all cores themselves; two batches at
        # once would only fight over them.
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="ternaryclip-infer")
        self.decoder = ImageDecoder(
            settings.decode_workers, settings.max_decodes, settings.max_pixels, settings.retry_after_s
        )
        self.batchers: dict[tuple[str, str], Batcher] = {}
        for name, model in self.models.items():
            model.batch_size = settings.max_batch
            self._add_batcher(name, "text", model.encode_text)
            self._add_batcher(name, "image", lambda pixels, model=model: model.encode_image(np.stack(pixels)))

    def _add_batcher(self, model: str, tower: str, encode) -> None:
        s = self.settings

        def record(size: int, seconds: float) -> None:
            self.metrics.batch_size.labels(model, tower).observe(size)
            self.metrics.batch_seconds.labels(model, tower).observe(seconds)

        batcher = Batcher(
            f"{model}/{tower}",
            encode,
            self.inference,
            s.max_batch,
            s.max_wait_ms / 1000,
            s.max_queue,
            s.retry_after_s,
            record,
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
            "threads": kernels.get_num_threads(),
            "queue_depth": {f"{m}/{t}": b.depth for (m, t), b in self.batchers.items()},
            "decoding": self.decoder.pending,
            "settings": {
                k: getattr(self.settings, k) for k in ("max_batch", "max_wait_ms", "max_queue", "max_body_mb")
            },
        }

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.decoder.close()
        self.inference.shutdown(wait=False, cancel_futures=True)


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
