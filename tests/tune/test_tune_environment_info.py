"""autotune.tune.environment_info: the hardware and versions a result file recorded, gzip'd or not."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from autotune.tune.environment_info import hardware_info, version_info

RECORDED = {"hardware": {"gpus": ["NVIDIA H200"], "cpu_count": 16}, "versions": {"vllm": "0.24.0"}}


@pytest.mark.parametrize("name", ["result.json", "result.json.gz"])
def test_a_result_file_gives_its_recorded_hardware_and_versions(tmp_path: Path, name: str) -> None:
    data = json.dumps(RECORDED).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert hardware_info(path)["gpus"] == ["NVIDIA H200"]
    assert version_info(path)["vllm"] == "0.24.0"


def test_an_unreadable_result_falls_back_to_this_host(tmp_path: Path) -> None:
    path = tmp_path / "result.json.gz"
    path.write_bytes(b"not gzip")
    assert hardware_info(path).keys() == hardware_info(None).keys()
