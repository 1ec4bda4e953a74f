"""`autotune report STUDY_OR_RUN_DIR --stack-profiles`: the trials' engine-core activity table from their stack
profiles (autotune.report.stack_profiles)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autotune.cli.main import app
from autotune.observe.stacks.activity import ACTIVITIES
from autotune.report.stack_profiles import JSON_NAME, MARKDOWN_NAME, study_folder, write_stack_profiles

CORE = "vllm/v1/engine/core.py"


def _trial(study: Path, number: int, rate: float | None) -> None:
    trial = study / "trials" / str(number)
    trial.mkdir(parents=True)
    trial.joinpath("trial.json").write_text(json.dumps({"summary": {"slo_rate_rps": rate}}))
    if rate is None:
        return  # a trial without a stack profile: no row
    for window, idle in (("phase00-c256", 1), (f"phase01-rate{rate:.2f}", 3)):
        folder = trial / "stack-profile" / window
        folder.mkdir(parents=True)
        folder.joinpath("EngineCore.7.folded").write_text(
            f"# samples 4 hz 25 pid 7 closed\nMainThread;{CORE}:run_busy_loop;{CORE}:_process_input_queue {idle}\n"
            f"MainThread;{CORE}:step;vllm/v1/worker/gpu_model_runner.py:_model_forward {4 - idle}\n"
        )
        folder.joinpath("APIServer_0.8.folded").write_text("# samples 4 hz 25 pid 8 closed\nMainThread;serving.py:create 1\n"
                                                            "MainThread;uvloop/__init__.py:run 3\n")


def test_a_run_folder_gets_the_table_of_its_one_study(tmp_path: Path) -> None:
    study = tmp_path / "study" / "s"
    _trial(study, 1, 30.0)
    _trial(study, 2, None)
    assert study_folder(tmp_path) == study and study_folder(study) == study
    outcome = write_stack_profiles(tmp_path)
    assert outcome.files == [tmp_path / JSON_NAME, tmp_path / MARKDOWN_NAME]
    recorded = json.loads((tmp_path / JSON_NAME).read_text())
    (row,) = recorded["trials"]
    assert row["trial"] == 1 and row["probe_window"] == "phase00-c256" and row["reported_window"] == "phase01-rate30.00"
    assert row["engine_core_reported"]["idle"] == 0.75 and row["engine_core_probe"]["language_model"] == 0.75
    assert row["api_server_reported"]["event_loop_busy"] == 0.25
    lines = outcome.markdown.splitlines()
    assert lines[2] == "| trial | window | " + " | ".join(ACTIVITIES) + " | busiest API server event loop | its preprocessing threads |"
    assert lines[4:] == ["| 1 | phase00-c256 | 25% | 0% | 0% | 0% | 0% | 75% | 0% | 0% | 25% | 0% |",
                         "| 1 | phase01-rate30.00 | 75% | 0% | 0% | 0% | 0% | 25% | 0% | 0% | 25% | 0% |"]


def test_cli_writes_into_output_and_prints_the_table(tmp_path: Path) -> None:
    study = tmp_path / "experiments" / "s"
    _trial(study, 3, 12.5)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "s", "--experiments-dir", str(study.parent), "--stack-profiles", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == (out / MARKDOWN_NAME).read_text() + "\n"
    assert "| 3 | phase01-rate12.50 |" in result.output


def test_a_folder_without_a_study_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--stack-profiles"])
    assert result.exit_code != 0 and "neither a study folder" in str(result.exception)


def test_a_profiled_start_gets_its_own_table_and_never_counts_as_a_measured_window(tmp_path: Path) -> None:
    study = tmp_path / "study" / "s"
    _trial(study, 1, 30.0)
    start = study / "trials" / "1" / "stack-profile" / "start"
    start.mkdir()
    # the API server: 10 s in all, 6 s importing vLLM, 3 s inspecting the model class; its trunk (cli main) left out
    start.joinpath("APIServer.8.folded").write_text(
        "# samples 100 hz 10 pid 8 closed\n"
        "MainThread;cli/main.py:main;<frozen importlib._bootstrap>:_find_and_load 60\n"
        "MainThread;cli/main.py:main;vllm/model_executor/models/registry.py:inspect_model_cls 30\n"
        "MainThread;cli/main.py:main 10\n"
        "autotune-stack-profile;profiler.py:_loop 100\n"
    )
    start.joinpath("EngineCore.9.folded").write_text("# samples 20 hz 10 pid 9 open\nMainThread;core.py:run_engine_core 20\n")
    outcome = write_stack_profiles(tmp_path)
    (row,) = json.loads((tmp_path / JSON_NAME).read_text())["trials"]
    assert row["reported_window"] == "phase01-rate30.00" and row["probe_window"] == "phase00-c256"
    api, core = row["start"]
    assert (api["title"], api["seconds"], api["complete"]) == ("APIServer", 10.0, True)
    assert api["top_frames"] == [{"frame": "<frozen importlib._bootstrap>:_find_and_load", "seconds": 6.0},
                                 {"frame": "vllm/model_executor/models/registry.py:inspect_model_cls", "seconds": 3.0}]
    assert (core["title"], core["seconds"], core["complete"], core["top_frames"]) == ("EngineCore", 2.0, False, [])
    assert ("| 1 | APIServer | 10.0 | <frozen importlib._bootstrap>:_find_and_load 6.0; "
            "vllm/model_executor/models/registry.py:inspect_model_cls 3.0 |") in outcome.markdown
    assert "| 1 | EngineCore (cut: the process died) | 2.0 |  |" in outcome.markdown
