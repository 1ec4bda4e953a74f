"""Helpers of the tuning tests: the shipped quick space, and a fake trial runner (no servers).

A module with its own name (not `conftest`): several test folders have a conftest.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from autotune.bench.schemas import Stats, Summary
from autotune.config import EngineConfig, EngineKind, Provenance
from autotune.space import SearchSpace, config_hash, parse_search_space
from autotune.tune.trial_result import TrialOutcome, TrialResult, TrialTimings

REPO = Path(__file__).resolve().parents[2]
QUICK_SPACE = REPO / "search_spaces" / "simulated-quick.yaml"


def quick_space_mapping() -> dict[str, Any]:
    """search_spaces/simulated-quick.yaml as a mapping (tests derive variants from it)."""
    return copy.deepcopy(yaml.safe_load(QUICK_SPACE.read_text()))


def space_from(data: dict[str, Any]) -> SearchSpace:
    return parse_search_space(data, base_dir=QUICK_SPACE.parent)


class FakeRunner:
    """A TrialRunner stand-in: figures are a pure function of the config; no process is started.

    max_num_seqs drives throughput; gpu_memory_utilization < 0.2 is rejected; an env FAKE_FAIL fails.
    """

    calls: list[EngineConfig] = []

    def __init__(self, *, study_dir: Path, engine_kind: EngineKind, **_: Any) -> None:
        self.study_dir = study_dir
        self.engine_kind = engine_kind
        self.observer: Any = None
        self.interrupted: TrialResult | None = None  # as TrialRunner's: the trial an interrupt stopped
        FakeRunner.calls = []

    def run(self, number: int, engine: EngineConfig, provenance: Provenance) -> TrialResult:
        FakeRunner.calls.append(engine)
        folder = self.study_dir / "trials" / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        result = TrialResult(
            number=number, state=TrialOutcome.COMPLETE, engine=self.engine_kind, simulated=True,
            config_hash=config_hash(engine), trial_dir=str(folder), timings=TrialTimings(total_s=0.01),
        )
        if (engine.gpu_memory_utilization or 0.9) < 0.2:
            result.state, result.reason = TrialOutcome.REJECTED, "infeasible: weights exceed memory"
            return result
        if engine.env.get("FAKE_FAIL"):
            result.state, result.reason = TrialOutcome.FAILED, f"server crashed at start: {engine.env['FAKE_FAIL']}"
            return result
        seqs = engine.max_num_seqs or 4
        throughput = 2.0 + min(seqs, 16) / 4.0
        latency = 100.0 + 10.0 * seqs
        result.summary = Summary(
            completed=16, duration_s=16 / throughput, throughput_rps=throughput, goodput_rps=throughput * 0.9,
            output_tok_s=throughput * 128, ttft_ms=Stats(p50=latency / 2, p99=latency), tpot_ms=Stats(p99=5.0),
            e2el_ms=Stats(p99=latency * 5),
        )
        return result
