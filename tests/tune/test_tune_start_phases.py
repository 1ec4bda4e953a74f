"""Start phases and compile-cache use from server logs (vLLM 0.24's lines), through the trial, its table and MLflow."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import pytest
from helpers.servers import MODEL_DIR as MODEL
from helpers.tune import space_from

from autotune.bench.schemas import SLO, BenchResult, LoadSpec, Stats, Summary
from autotune.config import EngineConfig, EngineKind, Provenance
from autotune.space import TrialSettings
from autotune.tracking import default_tracking_uri
from autotune.tune.report import trials_frame
from autotune.tune.start_phases import CompileCache, start_phases
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial import TrialRunner
from autotune.tune.trial_result import TrialOutcome, TrialResult

# Excerpts of recorded logs (experiments/h100-qwen3-vl-4b/2026-11-26c, trials 5 and 3), shortened.
HIT_ONE_ENGINE = """\
2026-11-26 05:49:50,646 INFO autotune.serve: serving model /root/models/qwen3-vl-4b-instruct as 'qwen3-vl-4b' with engine vllm
autotune serve listening on http://127.0.0.1:39369
2026-11-26 05:50:09,847 INFO autotune.serve: starting vLLM: vllm serve /root/models/qwen3-vl-4b-instruct (api key hidden)
INFO 11-26 05:50:13 [api_utils.py:339]        █     █     █▄   ▄█
INFO 11-26 05:50:13 [utils.py:241] Started 4 API server processes
(ApiServer_1 pid=5835) INFO 11-26 05:50:32 [model.py:598] Resolved architecture: Qwen3VLForConditionalGeneration
(EngineCore pid=5833) INFO 11-26 05:50:51 [core.py:114] Initializing a V1 LLM engine (v0.24.0) with config: model='/root/models/qwen3-vl-4b-instruct', speculative_config=None
(EngineCore pid=5833) INFO 11-26 05:51:03 [gpu_model_runner.py:5160] Starting to load model /root/models/qwen3-vl-4b-instruct...
(EngineCore pid=5833) INFO 11-26 05:51:05 [gpu_model_runner.py:5255] Model loading took 8.69 GiB memory and 1.378653 seconds
(EngineCore pid=5833) INFO 11-26 05:51:10 [backends.py:1089] Using cache directory: /root/.cache/vllm/torch_compile_cache/963eb1d0e1/rank_0_0/backbone for vLLM's torch.compile
(EngineCore pid=5833) INFO 11-26 05:51:10 [backends.py:1148] Dynamo bytecode transform time: 3.27 s
(EngineCore pid=5833) INFO 11-26 05:51:12 [backends.py:292] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 1.876 s
(EngineCore pid=5833) INFO 11-26 05:51:12 [decorators.py:311] Directly load AOT compilation from path /root/.cache/vllm/torch_compile_cache/torch_aot_compile/a3a186b942f9/rank_0_0/model
(EngineCore pid=5833) INFO 11-26 05:51:12 [monitor.py:53] torch.compile took 5.54 s in total
(EngineCore pid=5833) Capturing CUDA graphs (decode, FULL):   0%|          | 0/51 [00:00<?, ?it/s]
(EngineCore pid=5833) INFO 11-26 05:51:30 [gpu_model_runner.py:6656] Graph capturing finished in 7 secs, took 0.67 GiB
(EngineCore pid=5833) INFO 11-26 05:51:31 [core.py:337] init engine (profile, create kv cache, warmup model) took 25.30 s (compilation: 5.54 s)
(ApiServer_3 pid=5837) INFO 11-26 05:51:34 [base.py:223] Multi-modal warmup completed in 1.576s
(ApiServer_3 pid=5837) INFO 11-26 05:51:34 [api_server.py:581] Starting vLLM server on http://127.0.0.1:39369
(ApiServer_3 pid=5837) INFO:     Application startup complete.
"""

MISS_TWO_ENGINES = """\
2026-11-26 05:45:54,333 INFO autotune.serve: serving model /root/models/qwen3-vl-4b-instruct as 'qwen3-vl-4b' with engine vllm
2026-11-26 05:46:08,177 INFO autotune.serve: starting vLLM: vllm serve /root/models/qwen3-vl-4b-instruct (api key hidden)
2026-11-26 05:46:10,812 INFO autotune.serve: 2 engine cores per GPU
INFO 11-26 05:46:11 [api_utils.py:339]
(EngineCore_DP1 pid=2126) INFO 11-26 05:47:15 [core.py:114] Initializing a V1 LLM engine (v0.24.0) with config: model='/root/models/qwen3-vl-4b-instruct'
(EngineCore_DP0 pid=2125) INFO 11-26 05:47:15 [core.py:114] Initializing a V1 LLM engine (v0.24.0) with config: model='/root/models/qwen3-vl-4b-instruct'
(Worker pid=2838) INFO 11-26 05:47:41 [gpu_model_runner.py:5160] Starting to load model /root/models/qwen3-vl-4b-instruct...
(Worker pid=2837) INFO 11-26 05:47:42 [gpu_model_runner.py:5160] Starting to load model /root/models/qwen3-vl-4b-instruct...
(Worker pid=2838) INFO 11-26 05:47:44 [gpu_model_runner.py:5255] Model loading took 8.6 GiB memory and 1.227210 seconds
(Worker pid=2837) INFO 11-26 05:47:45 [gpu_model_runner.py:5255] Model loading took 8.6 GiB memory and 1.597693 seconds
(Worker pid=2838) INFO 11-26 05:47:53 [backends.py:1089] Using cache directory: /root/.cache/vllm/torch_compile_cache/d72e3838e7/rank_0_0/backbone for vLLM's torch.compile
(Worker pid=2837) INFO 11-26 05:47:54 [backends.py:1089] Using cache directory: /root/.cache/vllm/torch_compile_cache/d72e3838e7/rank_0_1/backbone for vLLM's torch.compile
(Worker pid=2837) INFO 11-26 05:48:00 [backends.py:378] Cache the graph of compile range (1, 2048) for later use
(Worker pid=2837) INFO 11-26 05:48:11 [backends.py:393] Compiling a graph for compile range (1, 2048) takes 17.17 s
(Worker pid=2838) INFO 11-26 05:48:11 [backends.py:393] Compiling a graph for compile range (1, 2048) takes 18.33 s
(Worker pid=2838) INFO 11-26 05:48:18 [monitor.py:53] torch.compile took 33.82 s in total
(Worker pid=2837) INFO 11-26 05:48:19 [monitor.py:53] torch.compile took 32.82 s in total
(EngineCore_DP1 pid=2126) INFO 11-26 05:48:34 [core.py:337] init engine (profile, create kv cache, warmup model) took 48.61 s (compilation: 32.82 s)
(Worker pid=2838) INFO 11-26 05:48:34 [gpu_model_runner.py:6656] Graph capturing finished in 8 secs, took 2.66 GiB
(EngineCore_DP0 pid=2125) INFO 11-26 05:48:35 [core.py:337] init engine (profile, create kv cache, warmup model) took 50.98 s (compilation: 33.82 s)
(ApiServer_2 pid=2129) INFO 11-26 05:48:54 [api_server.py:581] Starting vLLM server on http://127.0.0.1:41063
"""

HUNG_IN_COMPILE = """\
2026-11-26 05:45:54,333 INFO autotune.serve: serving model /m as 'm' with engine vllm
2026-11-26 05:46:08,177 INFO autotune.serve: starting vLLM: vllm serve /m (api key hidden)
(EngineCore pid=2079) INFO 11-26 05:46:56 [core.py:114] Initializing a V1 LLM engine (v0.24.0) with config: model='/m'
(EngineCore pid=2079) INFO 11-26 05:47:07 [gpu_model_runner.py:5160] Starting to load model /m...
(EngineCore pid=2079) INFO 11-26 05:47:09 [gpu_model_runner.py:5255] Model loading took 8.69 GiB memory and 1.387937 seconds
(EngineCore pid=2079) INFO 11-26 05:47:19 [backends.py:1089] Using cache directory: /root/.cache/vllm/torch_compile_cache/963eb1d0e1/rank_0_0/backbone for vLLM's torch.compile
(EngineCore pid=2079) INFO 11-26 05:47:27 [backends.py:378] Cache the graph of compile range (1, 8192) for later use
"""


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


def test_a_cache_hit_start_splits_into_the_issues_phases() -> None:
    phases = start_phases(
        HIT_ONE_ENGINE, started_at=_at("2026-11-26 05:49:48.500000"), ready_at=_at("2026-11-26 05:51:35.200000")
    )
    assert phases.launcher_s == pytest.approx(21.347)  # process start -> `starting vLLM` (ours)
    assert phases.api_server_s == pytest.approx(41.153)  # -> engine core initializing
    assert (phases.engine_core_s, phases.model_load_s, phases.engine_init_s) == (12.0, 2.0, 26.0)
    assert phases.after_engine_s == pytest.approx(4.2)  # engine ready -> /health answered
    assert phases.total_s == pytest.approx(106.7)
    assert sum(getattr(phases, name) for name in ("launcher_s", "api_server_s", "engine_core_s", "model_load_s",
                                                    "engine_init_s", "after_engine_s")) == pytest.approx(phases.total_s)
    assert (phases.torch_compile_s, phases.cuda_graphs_s, phases.engines) == (5.54, 7.0, 1)
    assert phases.compile_cache is CompileCache.HIT and phases.compile_keys == ["963eb1d0e1"]
    assert phases.metrics()["start_compile_cache_hit"] == 1.0 and phases.metrics()["start_engine_init_s"] == 26.0


def test_two_engines_wait_for_the_last_one_and_a_miss_is_a_miss() -> None:
    phases = start_phases(MISS_TWO_ENGINES)  # no trial clock: the launcher's first line and vLLM's server line
    assert phases.engines == 2 and phases.compile_cache is CompileCache.MISS and phases.compile_keys == ["d72e3838e7"]
    assert phases.model_load_s == 4.0  # first load started 05:47:41, the last engine loaded 05:47:45
    assert phases.engine_init_s == 50.0  # the last engine ready at 05:48:35
    assert phases.torch_compile_s == 33.82  # the longer of the two engines
    assert phases.after_engine_s == 19.0 and phases.total_s == pytest.approx(179.667)
    assert phases.metrics()["start_compile_cache_hit"] == 0.0


def test_a_start_hung_in_compile_keeps_the_phases_it_reached() -> None:
    phases = start_phases(HUNG_IN_COMPILE, started_at=_at("2026-11-26 05:45:52.000000"))
    assert phases.engine_core_s == 11.0 and phases.model_load_s == 2.0
    assert phases.engine_init_s is None and phases.after_engine_s is None and phases.total_s is None
    assert phases.compile_cache is None and phases.compile_keys == ["963eb1d0e1"]  # not compiled yet: neither


def test_a_log_without_vllm_lines_has_only_its_total() -> None:
    simulated = "2026-11-26 10:00:00,100 WARNING autotune.serve: SIMULATED engine\nautotune serve listening on http://x:1\n"
    phases = start_phases(simulated, started_at=_at("2026-11-26 09:59:59.000000"), ready_at=_at("2026-11-26 10:00:01.500000"))
    assert phases.total_s == 2.5 and phases.engines == 0 and phases.compile_cache is None
    assert phases.launcher_s is None and phases.metrics() == {"start_total_s": 2.5}


class LoggingServer:
    """A server stand-in that writes a recorded vLLM start into its log (the log is what the trial reads)."""

    seen_env: dict[str, str] = {}

    def __init__(self, config_path: Path, *, log_path: Path, env: dict[str, str] | None = None, **_: Any) -> None:
        self.base_url, self.pid, self.pgid = "http://127.0.0.1:9", 4242, 4242
        log_path.write_text(HIT_ONE_ENGINE)
        LoggingServer.seen_env = dict(env or {})

    def __enter__(self) -> LoggingServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def alive(self) -> bool:
        return True

    def log_tail(self, lines: int = 50) -> str:
        return "INFO ready"

    def stop(self, timeout_s: float = 30) -> None:
        pass


async def _bench(url: str, workload: Any, load: LoadSpec, slo: SLO, **_: Any) -> BenchResult:
    summary = Summary(completed=load.num_requests or 1, throughput_rps=4.0, goodput_rps=3.0, ttft_ms=Stats(p99=80.0))
    return BenchResult(url=url, workload={}, load=load, slo=slo, simulated=True, summary=summary)


def test_a_vllm_trial_gets_the_shared_compile_cache_and_records_its_start(tmp_path: Path) -> None:
    cache = tmp_path / "vllm-cache"
    runner = TrialRunner(
        study_dir=tmp_path, engine_kind=EngineKind.VLLM, workload={"name": "w"},
        load=LoadSpec(mode="concurrency", concurrency=2, num_requests=4), slo=SLO(ttft_ms=100),
        settings=TrialSettings(warmup_requests=1), server_factory=LoggingServer, benchmark=_bench, compile_cache_root=cache,
    )
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.COMPLETE
    assert LoggingServer.seen_env["VLLM_CACHE_ROOT"] == str(cache) and result.compile_cache_root == str(cache)
    assert result.start_phases is not None and result.start_phases.compile_cache is CompileCache.HIT
    assert result.start_phases.engine_init_s == 26.0
    assert result.start_phases.total_s is not None and result.start_phases.total_s >= 0  # the trial's own clock
    # the engine's own env wins: vLLM's launcher exports it over ours
    runner.run(1, EngineConfig(model=MODEL, env={"VLLM_CACHE_ROOT": "/elsewhere"}), Provenance())
    recorded = TrialResult.model_validate_json((tmp_path / "trials" / "1" / "trial.json").read_text())
    assert recorded.compile_cache_root == "/elsewhere" and recorded.start_phases == result.start_phases.model_copy(
        update={"total_s": recorded.start_phases.total_s, "launcher_s": recorded.start_phases.launcher_s,
                "after_engine_s": recorded.start_phases.after_engine_s})


def test_the_trials_table_and_mlflow_show_each_trials_phases_and_cache_use(tmp_path: Path, quick_space_data: dict) -> None:
    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8]}}
    space = space_from(quick_space_data)
    factory = functools.partial(TrialRunner, server_factory=LoggingServer, benchmark=_bench)
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=2), runner_factory=factory)
    session = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False)
    table = trials_frame(session.study)
    assert list(table["compile_cache"]) == ["hit", "hit"] and set(table["start_engine_init_s"]) == {26.0}
    assert set(table["compile_keys"]) == {"963eb1d0e1"} and table["compile_group"].notna().all()
    mlflow.set_tracking_uri(default_tracking_uri(session.study_dir))
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string="tags.`autotune.role` = 'trial'")
    assert set(runs["tags.compile_cache"]) == {"hit"} and set(runs["tags.compile_keys"]) == {"963eb1d0e1"}
    assert set(runs["metrics.start_torch_compile_s"]) == {5.54} and set(runs["metrics.start_compile_cache_hit"]) == {1.0}
    # `autotune trials` shows the start and the cache use beside the figures
    from typer.testing import CliRunner

    import autotune.cli.tune  # noqa: F401 - registers `trials`
    from autotune.cli.main import app

    shown = CliRunner().invoke(app, ["trials", space.name, "--experiments-dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    header = next(line for line in shown.output.splitlines() if "number" in line)
    assert "start_total_s" in header and "compile_cache" in header and shown.output.count(" hit ") == 2
