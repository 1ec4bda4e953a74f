"""Fuzzed input files: tuned configs, search spaces, workloads, datasets and simulator profiles.

Each file starts as a valid one and gets one mutation (a value replaced by any JSON value, a key
deleted, an unknown key added, or the whole text replaced). Loading it either succeeds or raises a
ConfigError (the CLI prints those as one line, exit 2) that names the file and the mutated field;
never another exception, which the CLI would show as a traceback. A few broken files also go through
the real CLI (`serve`, `tune`, `bench`) to check the wiring: exit 2, no traceback.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_fuzz import json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.reliability_record import Outcome, current_test, record_outcome

from autotune.bench.dataset import load_dataset
from autotune.bench.workload import load_workload
from autotune.config import EngineConfig, EngineKind, Provenance, ServingSettings, TunedConfig, load_tuned_config
from autotune.errors import AutotuneError
from autotune.space import load_search_space
from helpers.servers import MODEL_DIR
from serving.engines.profile import SimulatorProfile

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_PER_KIND = 300

PathPart = str | int


@dataclass(frozen=True)
class Mutation:
    kind: str  # replace | delete | add_key | text
    path: tuple[PathPart, ...]
    key: str | None = None  # add_key: the unknown key

    def field_names(self) -> list[str]:
        """Names of which an error must mention one: the added key, else the innermost key of the path
        (for a deletion also the key that held it: an emptied `when` is that mapping's problem)."""
        if self.key is not None:
            return [self.key]
        names = [part for part in self.path if isinstance(part, str)]
        return names[-2:] if self.kind == "delete" else names[-1:]


def _nodes(data: Any, prefix: tuple[PathPart, ...] = ()) -> Iterator[tuple[PathPart, ...]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _nodes(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*prefix, index)
            yield from _nodes(value, (*prefix, index))


def _containers(data: Any, prefix: tuple[PathPart, ...] = ()) -> Iterator[tuple[PathPart, ...]]:
    if isinstance(data, dict):
        yield prefix
        for key, value in data.items():
            yield from _containers(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _containers(value, (*prefix, index))


def _get(data: Any, path: tuple[PathPart, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> tuple[Any, Mutation]:
    data = copy.deepcopy(base)
    kind = draw(st.sampled_from(["replace"] * 6 + ["delete"] * 2 + ["add_key"] * 2 + ["text"]))
    if kind == "text":
        return draw(st.one_of(json_values, st.text(max_size=80))), Mutation("text", ())
    if kind == "add_key":
        path = draw(st.sampled_from(sorted(_containers(data), key=repr)))
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).map(lambda k: "zz_" + k))
        _get(data, path)[key] = draw(json_values)
        return data, Mutation("add_key", path, key)
    path = draw(st.sampled_from(sorted(_nodes(data), key=repr)))
    parent = _get(data, path[:-1])
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return data, Mutation(kind, path)


@dataclass
class FileKind:
    name: str
    scenario: str
    suffix: str
    base: Callable[[Path], dict[str, Any]]
    load: Callable[[Path], object]
    dump: Callable[[Any], str]


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _jsonl(data: Any) -> str:
    return json.dumps(data) + "\n"


def _tuned_base(_: Path) -> dict[str, Any]:
    tuned = TunedConfig(
        engine=EngineKind.SIMULATED,
        engine_config=EngineConfig(
            model=MODEL_DIR, served_model_name="qwen", max_model_len=4096, max_num_seqs=8, max_num_batched_tokens=4096,
            gpu_memory_utilization=0.8, enable_chunked_prefill=False, limit_mm_per_prompt={"image": 2},
            preprocessing_workers=2, mm_processor_cache_gb=0, mm_processor_kwargs={"use_fast": True},
            env={"VLLM_X": "1"},
        ),
        serving=ServingSettings(allowed_image_hosts=["images.example.com"], max_queued_requests=64),
        provenance=Provenance(study="s", trial_number=3, metrics={"throughput_rps": 2.0}),
    )
    return tuned.model_dump(mode="json", exclude_none=True)


def _space_base(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "search_spaces" / "simulated-quick.yaml").read_text())
    data["engine_base"]["model"] = MODEL_DIR
    return data


def _workload_base(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "autotune" / "workloads" / "vlm-chat.yaml").read_text())
    data["synthetic"]["input_tokens"] = {"kind": "uniform", "min": 16, "max": 64}
    data["synthetic"]["images"]["pool_size"] = 4
    return data


def _dataset_base(folder: Path) -> dict[str, Any]:
    (folder / "cat.png").write_bytes(
        bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")
    )
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "cat.png", "detail": "low"}}]},
        ],
        "max_tokens": 32,
    }


