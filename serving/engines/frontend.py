"""The simulated API frontends (pure, virtual time): where a real H100 server goes CPU-bound.

Each of `api_server_count` frontends has one event loop (`Lane`: request parsing, chat template,
detokenizing and streaming every output token) and `preprocessing_workers` workers (`WorkerPool`:
image preprocessing), plus its own multimodal processor cache (`ImageCache`). Resources are
reserved in virtual time: `book(now, cost)` returns when the work would start and be done.

A request cancelled before its admission (the client gave up: a window's cut drain, an overloaded window's backlog)
gives back the work that had not started (`Admission.release`), as in vLLM, whose chat route is cancelled when the
client disconnects (`with_cancellation`), and with it the preprocessing still queued. Without it an overloaded window
left the frontends booked for seconds after its requests were gone, and the next window queued behind work nobody
waited for: one config measured 40.8 req/s after three overloaded windows, and 55.4 on the same path with the
give-back (`experiments/trial-cost/2026-12-07-simulated-fast-vs-old/`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass

from serving.engines.base import ImageInput
from serving.engines.cost_model import CostModel


class Lane:
    """One serial resource (a frontend's event loop)."""

    __slots__ = ("busy_until",)

    def __init__(self) -> None:
        self.busy_until = 0.0

    def reserve(self, now: float, cost_s: float) -> float:
        return self.book(now, cost_s)[1]

    def book(self, now: float, cost_s: float) -> tuple[float, float]:
        """(start, done) of `cost_s` of work queued behind what is booked."""
        start = now if now > self.busy_until else self.busy_until
        self.busy_until = start + cost_s
        return start, self.busy_until

    def release(self, start: float, done: float, now: float) -> None:
        """Give back a booking that has not started by `now` (the work after it moves up)."""
        if start >= now:
            self.busy_until = max(now, self.busy_until - (done - start))


class WorkerPool:
    """`size` parallel workers; each job goes to the worker that frees up first."""

    def __init__(self, size: int) -> None:
        self._free_at = [0.0] * size

    def book(self, now: float, cost_s: float) -> tuple[float, float]:
        start = max(now, heapq.heappop(self._free_at))
        done = start + cost_s
        heapq.heappush(self._free_at, done)
        return start, done

    def release(self, start: float, done: float, now: float) -> None:
        """Give back a booking that has not started by `now`: the busiest worker frees up that much earlier (which
        worker held it is not kept; earlier releases have moved every booking after them)."""
        if start < now:
            return
        worker = max(range(len(self._free_at)), key=self._free_at.__getitem__)
        self._free_at[worker] = max(now, self._free_at[worker] - (done - start))
        heapq.heapify(self._free_at)


@dataclass(slots=True)
class Admission:
    """When a request is parsed and its images preprocessed, and the bookings that got it there."""

    done: float
    bookings: list[tuple[Lane | WorkerPool, float, float]]

    def release(self, now: float) -> None:
        """The request was cancelled at `now`: give back the bookings that had not started."""
        for resource, start, done in reversed(self.bookings):
            resource.release(start, done, now)


class ImageCache:
    """LRU by bytes (vLLM's multimodal processor cache); capacity 0 disables it."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[str, int] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()
        self.used_bytes = 0

    def lookup(self, key: str, size_bytes: int) -> bool:
        """True on a hit; a miss inserts the entry (evicting the least recently used)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return True
        self.misses += 1
        if 0 < size_bytes <= self.capacity_bytes:
            self._entries[key] = size_bytes
            self.used_bytes += size_bytes
            while self.used_bytes > self.capacity_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.used_bytes -= evicted
        return False


@dataclass(slots=True)
class Frontend:
    lane: Lane
    workers: WorkerPool
    cache: ImageCache


class Frontends:
    """Round-robin over the simulated API servers."""

    def __init__(self, cost: CostModel) -> None:
        settings = cost.settings
        self.cost = cost
        self.frontends = [
            Frontend(Lane(), WorkerPool(settings.preprocessing_workers), ImageCache(cost.image_cache_bytes))
            for _ in range(settings.api_server_count)
        ]
        self._next = itertools.cycle(self.frontends)

    def pick(self) -> Frontend:
        return next(self._next)

    @property
    def image_cache_enabled(self) -> bool:
        return self.cost.image_cache_bytes > 0

    def image_cache_counts(self) -> tuple[int, int]:
        """(images looked up, of which hits) over every frontend's cache, as vLLM's mm_cache_queries/hits."""
        caches = [frontend.cache for frontend in self.frontends]
        return sum(c.hits + c.misses for c in caches), sum(c.hits for c in caches)

    def reset_image_caches(self) -> None:
        for frontend in self.frontends:
            frontend.cache.clear()

    def admit(self, frontend: Frontend, now: float, images: tuple[ImageInput, ...]) -> float:
        """Virtual time at which the request has been parsed and its images preprocessed."""
        return self.admission(frontend, now, images).done

    def admission(self, frontend: Frontend, now: float, images: tuple[ImageInput, ...]) -> Admission:
        """`admit`, with the bookings a cancelled request gives back (`Admission.release`)."""
        start, done = frontend.lane.book(now, self.cost.request_s)
        bookings: list[tuple[Lane | WorkerPool, float, float]] = [(frontend.lane, start, done)]
        for image in images:
            if frontend.cache.lookup(image.content_hash, self.cost.image_cache_entry_bytes(image.pixels)):
                cost_s = self.cost.image_cache_hit_s
            else:
                cost_s = self.cost.image_preprocess_s(image.pixels)
            start, done = frontend.workers.book(done, cost_s)
            bookings.append((frontend.workers, start, done))
        return Admission(done, bookings)

    def deliver_token(self, frontend: Frontend, now: float) -> float:
        """Virtual time at which a generated token has been detokenized and sent."""
        return frontend.lane.reserve(now, self.cost.streamed_token_s)
