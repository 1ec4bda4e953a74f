"""Who serves a config when several trials draw it: a config measured before is not served again, and of RUNNING twins
(trials of other workers with the same config hash) one serves and the others defer to it.

A trial claims its config before serving it (`config_claim` attribute, set after its `config_hash`). A config that a
RUNNING trial of another worker serves or may serve is not served twice: the later trial is PRUNED "duplicate of
trial N" (N keeps measuring it; waiting for N would idle a GPU for a whole trial). Who serves: a trial defers to a
twin that has claimed, and to any lower-numbered twin; it claims only once every higher-numbered undecided twin has
decided (they never wait on lower ones, so no two trials wait on each other), or after CLAIM_WAIT_S when such a
twin's worker stalls.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.tune import attrs

CONFIG_CLAIM = "config_claim"  # "serving" | "duplicate": a trial's decision about its config (several workers)
CLAIM_SERVING = "serving"
CLAIM_DUPLICATE = "duplicate"
CLAIM_WAIT_S = 30.0
CLAIM_POLL_S = 0.2


def measured_before(trial: optuna.Trial, digest: str) -> FrozenTrial | None:
    """An earlier finished trial of this study with the same config; trials lost to dead workers don't count."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if other.number == trial.number or other.user_attrs.get(attrs.CONFIG_HASH) != digest:
            continue
        if other.state is TrialState.FAIL and _not_the_configs_fault(other):
            continue
        if other.user_attrs.get(attrs.DUPLICATE_OF) is not None and other.state is not TrialState.COMPLETE:
            continue
        return other
    return None


def claim_config(trial: optuna.Trial, digest: str, *, wait_s: float = CLAIM_WAIT_S) -> int | None:
    """Claim `digest` for this trial: None when it is ours to serve, else the number of the RUNNING twin that serves it.

    Call after the trial's `config_hash` is stored (set, then read: of two racing twins at least one sees the other).
    """
    deadline = time.monotonic() + wait_s
    while True:
        done = measured_before(trial, digest)
        if done is not None:
            return _defer(trial, done.number)
        twins = [
            other
            for other in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if other.number != trial.number and other.user_attrs.get(attrs.CONFIG_HASH) == digest
        ]
        claimed = [t.number for t in twins if t.user_attrs.get(CONFIG_CLAIM) == CLAIM_SERVING]
        if claimed:
            return _defer(trial, min(claimed))
        lower = [t.number for t in twins if t.number < trial.number and t.user_attrs.get(CONFIG_CLAIM) != CLAIM_DUPLICATE]
        if lower:
            return _defer(trial, min(lower))
        undecided = [t for t in twins if t.number > trial.number and CONFIG_CLAIM not in t.user_attrs]
        if not undecided or time.monotonic() >= deadline:
            trial.set_user_attr(CONFIG_CLAIM, CLAIM_SERVING)
            return None
        time.sleep(CLAIM_POLL_S)  # a higher-numbered twin is deciding (it never waits on us): storage poll


def _defer(trial: optuna.Trial, twin: int) -> int:
    trial.set_user_attr(CONFIG_CLAIM, CLAIM_DUPLICATE)  # a lower twin waiting on our decision sees it
    return twin


def _not_the_configs_fault(trial: FrozenTrial) -> bool:
    reason = trial.user_attrs.get(attrs.FAIL_REASON)
    return not reason or attrs.environmental_failure(reason)
