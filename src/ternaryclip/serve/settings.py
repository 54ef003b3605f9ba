"""The server's knobs in one place, shared by the app, the command line and the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching settings; the defaults are the command line's."""

    max_batch: int = 32  # items (texts or images) encoded together per tower
    max_wait_ms: float = 5.0  # how long the first queued item waits for others to join its batch
    max_queue: int = 256  # items waiting per tower; beyond it requests get 503 + Retry-After
    max_body_mb: float = 32.0  # request bodies larger than this get 413 before being read
    max_pixels: int = 40_000_000  # images with more pixels get 400 before being decoded
    timeout_s: float = 30.0  # per request, decode and encode together; then 504
    decode_workers: int = 2  # threads that decode images
    max_decodes: int = 64  # images waiting for or in decoding; beyond it 503
    retry_after_s: int = 1  # the Retry-After that comes with a 503
    streams: int = 1  # forward passes at once, the kernel threads split between them

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "decode_workers", "max_decodes", "max_pixels", "streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "max_body_mb", "timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
