"""MLflow goes away in the middle of a study: the study goes on, and `autotune sync-mlflow` fills in later.

A real `mlflow server` sits behind a TCP proxy; the proxy is cut while the second trial runs, so the
tuner loses MLflow mid-study (tests/tune covers an MLflow that is down from the start, in-process).
The tracking URI carries a password and the space an HF_TOKEN in the engine env: neither may show up in
MLflow params or tags, the study's CSV, benchmark results, trial logs, or the tuner's output.
One study run (a module fixture) feeds all three tests.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from reliability_net import TcpProxy, mlflow_server
from optuna.trial import FrozenTrial, TrialState
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_study import cli, load_trials, running_trial_with_server, start_cli, wait_for, write_space

from autotune.tracking import EXPERIMENT_NAME, TAG_ROLE, TAG_STUDY, TAG_TRIAL
from autotune.tune import attrs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

URL_PASSWORD = "mlflow-pw-4b1d2c"
HF_TOKEN = "hf_reliabilityTestToken0123456789"
STUDY = "mlflow-outage"
N_TRIALS = 3


@pytest.fixture(scope="module")
def mlflow_behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TcpProxy]]:
    folder = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(folder) as url:
        proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
        proxy.restore()
        try:
            yield url, proxy
        finally:
            proxy.cut()


@dataclass
class OutageStudy:
    tuner_exit: int
    tune_log: str
    study_dir: Path
    trials: list[FrozenTrial]
    unsynced: list[int]
    synced: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    runs: list[Run]
    seconds_from_cut_to_end: float


@pytest.fixture(scope="module")
def outage(mlflow_behind_proxy: tuple[str, TcpProxy], tmp_path_factory: pytest.TempPathFactory) -> OutageStudy:
    direct_url, proxy = mlflow_behind_proxy
    folder = tmp_path_factory.mktemp("outage")
    tracking_uri = f"http://autotune:{URL_PASSWORD}@127.0.0.1:{proxy.port}"
    space = write_space(
        folder / "space.yaml",
        parameters={"max_num_seqs": {"type": "int", "low": 2, "high": 64, "log": True}},
        engine_base={"env": {"HF_TOKEN": HF_TOKEN}},
        load={"num_requests": 16},
        trial={"stop_timeout_s": 2, "warmup_requests": 1},
    )
    experiments = folder / "experiments"
    study_dir = experiments / STUDY
    common = ["--experiments-dir", str(experiments), "--mlflow-uri", tracking_uri]
    tuner = start_cli(["tune", str(space), "--study", STUDY, "--n-trials", str(N_TRIALS), *common], folder / "tune.log")
    try:
        wait_for(
            lambda: running_trial_with_server(load_trials(study_dir, STUDY), number=1, worker_pid=tuner.pid),
            timeout_s=120, what="trial 1 to be serving",
        )
        first = (load_trials(study_dir, STUDY) or [])[0]
        assert first.user_attrs.get(attrs.MLFLOW_SYNCED) is True  # MLflow was up for trial 0
        proxy.cut()
        cut_at = time.monotonic()
        tuner.wait(timeout=240)
        seconds = time.monotonic() - cut_at
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.wait()
    trials = load_trials(study_dir, STUDY) or []
    proxy.restore()
    synced = cli("sync-mlflow", STUDY, *common, timeout_s=120)
    again = cli("sync-mlflow", STUDY, *common, timeout_s=120)
    client = MlflowClient(tracking_uri=direct_url)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_STUDY}` = '{STUDY}'")
    return OutageStudy(
        tuner_exit=tuner.returncode,
        tune_log=(folder / "tune.log").read_text(errors="replace"),
        study_dir=study_dir,
        trials=trials,
        unsynced=sorted(t.number for t in trials if t.user_attrs.get(attrs.MLFLOW_SYNCED) is not True),
        synced=synced,
        again=again,
        runs=list(runs),
        seconds_from_cut_to_end=seconds,
    )


def test_mlflow_lost_mid_study_then_sync_mlflow(outage: OutageStudy) -> None:
    trial_runs = {int(r.data.tags[TAG_TRIAL]): r for r in outage.runs if r.data.tags.get(TAG_ROLE) == "trial"}
    parents = [r for r in outage.runs if r.data.tags.get(TAG_ROLE) == "study"]
    finished = [t for t in outage.trials if t.state.is_finished()]
    missing = sorted({t.number for t in finished} - set(trial_runs))
    incomplete = sorted(
        n for n, r in trial_runs.items()
        if r.info.status not in ("FINISHED", "FAILED")
        or (outage.trials[n].state is TrialState.COMPLETE and not r.data.metrics)
    )
    record_outcome(
        Outcome(
            scenario="MLflow unreachable mid-study, then `autotune sync-mlflow`",
            category="fault",
            tried=len(outage.unsynced),
            unit="trials finished while MLflow was down",
            lost=len(missing) + len(incomplete) + (N_TRIALS - len(finished)),
            lost_meaning="a trial missing from Optuna or, after sync, from MLflow (or logged without its figures)",
            expected="the study finishes; trials stay in Optuna (mlflow_synced false); sync logs each once",
            test=current_test(),
            details={"seconds_from_cut_to_study_end": round(outage.seconds_from_cut_to_end, 1)},
        )
    )
    assert outage.tuner_exit == 0, outage.tune_log[-3000:]
    assert len(finished) == N_TRIALS
    assert outage.unsynced and 0 not in outage.unsynced  # MLflow went away after trial 0 was logged
    assert "the study goes on" in outage.tune_log  # the tuner said so, and went on
    synced, again = outage.synced, outage.again
    assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]
    assert f"logged {len(outage.unsynced)} trial(s)" in synced.stdout, synced.stdout
    assert again.returncode == 0 and "logged 0 trial(s)" in again.stdout, again.stdout  # each trial once
    assert not missing and not incomplete, (missing, incomplete)
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs.values()} == {parents[0].info.run_id}


def _leaks(texts: dict[str, str]) -> list[str]:
    return sorted(
        f"{where}: {secret_name}"
        for where, text in texts.items()
        for secret_name, secret in (("MLflow URI password", URL_PASSWORD), ("HF_TOKEN", HF_TOKEN))
        if secret in text
    )


def test_no_secret_in_mlflow_params_tags_or_study_results(outage: OutageStudy) -> None:
    texts = {"trials.csv": (outage.study_dir / "trials.csv").read_text()}
    for name in ("result.json", "trial.json", "server.log"):
        for path in sorted(outage.study_dir.glob(f"trials/*/{name}")):
            texts[str(path.relative_to(outage.study_dir))] = path.read_text(errors="replace")
    for run in outage.runs:
        texts[f"MLflow run {run.info.run_name} params+tags"] = repr(run.data.params) + repr(run.data.tags)
    leaks = _leaks(texts)
    record_outcome(
        Outcome(
            scenario="Secrets in MLflow params/tags, trials.csv, benchmark results, trial server logs",
            category="security",
            tried=len(texts),
            unit="outputs searched",
            lost=len(leaks),
            lost_meaning="an output holding the MLflow URI password or the HF_TOKEN of the engine env",
            expected="URI password shown as ***; HF_TOKEN masked in MLflow params and in /autotune/config",
            test=current_test(),
        )
    )
    assert len(texts) >= 3 * N_TRIALS + 1
    assert not leaks, leaks


def test_no_secret_in_the_cli_output(outage: OutageStudy) -> None:
    sync_output = outage.synced.stdout + outage.synced.stderr + outage.again.stdout + outage.again.stderr
    leaks = _leaks({"autotune tune output": outage.tune_log, "autotune sync-mlflow output": sync_output})
    record_outcome(
        Outcome(
            scenario="Secrets in the `autotune tune` / `sync-mlflow` output (MLflow URI password, HF_TOKEN)",
            category="security",
            tried=2,
            unit="CLI outputs",
            lost=len(leaks),
            lost_meaning="an output holding the MLflow URI password or the HF_TOKEN",
            expected="both masked",
            test=current_test(),
            details={"leaks": "; ".join(leaks)},
        )
    )
    assert not leaks, leaks
