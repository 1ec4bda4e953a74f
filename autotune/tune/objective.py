"""The Optuna objective over a SearchSpace: suggest -> dedup -> TrialRunner -> values, constraints, attributes.

Outcomes follow Optuna's rules: an invalid or infeasible config raises `optuna.TrialPruned` (PRUNED,
with `prune_reason`), a trial whose server or benchmark failed raises `TrialFailed` (FAIL, with
`fail_reason`; the study catches it and goes on), a measured trial returns its objective values and
sets its constraints (`trial.set_constraint`, value <= 0 is feasible). A config already measured in this
study (same canonical hash) is not served again: the stored values are told.

Several workers: a trial claims its config before serving it (autotune.tune.claims); what a trial records is
in autotune.tune.record.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.bench.schemas import Summary
from autotune.config import EngineConfig, EngineKind, Provenance
from autotune.space import InvalidTrialConfig, SearchSpace, config_hash, screening_load
from autotune.tracking import MlflowTracker
from autotune.tune import attrs
from autotune.tune.claims import claim_config, measured_before
from autotune.tune.compile_order import compile_group
from autotune.tune.fidelity import SCREENING_STEP, Screening, screening_record
from autotune.tune.guide import enqueue_guided_trials, guided_config
from autotune.tune.metrics import summary_metrics
from autotune.tune.pruning import prune_reason
from autotune.tune.recovery import worker_identity
from autotune.tune.record import TrialFailed, constraint_violations, finish, objective_values, record_result
from autotune.tune.stops import StudyStopped
from autotune.tune.trial import TrialRunner
from autotune.tune.trial_result import ServerHandle, TrialOutcome, TrialResult

log = logging.getLogger(__name__)


class TuneDisplay(Protocol):
    """What a live view learns while a trial runs (the finished trial comes through Optuna's callbacks)."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...
    def phase(self, number: int, name: str) -> None: ...


class TuneObjective:
    """Callable for `study.optimize`; one instance per worker process."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        runner: TrialRunner,
        engine_kind: EngineKind,
        study_name: str,
        tracker: MlflowTracker | None = None,
        study_tags: dict[str, str] | None = None,
        display: TuneDisplay | None = None,
    ) -> None:
        self.space = space
        self.runner = runner
        self.engine_kind = engine_kind
        self.study_name = study_name
        self.tracker = tracker
        self.study_tags = study_tags or {}
        self.display = display
        self._worker = worker_identity()
        self._current: optuna.Trial | None = None
        self.stopped: StudyStopped | None = None  # what stopped the study (storage gone, folder full), if anything
        runner.observer = self  # the runner reports its server here, so it lands in the trial's attributes

    # -- TrialObserver ----------------------------------------------------------------------------

    def server_started(self, number: int, server: ServerHandle) -> None:
        if self._current is not None and self._current.number == number:
            self._current.set_user_attr(attrs.SERVER_PID, server.pid)
            self._current.set_user_attr(attrs.SERVER_PGID, server.pgid)
            self._current.set_user_attr(attrs.SERVER_URL, server.base_url)
        if self.display is not None:
            self.display.phase(number, "serving")

    def phase(self, number: int, name: str) -> None:
        if self.display is not None:
            self.display.phase(number, name)

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        self._current = trial
        try:
            for key, value in self._worker.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr(attrs.ENGINE, self.engine_kind.value)
            trial.set_user_attr(attrs.SIMULATED, self.engine_kind is EngineKind.SIMULATED)
            kind = trial.user_attrs.get(attrs.CONFIG_KIND, attrs.SAMPLED)
            trial.set_user_attr(attrs.CONFIG_KIND, kind)
            try:
                engine = self._engine_for(trial, kind)
            except InvalidTrialConfig as exc:
                self._finish(trial, TrialOutcome.REJECTED, str(exc))
                raise optuna.TrialPruned(str(exc)) from None
            trial.set_user_attr(attrs.ENGINE_CONFIG, engine.model_dump(mode="json"))
            trial.set_user_attr(attrs.CONFIG_HASH, config_hash(engine))
            trial.set_user_attr(attrs.COMPILE_GROUP, compile_group(engine))
            if self.display is not None:
                self.display.trial_started(trial.number, dict(trial.params))
            previous = measured_before(trial, config_hash(engine)) if kind != attrs.REPEAT else None
            if previous is not None:
                return self._reuse(trial, previous)
            serving_twin = claim_config(trial, config_hash(engine)) if kind != attrs.REPEAT else None  # repeats: on purpose
            if serving_twin is not None:
                previous = measured_before(trial, config_hash(engine))  # the twin may have finished meanwhile
                if previous is not None:
                    return self._reuse(trial, previous)
                reason = f"duplicate of trial {serving_twin} (same config, running in another worker)"
                trial.set_user_attr(attrs.DUPLICATE_OF, serving_twin)
                self._finish(trial, TrialOutcome.REJECTED, reason)
                raise optuna.TrialPruned(reason)
            screening = self._screening(trial, kind)
            provenance = self._provenance(trial.number)
            if screening is None:
                result = self.runner.run(trial.number, engine, provenance)
            else:
                result = self.runner.run(trial.number, engine, provenance, screening=screening)
            return self._record(trial, result)
        except KeyboardInterrupt as exc:
            trial.set_user_attr(attrs.FAIL_REASON, attrs.interrupted_reason(exc))
            partial = self.runner.interrupted
            if partial is not None and partial.number == trial.number:
                record_result(trial, partial)  # its timings and start phases: what it cost until the interrupt
            raise
        except StudyStopped as exc:
            self.stopped = exc
            # Not the config's fault. Often unrecordable (the storage is what failed): then the resume fails the
            # trial as "worker died", which is not the config's fault either.
            with contextlib.suppress(Exception):
                trial.set_user_attr(attrs.FAIL_REASON, f"{attrs.STUDY_STOPPED}: {exc}"[:500])
            raise

    def _screening(self, trial: optuna.Trial, kind: str) -> Screening | None:
        """The short measurement before the full one (the space's `fidelity`); repeats are measured in full only.

        The gate reports the screening value to Optuna and asks its pruner; vLLM's defaults report theirs (a reference
        for later trials) but are never pruned."""
        fidelity = self.space.fidelity
        if fidelity is None or kind == attrs.REPEAT:
            return None
        [metric] = self.space.objective.metric_names()
        prunable = kind != attrs.VLLM_DEFAULTS

        def gate(summary: Summary) -> str | None:
            figures = summary_metrics(summary)
            value = figures.get(metric)
            trial.set_user_attr(attrs.SCREENING, screening_record(metric, value, figures))
            if value is None:  # the objective's metric was not measured: nothing to judge by, measure in full
                return None
            trial.report(float(value), SCREENING_STEP)
            if not prunable or not trial.should_prune():
                return None
            return prune_reason(trial.study, fidelity.pruner, metric, float(value))

        return Screening(load=screening_load(self.runner.load, fidelity), gate=gate,
                         full_from_screening=fidelity.full_from_screening)

    def _engine_for(self, trial: optuna.Trial, kind: str) -> EngineConfig:
        if kind == attrs.REPEAT:  # the original's config again: its kind's way, its params (fixed at enqueue)
            number = int(trial.user_attrs[attrs.REPEAT_OF])
            original = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == number)
            engine = self._engine_for(trial, original.user_attrs.get(attrs.CONFIG_KIND, attrs.SAMPLED))
            if config_hash(engine) != original.user_attrs.get(attrs.CONFIG_HASH):
                raise InvalidTrialConfig(f"repeat of trial {original.number}: the config is no longer the same")
            return engine
        if kind == attrs.VLLM_DEFAULTS:
            return self.space.defaults_config()
        if kind == attrs.GUIDED:
            return guided_config(self.space, trial.user_attrs.get(attrs.GUIDED_OVERRIDES) or {})
        return self.space.suggest(trial)

    # -- outcomes ---------------------------------------------------------------------------------

    def _record(self, trial: optuna.Trial, result: TrialResult) -> float | Sequence[float]:
        metrics = record_result(trial, result)
        if result.state in (TrialOutcome.REJECTED, TrialOutcome.PRUNED):
            self._finish(trial, result.state, result.reason or result.state.value)
            raise optuna.TrialPruned(result.reason)
        if result.state is TrialOutcome.FAILED:
            self._finish(trial, result.state, result.reason or "failed")
            raise TrialFailed(result.reason or "failed")
        try:
            values = objective_values(self.space, metrics)
        except TrialFailed as exc:
            self._finish(trial, TrialOutcome.FAILED, str(exc))
            raise
        for key, violation in constraint_violations(self.space, metrics).items():
            trial.set_constraint(key, violation)
        self._finish(trial, TrialOutcome.COMPLETE, None)
        if trial.user_attrs.get(attrs.CONFIG_KIND) == attrs.VLLM_DEFAULTS:
            enqueue_guided_trials(trial.study, self.space, metrics)  # what the defaults' profile says to try next
        return values[0] if len(values) == 1 else values

    def _reuse(self, trial: optuna.Trial, previous: FrozenTrial) -> float | Sequence[float]:
        trial.set_user_attr(attrs.DUPLICATE_OF, previous.number)
        for key in (attrs.METRICS, attrs.GPM_STATUS, attrs.RESULT_PATH, attrs.SIMULATED):
            if key in previous.user_attrs:
                trial.set_user_attr(key, previous.user_attrs[key])
        if previous.state is TrialState.PRUNED:
            reason = f"same config as trial {previous.number}: {previous.user_attrs.get(attrs.PRUNE_REASON)}"
            self._finish(trial, TrialOutcome.REJECTED, reason)
            raise optuna.TrialPruned(reason)
        if previous.state is TrialState.FAIL:
            reason = f"same config as trial {previous.number}: {previous.user_attrs.get(attrs.FAIL_REASON)}"
            self._finish(trial, TrialOutcome.FAILED, reason)
            raise TrialFailed(reason)
        metrics = previous.user_attrs.get(attrs.METRICS) or {}
        for key, violation in constraint_violations(self.space, metrics).items():
            trial.set_constraint(key, violation)
        log.info("trial %d: same config as trial %d, its values are reused", trial.number, previous.number)
        self._finish(trial, TrialOutcome.COMPLETE, None)
        assert previous.values is not None
        return previous.values[0] if len(previous.values) == 1 else list(previous.values)

    def _finish(self, trial: optuna.Trial, outcome: TrialOutcome, reason: str | None) -> None:
        finish(trial, outcome, reason, tracker=self.tracker, study_tags=self.study_tags)

    def _provenance(self, number: int) -> Provenance:
        return Provenance(
            study=self.study_name,
            trial_number=number,
            engine=self.engine_kind,
            simulated=self.engine_kind is EngineKind.SIMULATED,
            workload={"name": self.space.workload},
            load=self.space.load.model_dump(mode="json", exclude_none=True),
            notes="trial config (not a tuned result)",
        )
