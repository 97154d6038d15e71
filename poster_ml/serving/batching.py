"""Dynamic batching for a served model: the posters of requests that arrive together go
through the network in one forward pass.

A forward pass of one poster costs nearly as much as one of several (benchmarks/RESULTS.md
has the serving latencies), so a server that answers many clients spends most of its time
on per-call overhead unless it gathers their posters.
One thread runs the model; request threads hand it their decoded posters and wait. It
takes whatever has queued up while it was busy, so a lone client waits for nothing and
a crowd is batched by itself. Requests are never merged past `max_posters` (a larger
request goes alone), so a crowd never needs more memory than one such request does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_posters: int = 32):
        self.forward, self.max_posters = forward, max_posters
        self.waiting: queue.SimpleQueue = queue.SimpleQueue()
        self.started = threading.Lock()
        self.thread: threading.Thread | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The forward pass of `images`, computed together with other callers' posters."""
        with self.started:
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="batcher", daemon=True)
                self.thread.start()
        answer: Future = Future()
        self.waiting.put((images, answer))
        return answer.result()

    def run(self) -> None:
        carried = None  # A request that did not fit into the last batch goes first in the next.
        while True:
            batch = [carried or self.waiting.get()]
            carried, posters = None, len(batch[0][0])
            while posters < self.max_posters:
                try:
                    waiting = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if posters + len(waiting[0]) > self.max_posters:
                    carried = waiting
                    break
                batch.append(waiting)
                posters += len(waiting[0])
            try:
                outputs = self.forward(np.concatenate([images for images, _ in batch]))
            except Exception as error:  # noqa: BLE001  Every caller of the batch hears the model's error.
                for _, answer in batch:
                    answer.set_exception(error)
                continue
            ends = np.cumsum([len(images) for images, _ in batch])
            for (_, answer), part in zip(batch, np.split(outputs, ends[:-1]), strict=True):
                answer.set_result(part)
