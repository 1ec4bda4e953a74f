"""`vllm bench serve` results of several processes read as one measurement (the GPU confirmation's reader)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from autotune.bench.vllm_bench import combine
from autotune.errors import ConfigError


def _write(path: Path, ttfts: list[float], itls: list[list[float]], *, rate: float, failed: int = 0) -> Path:
    path.write_text(json.dumps({
        "duration": 10.0, "completed": len(ttfts), "failed": failed, "request_rate": rate,
        "ttfts": ttfts, "itls": itls, "start_times": [float(i) for i in range(len(ttfts))],
        "errors": [""] * len(ttfts), "generated_texts": [""] * len(ttfts),
    }))
    return path


def test_percentiles_are_taken_over_every_process_request_not_averaged(tmp_path: Path) -> None:
    fast = _write(tmp_path / "a.json", [0.1] * 99, [[0.01, 0.01]] * 99, rate=5.0)
    slow = _write(tmp_path / "b.json", [3.0] * 3, [[0.08, 0.08]] * 3, rate=5.0)
    result = combine([fast, slow], {"ttft_ms": 2000, "tpot_ms": 50})
    all_ttft = [100.0] * 99 + [3000.0] * 3
    assert result.ttft_ms_p99 == pytest.approx(np.percentile(all_ttft, 99))
    assert result.offered_rate_rps == 10.0 and result.completed == 102 and result.processes == 2
    assert not result.meets_slo and any("ttft_ms" in m for m in result.misses) and any("tpot_ms" in m for m in result.misses)


def test_a_clean_run_meets_the_slo_and_failures_never_do(tmp_path: Path) -> None:
    good = _write(tmp_path / "a.json", [0.2] * 50, [[0.02] * 5] * 50, rate=4.0)
    assert combine([good], {"ttft_ms": 2000, "tpot_ms": 50}).meets_slo
    failing = _write(tmp_path / "b.json", [0.2] * 50, [[0.02] * 5] * 50, rate=4.0, failed=2)
    assert not combine([failing], {"ttft_ms": 2000}).meets_slo


def test_a_summary_without_per_request_data_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"duration": 1.0, "completed": 3}))
    with pytest.raises(ConfigError, match="save-detailed"):
        combine([path], {"ttft_ms": 2000})
    with pytest.raises(ConfigError, match="allowed: ttft_ms, tpot_ms"):
        combine([path], {"e2el_ms": 1})


def test_a_recorded_gzip_file_reads_as_the_plain_one(tmp_path: Path) -> None:
    plain = _write(tmp_path / "a.json", [0.1] * 20 + [2.5], [[0.01, 0.03]] * 21, rate=3.0)
    packed = tmp_path / "b.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    slo = {"ttft_ms": 2000.0, "tpot_ms": 50.0}
    assert combine([packed], slo).model_dump(exclude={"files"}) == combine([plain], slo).model_dump(exclude={"files"})
