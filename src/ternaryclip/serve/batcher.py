"""Dynamic batching: requests for one tower of one model that arrive close together share one forward pass.

A request's items (texts, or decoded images) wait in a bounded queue.  A collector task takes them
as soon as ``max_batch`` items are waiting or the oldest has waited ``max_wait``; the forward pass
runs on an inference thread, off the event loop, and each caller gets its own rows back in order.
Items queued while a batch runs join the next one, so under load batches fill by themselves.  With
``concurrency`` > 1 (the server's ``--streams``) up to that many batches run at once, each on its own
inference thread.  A caller that gives up (timeout, disconnect) is dropped from the queue before it
costs a forward pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from .errors import ApiError, QueueFull


@dataclass(eq=False)
class _Job:
    items: Sequence
    future: asyncio.Future
    arrived: float
    taken: bool = field(default=False)


class Batcher:
    """Batches calls of ``encode(items) -> [len(items), dim]`` for one tower."""

    def __init__(
        self,
        name: str,
        encode: Callable[[list], np.ndarray],
        executor: Executor,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        retry_after_s: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
        concurrency: int = 1,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.name, self.encode, self.executor = name, encode, executor
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.retry_after_s, self.on_batch, self.concurrency = retry_after_s, on_batch, concurrency
        self._pending: deque[_Job] = deque()
        self._queued = 0  # items in _pending
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._slots: asyncio.Semaphore | None = None  # batches that may still start
        self._running: set[asyncio.Task] = set()

    @property
    def depth(self) -> int:
        """Items waiting for a batch (not counting the batch being encoded)."""
        return self._queued

    async def submit(self, items: Sequence) -> np.ndarray:
        """Encode ``items`` within some batch; raises QueueFull when the queue has no room for them."""
        if len(items) > self.max_queue:
            raise ApiError(400, f"{len(items)} items in one request; the limit is {self.max_queue} (--max-queue)")
        if self._queued + len(items) > self.max_queue:
            raise QueueFull(self.name, self.retry_after_s)
        loop = asyncio.get_running_loop()
        job = _Job(items, loop.create_future(), loop.time())
        job.future.add_done_callback(lambda _: self._forget(job))
        self._pending.append(job)
        self._queued += len(items)
        self._start(loop)
        self._wakeup.set()
        return await job.future  # cancelling the caller cancels the future, which drops the job

    def _forget(self, job: _Job) -> None:
        if not job.taken:  # cancelled while still queued
            job.taken = True
            self._pending.remove(job)
            self._queued -= len(job.items)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._slots = asyncio.Semaphore(self.concurrency)
            self._task = loop.create_task(self._collect(), name=f"batcher {self.name}")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in list(self._pending):
            job.future.cancel()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # a free inference thread first: until then, items keep joining
            try:
                jobs = await self._next_batch(loop)
            except BaseException:
                self._slots.release()
                raise
            task = loop.create_task(self._run(loop, jobs), name=f"batch {self.name}")
            self._running.add(task)
            task.add_done_callback(lambda done, jobs=jobs: self._finished(done, jobs))

    def _finished(self, task: asyncio.Task, jobs: list[_Job]) -> None:
        self._running.discard(task)
        self._slots.release()
        for job in jobs:  # a batch cancelled by close(): nobody waits forever
            if not job.future.done():
                job.future.cancel()

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[_Job]:
        """Waits for queued items, then for ``max_batch`` of them or the oldest one's ``max_wait``."""
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0].arrived + self.max_wait_s
            while self._queued < self.max_batch and (remaining := deadline - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            # Idle streams share what is waiting: two half batches side by side finish sooner than
            # one whole batch on one stream while the other waits.
            idle = self.concurrency - len(self._running)  # this collector's stream among them
            jobs = self._take(max(1, min(self.max_batch, -(-self._queued // idle))))
            if jobs:  # else every waiting caller gave up meanwhile
                return jobs

    def _take(self, limit: int) -> list[_Job]:
        """The oldest jobs up to ``limit`` items (a single larger job goes alone, encoded in chunks)."""
        jobs, count = [], 0
        while self._pending and (not jobs or count + len(self._pending[0].items) <= limit):
            job = self._pending.popleft()
            job.taken = True
            self._queued -= len(job.items)
            jobs.append(job)
            count += len(job.items)
        return jobs

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        start = time.perf_counter()
        try:
            out = await loop.run_in_executor(self.executor, self.encode, items)
        except Exception as err:  # every waiting caller gets the error, the collector lives on
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - start)
        row = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(out[row : row + len(job.items)])
            row += len(job.items)