def _profile_base(_: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPO / "autotune" / "profiles" / "h100-qwen3-vl-4b.json").read_text())
    return data


KINDS = [
    FileKind("tuned", "Fuzzed tuned-config files (`autotune serve --config`)", ".yaml", _tuned_base, load_tuned_config, _yaml),
    FileKind("space", "Fuzzed search spaces (`autotune tune SPACE.yaml`)", ".yaml", _space_base, load_search_space, _yaml),
    FileKind("workload", "Fuzzed workload files (`--workload FILE`)", ".yaml", _workload_base, load_workload, _yaml),
    FileKind("dataset", "Fuzzed dataset lines (JSONL workloads)", ".jsonl", _dataset_base, load_dataset, _jsonl),
    FileKind("profile", "Fuzzed simulator profiles (`--profile`)", ".json", _profile_base, SimulatorProfile.load, json.dumps),
]


def _problem(kind: FileKind, path: Path, mutation: Mutation, error: BaseException | None) -> str | None:
    """Why this outcome is wrong, or None."""
    if error is None:
        return None
    if not isinstance(error, AutotuneError):
        return f"{kind.name} {mutation}: {type(error).__name__} escaped (a traceback): {error}"
    message = str(error)
    if str(path) not in message and path.name not in message:
        return f"{kind.name} {mutation}: the error does not name the file: {message[:300]}"
    if mutation.kind == "text":
        return None
    names = mutation.field_names()
    if names and not any(name in message for name in names):
        return f"{kind.name} {mutation}: the error names none of {names}: {message[:400]}"
    return None


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_fuzzed_files_fail_with_an_error_naming_the_field(kind: FileKind, tmp_path: Path) -> None:
    base = kind.base(tmp_path)
    kind.load(_write(tmp_path / f"valid{kind.suffix}", kind.dump(base)))  # the base itself is valid
    problems: list[str] = []
    counts = {"tried": 0, "refused": 0, "accepted": 0}
    target = tmp_path / f"fuzzed{kind.suffix}"

    @settings(
        max_examples=EXAMPLES_PER_KIND,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=mutated(base))
    def one_file(case: tuple[Any, Mutation]) -> None:
        data, mutation = case
        _write(target, data if isinstance(data, str) and mutation.kind == "text" else kind.dump(data))
        counts["tried"] += 1
        try:
            kind.load(target)
        except Exception as exc:  # noqa: BLE001 - the property: only AutotuneError may escape
            counts["refused"] += 1
            problem = _problem(kind, target, mutation, exc)
        else:
            counts["accepted"] += 1
            problem = None
        if problem is not None:
            problems.append(problem)

    one_file()
    record_outcome(
        Outcome(
            scenario=kind.scenario,
            category="bad input",
            tried=counts["tried"],
            unit="files",
            lost=len(problems),
            lost_meaning="a traceback, or an error that names neither the file nor the field",
            expected="valid -> loads; invalid -> one ConfigError naming the file and the field",
            test=current_test(),
            details={"refused": counts["refused"], "accepted": counts["accepted"]},
        )
    )
    assert counts["tried"] >= EXAMPLES_PER_KIND * 0.9
    assert not problems, "\n".join(problems[:15])
    assert counts["refused"] > counts["tried"] // 3  # most mutations break the file


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_broken_files_are_one_line_errors_on_the_command_line(tmp_path: Path) -> None:
    tuned = _tuned_base(tmp_path)
    tuned["engine_config"]["kv_cache_dtype"] = {"fp8": True}
    space = _space_base(tmp_path)
    space["parameters"]["max_num_seqs"]["low"] = "many"
    workload = _workload_base(tmp_path)
    workload["synthetic"]["images"]["sizes"] = ["448 by 448"]
    runs = {
        "engine_config.kv_cache_dtype": _cli("serve", "--config", str(_write(tmp_path / "t.yaml", _yaml(tuned)))),
        "parameters.max_num_seqs": _cli(
            "tune", str(_write(tmp_path / "s.yaml", _yaml(space))), "--experiments-dir", str(tmp_path / "exp")
        ),
        "synthetic.images.sizes": _cli(
            "bench", "--url", "http://127.0.0.1:9", "--concurrency", "1",
            "--workload", str(_write(tmp_path / "w.yaml", _yaml(workload))),
        ),
    }
    for field, done in runs.items():
        assert done.returncode == 2, (field, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr and field in done.stderr, done.stderr
    assert not (tmp_path / "exp").exists()  # refused before a study folder was made
