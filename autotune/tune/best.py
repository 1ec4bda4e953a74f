"""Choose the winner of a study and write it as `best.yaml`, a TunedConfig `autotune serve --config` loads.

One objective: the feasible config (constraints met) with the highest objective, averaged over its measurements
when it was measured more than once (`--confirm` repeats); its first trial stands for it. Two objectives (pareto): among the
feasible Pareto front, the highest throughput whose p99 latencies meet the SLO (every SLO field set is
compared with the trial's p99 of that latency); when no front trial meets the SLO, the highest
throughput on the front, and the provenance notes say so. Trial 0 (vLLM's defaults) gives the baseline.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.bench.schemas import SLO
from autotune.config import EngineConfig, EngineKind, ObjectiveRecord, Provenance, TunedConfig
from autotune.space import SearchSpace
from autotune.tune import attrs
from autotune.tune.environment_info import hardware_info, version_info


def is_feasible(trial: FrozenTrial) -> bool:
    """Every constraint met (Optuna's convention: a value <= 0)."""
    return all(value <= 0.0 for value in trial.constraints.values())


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with values whose constraints are all met."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in complete if t.values is not None and is_feasible(t)]


def meets_slo(metrics: dict[str, Any], slo: SLO) -> bool:
    for name in ("ttft_ms", "tpot_ms", "e2el_ms"):
        limit = getattr(slo, name)
        value = metrics.get(f"{name}_p99")
        if limit is not None and (value is None or value > limit):
            return False
    return True


def select_best(study: optuna.Study, space: SearchSpace) -> tuple[FrozenTrial | None, str]:
    """The winning trial (None when no feasible trial completed) and how it was chosen."""
    feasible = feasible_trials(study)
    if not feasible:
        return None, "no feasible trial completed"
    if space.objective.kind != "pareto":
        groups = measurements_by_config(feasible) or {"all": sorted(feasible, key=lambda t: t.number)}
        name = space.objective.metric_names()[0]
        best_group = max(groups.values(), key=lambda ts: (mean_value(ts), -ts[0].number))
        if any(len(ts) > 1 for ts in groups.values()):
            return best_group[0], f"highest mean {name} over each config's measurements among feasible configs"
        return best_group[0], f"highest {name} among feasible trials"
    front = [t for t in study.best_trials if is_feasible(t)] or feasible
    within = [t for t in front if meets_slo(t.user_attrs.get(attrs.METRICS) or {}, space.slo)]
    pool = within or front
    best = max(pool, key=lambda t: (t.values[0], -t.number))
    if within:
        return best, "highest throughput on the Pareto front meeting the SLO (p99)"
    return best, "no Pareto-front trial meets the SLO: highest throughput on the front"


def measurements_by_config(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    """Trials that measured a config, grouped by its hash, each group in trial order (reused duplicates left out:
    they copied another trial's values and measured nothing)."""
    groups: dict[str, list[FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.user_attrs.get(attrs.DUPLICATE_OF) is not None:
            continue
        groups.setdefault(str(trial.user_attrs.get(attrs.CONFIG_HASH, f"trial-{trial.number}")), []).append(trial)
    return groups


def mean_value(trials: list[FrozenTrial]) -> float:
    return sum(t.values[0] for t in trials) / len(trials)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """Trial 0: the first COMPLETE trial of vLLM's defaults."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(attrs.CONFIG_KIND) == attrs.VLLM_DEFAULTS:
            return trial
    return None


def build_best_config(
    study: optuna.Study, space: SearchSpace, engine_kind: EngineKind
) -> TunedConfig | None:
    best, how = select_best(study, space)
    if best is None:
        return None
    engine = EngineConfig.model_validate(best.user_attrs[attrs.ENGINE_CONFIG])
    baseline = baseline_trial(study)
    simulated = engine_kind is EngineKind.SIMULATED or bool(best.user_attrs.get(attrs.SIMULATED))
    objectives = [
        ObjectiveRecord(name=name, direction=direction, value=value)
        for name, direction, value in zip(
            space.objective.metric_names(), space.objective.directions(), best.values or [], strict=False
        )
    ]
    notes = [f"best: {how}"]
    if baseline is None:
        notes.append("no vLLM-defaults trial completed: no baseline")
    if simulated:
        notes.append("SIMULATED engine: these figures are not GPU measurements")
    provenance = Provenance(
        study=study.study_name,
        trial_number=best.number,
        engine=engine_kind,
        simulated=simulated,
        objectives=objectives,
        metrics=dict(best.user_attrs.get(attrs.METRICS) or {}),
        baseline_metrics=dict(baseline.user_attrs.get(attrs.METRICS) or {}) if baseline is not None else {},
        workload={"name": space.workload},
        load=space.load.model_dump(mode="json", exclude_none=True),
        hardware=hardware_info(best.user_attrs.get(attrs.RESULT_PATH)),
        versions=version_info(best.user_attrs.get(attrs.RESULT_PATH)),
        notes="; ".join(notes),
    )
    return TunedConfig(engine=engine_kind, engine_config=engine, provenance=provenance)
