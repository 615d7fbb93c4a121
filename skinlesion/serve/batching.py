"""Micro-batching: requests that arrive together share one forward pass of the model.

A request hands its images to a MicroBatcher and awaits their results. One worker task takes
the first waiting request, then gathers more for at most `max_wait` seconds or until
`max_batch` images are in hand, and runs the batch on the model's single inference thread,
where every call on the model runs (a torch model is not safe to call from two threads at
once, and Grad-CAM's hooks would see the other thread's forward pass). A request with more
images than `max_batch` runs alone. max_batch 1 or max_wait 0 turns batching off: each
request is its own batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from skinlesion.serve.metrics import Metrics

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Out = TypeVar("Out")


@dataclasses.dataclass(frozen=True)
class Batching:
    """Settings: at most `max_batch` images per forward pass, waiting at most `max_wait`
    seconds after the first request for others."""

    max_batch: int = 32
    max_wait: float = 0.005


@dataclasses.dataclass(eq=False)
class _Waiting(Generic[Item, Out]):
    items: Sequence[Item]
    result: asyncio.Future[list[Out]]


class MicroBatcher(Generic[Item, Out]):
    """Runs `run_batch` (a list of items in, one output per item out, in order) on `executor`
    for the items of concurrent `submit` calls, gathered as Batching says; batch sizes go
    to `metrics` under `route`."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Out]],
        *,
        settings: Batching,
        executor: Executor,
        metrics: Metrics,
        route: str,
    ):
        self.run_batch, self.settings, self.executor = run_batch, settings, executor
        self.metrics, self.route = metrics, route
        self._queue: asyncio.Queue[_Waiting[Item, Out]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._held: _Waiting[Item, Out] | None = None  # taken from the queue, first of the next batch
        self._gathering: list[_Waiting[Item, Out]] = []  # taken from the queue into the batch being gathered

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher {self.route}")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting (queued, being gathered into a batch, or in
        the batch that was running) get a RuntimeError. uvicorn lets every request in flight
        finish before it stops the app, so only those past its graceful timeout should."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        left = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for waiting in [*left, *self._gathering, *([self._held] if self._held else [])]:
            if not waiting.result.done():
                waiting.result.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, items: Sequence[Item]) -> list[Out]:
        """The outputs of `items`, in order, once the batch they joined has run."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("the batch worker is not running")
        waiting = _Waiting(items, asyncio.get_running_loop().create_future())
        await self._queue.put(waiting)
        return await waiting.result

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(loop)
            items = [item for waiting in batch for item in waiting.items]
            try:
                outputs = await loop.run_in_executor(self.executor, self.run_batch, items)
            except Exception as error:  # the model failed: every request of the batch hears it
                log.exception("%s: a batch of %d images failed", self.route, len(items))
                for waiting in batch:
                    if not waiting.result.done():
                        waiting.result.set_exception(error)
                continue
            self.metrics.batch_run(self.route, len(items))
            start = 0
            for waiting in batch:
                if not waiting.result.done():  # a client that went away cancelled its future
                    waiting.result.set_result(list(outputs[start : start + len(waiting.items)]))
                start += len(waiting.items)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[_Waiting[Item, Out]]:
        """The first waiting request, and those that join it within max_wait, up to max_batch
        images; a request that would overflow the batch opens the next one."""
        first, self._held = self._held or await self._queue.get(), None
        batch = self._gathering = [first]
        size = len(first.items)
        if self.settings.max_wait <= 0:  # no waiting: each request is its own batch
            return batch
        deadline = loop.time() + self.settings.max_wait
        while size < self.settings.max_batch:
            try:
                waiting = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    # a get cancelled by the timeout leaves its item in the queue
                    waiting = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(waiting.items) > self.settings.max_batch:
                self._held = waiting
                break
            batch.append(waiting)
            size += len(waiting.items)
        return batch
