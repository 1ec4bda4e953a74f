"""Which rate the slo_rate objective tries next: a state machine over the verdicts so far (no I/O, no clock).

From a capacity probe C (`from_probe`): rates at `fractions` x C, highest first, until one meets the SLO; when the
highest already does, rates at `above` x C, lowest first, until one misses; then bisection.
From a bracket [low, high] (`from_bracket`, no probe): low is assumed to meet the SLO and high to miss it, and the
bisection starts at once. An end is tried only once the bracket has narrowed onto it (so a right bracket costs no
window of its own). A high end that meets the SLO moves up by twice the bracket's width, a low end that misses moves
down by twice its width (at most halving it), at most MAX_EXPANSIONS times each way: a wide bracket grows as fast as
doubling, and a narrow one (a measurement repeated from a known rate) steps past its end by a few percent instead of
trying twice the rate, which costs a long window on an overloaded server.
From a bracket, a window that fell behind also says how far off the bracket is: its steady throughput T (what the
server completed while its queue grew) estimates the capacity. When no rate has met the SLO yet and T lies more than
the tolerance below the low end, the bracket was set on another host or for another config: the search tries T next
(at most the missed rate less the tolerance), then steps of one tolerance above it until one misses, instead of
stepping down by the bracket's width window after window (on an H100 whose defaults processed ~26 req/s, a
45.92:48.08 bracket spent the rest of its lease stepping down, 120 s a window).
Bisection: the midpoint of the highest passing and the lowest failing rate, until the failing one is within
`tolerance` above the passing one (failing <= (1 + tolerance) x passing), or after `max_bisections` midpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MAX_EXPANSIONS = 4
"""A bracket end that turns out wrong moves (by twice the bracket's width), at most this many times."""

THROUGHPUT_STEPS_UP = 3
"""After a throughput's estimate met the SLO, this many steps of one tolerance above it (below the missed rate): a
window's steady throughput lags its capacity by about the latency over the window (~5% for 5 s over 110 s)."""

_Kind = Literal["listed", "high end", "low end", "midpoint"]


@dataclass(slots=True)
class RateSearch:
    tolerance: float
    max_bisections: int | None = None
    passing: float | None = None
    """The highest rate that met the SLO (or, from a bracket, the low end assumed to)."""
    passing_tried: bool = False
    failing: float | None = None
    """The lowest rate that missed the SLO (or, from a bracket, the high end assumed to)."""
    failing_tried: bool = False
    bisections: int = 0
    expansions_up: int = 0
    expansions_down: int = 0
    _stage: Literal["descend", "ascend", "bisect", "done"] = "bisect"
    _queue: list[float] = field(default_factory=list)
    _above: list[float] = field(default_factory=list)
    _pending: tuple[float, _Kind] | None = None
    _width: float = 0.0
    """A bracket's width as given, doubled at each expansion: how far a wrong end moves."""
    _follows_throughput: bool = False
    """From a bracket: a missed window's throughput far below the low end re-aims the search (a probe measured it)."""

    @classmethod
    def from_probe(
        cls, capacity_rps: float, fractions: list[float], above: list[float], *, tolerance: float,
        max_bisections: int | None = None,
    ) -> RateSearch:
        return cls(
            tolerance=tolerance, max_bisections=max_bisections, _stage="descend",
            _queue=[capacity_rps * f for f in sorted(fractions, reverse=True)],
            _above=[capacity_rps * f for f in sorted(above)],
        )

    @classmethod
    def from_bracket(cls, low_rps: float, high_rps: float, *, tolerance: float, max_bisections: int | None = None) -> RateSearch:
        if not 0 < low_rps < high_rps:
            raise ValueError(f"a bracket needs 0 < low < high (got {low_rps:g}:{high_rps:g})")
        return cls(
            tolerance=tolerance, max_bisections=max_bisections, passing=low_rps, failing=high_rps, _width=high_rps - low_rps,
            _follows_throughput=True,
        )

    @property
    def done(self) -> bool:
        return self._stage == "done"

    @property
    def rate_rps(self) -> float:
        """The highest rate tried that met the SLO; 0 when none did."""
        return self.passing if self.passing is not None and self.passing_tried else 0.0

    @property
    def failed_rps(self) -> float | None:
        """The lowest rate tried that missed the SLO; None when none did."""
        return self.failing if self.failing is not None and self.failing_tried else None

    @property
    def censored(self) -> bool:
        """A rate met the SLO but none tried above it missed it: `rate_rps` is a lower bound."""
        return self.rate_rps > 0 and self.failed_rps is None

    def narrow(self) -> bool:
        return self.passing is not None and self.failing is not None and self.failing <= (1 + self.tolerance) * self.passing

    def next_rate(self) -> float | None:
        """The rate of the next window; None once the search is over."""
        if self._pending is not None:
            return self._pending[0]
        if self._stage in ("descend", "ascend"):
            if self._queue:
                self._pending = (self._queue[0], "listed")
                return self._queue[0]
            self._stage = "bisect"
        if self._stage == "bisect":
            self._pending = self._next_bisection()
            if self._pending is None:
                self._stage = "done"
        return None if self._pending is None else self._pending[0]

    def _next_bisection(self) -> tuple[float, _Kind] | None:
        if self.passing is None or self.failing is None:
            return None
        capped = self.max_bisections is not None and self.bisections >= self.max_bisections
        if self.narrow() or capped:
            if not self.failing_tried:
                return self.failing, "high end"
            if not self.passing_tried:
                return self.passing, "low end"
            return None
        return (self.passing + self.failing) / 2, "midpoint"

    def record(self, rate_rps: float, met: bool, *, behind_throughput_rps: float | None = None) -> None:
        """The verdict of the window at `rate_rps` (the rate `next_rate` returned).

        `behind_throughput_rps`: the window fell behind (its backlog grew) while completing this many requests per
        second in its steady part; a search from a bracket re-aims at it when it lies below the bracket.
        """
        if self._pending is None or self._pending[0] != rate_rps:
            raise ValueError(f"record({rate_rps:g}): the search asked for {self._pending}")
        if not met and behind_throughput_rps and self._aim_at_throughput(rate_rps, behind_throughput_rps):
            return
        _, kind = self._pending
        self._pending = None
        if kind == "listed":
            self._queue.pop(0)
            if met:
                self.passing, self.passing_tried = rate_rps, True
                if self._stage == "descend":  # above it next: the probe's multiples (or T's steps) below any miss
                    self._above = [rate for rate in self._above if self.failing is None or rate < self.failing]
                    self._stage, self._queue = ("ascend", list(self._above)) if self._above else ("bisect", [])
            else:
                self.failing, self.failing_tried = rate_rps, True
                if self._stage == "ascend":
                    self._stage = "bisect"
                elif self._follows_throughput:  # the throughput's estimate missed on its p99s: step down from it
                    self._stage = "bisect"
                    self._step_down(rate_rps)
            return
        if kind == "midpoint":
            self.bisections += 1
            if met:
                self.passing, self.passing_tried = rate_rps, True
            else:
                self.failing, self.failing_tried = rate_rps, True
            return
        if kind == "high end":
            if not met:
                self.failing_tried = True
                return
            self.passing, self.passing_tried = rate_rps, True
            if self.expansions_up >= MAX_EXPANSIONS:
                self.failing, self._stage = None, "done"  # still meeting it: a lower bound
                return
            self.expansions_up += 1
            self.failing, self.failing_tried = rate_rps + 2 * self._width, False
            self._width *= 2
            return
        if met:  # the low end
            self.passing_tried = True
            return
        self.failing, self.failing_tried = rate_rps, True
        self._step_down(rate_rps)

    def _step_down(self, missed_rps: float) -> None:
        """A low end missed: the next one twice the bracket's width below it (at most half of it)."""
        if self.expansions_down >= MAX_EXPANSIONS:
            self.passing, self._stage = None, "done"  # nothing met the SLO
            return
        self.expansions_down += 1
        self.passing, self.passing_tried = max(missed_rps - 2 * self._width, missed_rps / 2), False
        self._width *= 2

    def _aim_at_throughput(self, rate_rps: float, throughput_rps: float) -> bool:
        """A missed window's throughput far below the low end: try it, then steps of one tolerance above it (module
        doc); False when it does not apply."""
        estimate = min(throughput_rps, rate_rps / (1 + self.tolerance))
        low_end = self.passing if self.passing is not None else rate_rps
        far_below = estimate < low_end / (1 + self.tolerance)
        if not (self._follows_throughput and far_below and not self.passing_tried and self.expansions_down < MAX_EXPANSIONS):
            return False
        self.expansions_down += 1
        self._pending = None
        self.failing, self.failing_tried = rate_rps, True
        self.passing, self.passing_tried = None, False
        above = [estimate * (1 + self.tolerance) ** k for k in range(1, THROUGHPUT_STEPS_UP + 1)]
        self._stage, self._queue, self._above = "descend", [estimate], above
        return True

    def stop(self) -> None:
        """End the search where it stands (e.g. the client saturated)."""
        self._stage, self._pending = "done", None
