"""Pack a run folder under experiments/ into the form the repository keeps, before it is committed.

    autotune pack FOLDER [FOLDER ...] [--export-store STUDY ...]

FOLDER: a run folder, or parts of one (a run whose `measurements`, `study`, `report` lie in the experiment's top folder).

What it does (experiments/README.md says why; `autotune.report.recorded` reads every packed form):

- removes the MLflow stores and artifact copies (`mlflow.db`, `mlartifacts/`); it stops, naming the file, if an
  artifact has no byte-identical copy elsewhere in its study folder;
- keeps each Optuna store as `optuna.db.xz`, or, for the studies named by `--export-store` (nothing resumes from
  this copy), writes Optuna's `trials_dataframe` as `optuna-trials.csv.gz` and removes the store;
- removes `autotune report`'s HTML where its Markdown is beside it (the same figures, as PNG files);
- removes the per-token gaps (`itl_ms` lists) from the requests of every bench result (the ITL statistics stay in
  each summary and sweep window), rounds their send times to 1 us, and stores it as `.json.gz`;
- keeps each `vllm bench serve --save-detailed` result (`vllm-bench-*.json`) without its generated texts and with its
  per-request times rounded (`ttfts`, `start_times` to 10 us, `itls` to 100 us), as `.json.gz`: the combined verdict
  (`autotune.bench.vllm_bench`) read from the packed file stays within 0.01 ms of the written one;
- keeps each `autotune soak` record (`soak.json`) with its per-request send times rounded to 10 ms and latencies to
  1 ms (its windows, their percentiles and its verdict were computed before, and must come out unchanged), as
  `.json.gz`;
- gzips `*.log`, `stack_profile.json` and `soak.json` (`autotune soak`'s series), a log without the HTTP server's
  access lines of successful responses (`"POST /v1/chat/completions HTTP/1.1" 200 OK`: one a request, 90% of a
  served log's compressed bytes, and nothing the results do not hold), counted in a last line; stores each PNG plot in 256
  colours (a palette image; the plots are lines and flat colours); packs each `stack-profile/` folder as
  `stack-profile.tar.xz`, its folded stacks uncompressed inside so that xz compresses them together.

It is idempotent; `pack_folder` returns the folder's size and file count before and after.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import re
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from autotune.bench.schemas import BenchResult
from autotune.bench.soak import SoakRecord, judge
from autotune.bench.vllm_bench import VllmBenchCombined, VllmBenchFile, combine_results
from autotune.errors import AutotuneError
from autotune.report import recorded

STUDY_EXPORT = "optuna-trials.csv"
EXPORT_ATTRS = ("number", "state", "values", "datetime_start", "datetime_complete", "duration", "params",
                "distributions", "user_attrs", "system_attrs", "intermediate_values")


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)  # no timestamp: the same content packs to the same bytes


def size_and_count(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def drop_mlflow(run: Path) -> None:
    for artifacts in sorted(run.rglob("mlartifacts")):
        study = artifacts.parent
        kept = {hashlib.sha256(p.read_bytes()).hexdigest() for p in study.rglob("*")
                if p.is_file() and artifacts not in p.parents}
        for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
            if hashlib.sha256(path.read_bytes()).hexdigest() not in kept:
                raise AutotuneError(f"{path}: no copy of this MLflow artifact in {study}; move it there first")
        shutil.rmtree(artifacts)
    for store in [*run.rglob("mlflow.db"), *run.rglob("mlflow.db.autotune-lock")]:
        store.unlink()


def export_trials(store: Path) -> bytes:
    """Optuna's trials_dataframe of the one study in `store`, as CSV (read from a copy: Optuna may write)."""
    import optuna

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "optuna.db"
        shutil.copy2(store, copy)
        storage = f"sqlite:///{copy}"
        (name,) = optuna.get_all_study_names(storage)
        frame = optuna.load_study(study_name=name, storage=storage).trials_dataframe(attrs=EXPORT_ATTRS)
    return frame.to_csv(index=False).encode()


def pack_stores(run: Path, export: set[str]) -> None:
    for store in sorted(run.rglob("optuna.db")):
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True):
            pass  # a readable SQLite file, not a half-copied one
        if store.parent.name in export:
            (store.parent / f"{STUDY_EXPORT}.gz").write_bytes(gzip_bytes(export_trials(store)))
        else:
            store.with_name("optuna.db.xz").write_bytes(lzma.compress(store.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
        store.unlink()
    for journal in run.rglob("optuna.db-journal"):
        journal.unlink()


def drop_report_html(run: Path) -> None:
    for html in sorted(run.rglob("report.html")):
        if (html.parent / "report.md").is_file():
            html.unlink()


BENCH_SEND_TIME_DECIMALS = 6  # seconds: 1 us, below the client's own timer and event-loop jitter


def _rounded_send(record: dict[str, Any]) -> dict[str, Any]:
    send = record.get("send_time_s")
    if isinstance(send, float) and send != round(send, BENCH_SEND_TIME_DECIMALS):
        return {**record, "send_time_s": round(send, BENCH_SEND_TIME_DECIMALS)}
    return record


def slim_bench_result(data: dict[str, Any]) -> dict[str, Any] | None:
    """The result without its requests' itl_ms lists and with their send times rounded to 1 us; None when neither
    applies (nothing to rewrite). Refuses a change of any other field, as the schema reads it."""
    requests = data.get("requests") or []
    slim_requests = [_rounded_send({k: v for k, v in r.items() if k != "itl_ms"}) for r in requests]
    if slim_requests == requests:
        return None
    slim = {**data, "requests": slim_requests}
    before, after = BenchResult.model_validate(data), BenchResult.model_validate(slim)
    expected = before.model_copy(update={"requests": [
        r.model_copy(update={"itl_ms": [], "send_time_s": round(r.send_time_s, BENCH_SEND_TIME_DECIMALS)})
        for r in before.requests
    ]})
    if after != expected:
        raise AutotuneError("removing the per-token gaps or rounding the send times changed another field")
    return slim


def store_gzipped(path: Path, raw: bytes, rewritten: bytes | None) -> None:
    """Keep `path` (read as `raw`) as `.gz`: `rewritten` when given, else its own bytes (left as they are when the file
    is gzipped already)."""
    target = path if path.suffix == ".gz" else path.with_name(path.name + ".gz")
    if rewritten is not None:
        target.write_bytes(gzip_bytes(rewritten))
    elif target != path:
        target.write_bytes(gzip_bytes(raw))
    if target != path:
        path.unlink()


def pack_results(run: Path) -> None:
    for path in sorted([*run.rglob("*.json"), *run.rglob("*.json.gz")]):
        if path.name == "stack_profile.json" or not path.is_file():
            continue
        raw = recorded.read_bytes(path)
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("kind") != "autotune-bench-result":
            continue
        stripped = slim_bench_result(data)
        store_gzipped(path, raw, None if stripped is None else json.dumps(stripped, indent=1).encode())


VLLM_BENCH_GLOB = "vllm-bench-*.json*"
# Seconds, per field: 10 us for TTFTs and send times (their percentiles are read as they are); 100 us for the per-token
# gaps, 350x below a decode step (~35 ms), which enter the verdict only as each request's mean of ~128 (TPOT moves
# ~0.001 ms) and are most of the file (rounded to 10 us they left the best config's H100 files at 400 KB, not 240).
VLLM_BENCH_TIME_DECIMALS = {"ttfts": 5, "itls": 4, "start_times": 5}
_VERDICT_SLO = {"ttft_ms": 1.0, "tpot_ms": 1.0}  # any bounds: only the percentiles are compared


def _rounded(value: Any, decimals: int) -> Any:
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, list):
        return [_rounded(v, decimals) for v in value]
    return value


def _percentiles(result: VllmBenchCombined) -> list[float]:
    return [result.ttft_ms_p50, result.ttft_ms_p99, result.tpot_ms_p50, result.tpot_ms_p99]


def slim_vllm_bench(data: dict[str, Any]) -> dict[str, Any]:
    """A vllm bench result without generated texts and with its times rounded; refuses a change of its verdict."""
    slim = {
        k: (_rounded(v, VLLM_BENCH_TIME_DECIMALS[k]) if k in VLLM_BENCH_TIME_DECIMALS else v)
        for k, v in data.items() if k != "generated_texts"
    }
    before = combine_results([VllmBenchFile.model_validate(data)], _VERDICT_SLO)
    after = combine_results([VllmBenchFile.model_validate(slim)], _VERDICT_SLO)
    if any(abs(a - b) > 0.01 for a, b in zip(_percentiles(before), _percentiles(after), strict=True)):
        raise AutotuneError("rounding the vllm bench times moved a percentile by more than 0.01 ms")
    return slim


def pack_vllm_bench(run: Path) -> None:
    for path in sorted(run.rglob(VLLM_BENCH_GLOB)):
        if path.suffix not in (".json", ".gz") or not path.is_file():
            continue
        raw = recorded.read_bytes(path)
        data = json.loads(raw)
        if not isinstance(data, dict) or "itls" not in data:  # e.g. vllm-bench-combined.json: a verdict, kept as is
            continue
        store_gzipped(path, raw, json.dumps(slim_vllm_bench(data), separators=(",", ":")).encode())


SOAK_SEND_DECIMALS = 2  # seconds: 10 ms; the soak's windows (30 s and more) and its scatter plot need no finer
SOAK_PACKED = "per-request send times to 10 ms and latencies to 1 ms by `autotune pack`, after the windows were computed"


def _soak_request(request: list[Any]) -> list[Any]:
    send, ttft, e2el, success = request
    return [round(send, SOAK_SEND_DECIMALS), None if ttft is None else round(ttft),
            None if e2el is None else round(e2el), success]


def slim_soak_record(data: dict[str, Any]) -> dict[str, Any] | None:
    """The soak record with its per-request send times rounded to 10 ms and latencies to 1 ms (its windows, the
    percentiles they hold and its verdict were computed before and stay as written); None when nothing changes.
    Refuses a change of its windows or verdict, as the schema reads them."""
    requests = data.get("requests") or []
    slim_requests = [_soak_request(r) for r in requests]
    if slim_requests == requests:
        return None
    written = {k: v for k, v in data.items() if k != "rounded"}  # a note the first GPU soak's record carried by hand
    slim = {**written, "requests": slim_requests, "packed": SOAK_PACKED}
    before, after = SoakRecord.model_validate(written), SoakRecord.model_validate(slim)
    if after.windows != before.windows or judge(after) != judge(before) or len(after.requests) != len(before.requests):
        raise AutotuneError("rounding the soak's per-request times changed its windows or verdict")
    return slim


def pack_soaks(run: Path) -> None:
    """Each `autotune soak` record with per-request times as `soak.json.gz`, slimmed (`slim_soak_record`)."""
    for path in sorted([*run.rglob("soak.json"), *run.rglob("soak.json.gz")]):
        raw = recorded.read_bytes(path)
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("kind") != "autotune-soak" or not data.get("requests"):
            continue  # gzipped as it is (gzip_files)
        slim = slim_soak_record(data)
        compact = slim is not None or path.suffix != ".gz"  # a plain record is stored compact even when already slim
        store_gzipped(path, raw, json.dumps(slim or data, separators=(",", ":")).encode() if compact else None)


SUCCESS_ACCESS_LINE = re.compile(rb'"[A-Z]+ \S+ HTTP/[\d.]+" 200 OK\s*$')


def without_success_access_lines(log: bytes) -> bytes:
    """A log without its successful-response access lines, and a last line that counts them (unchanged without any)."""
    lines = log.splitlines(keepends=True)
    kept = [line for line in lines if not SUCCESS_ACCESS_LINE.search(line)]
    left_out = len(lines) - len(kept)
    if not left_out:
        return log
    if kept and not kept[-1].endswith(b"\n"):
        kept[-1] += b"\n"
    return b"".join(kept) + f"[autotune pack: {left_out} access line(s) of 200 responses left out]\n".encode()


def gzip_files(run: Path) -> None:
    for path in sorted([*run.rglob("*.log"), *run.rglob("stack_profile.json"), *run.rglob("soak.json")]):
        data = path.read_bytes()
        if path.suffix == ".log":
            data = without_success_access_lines(data)
        path.with_name(path.name + ".gz").write_bytes(gzip_bytes(data))
        path.unlink()


def quantize_plots(run: Path) -> None:
    """Each PNG as a 256-colour palette image (about a third of the bytes of the RGBA one matplotlib writes)."""
    from PIL import Image

    for path in sorted(run.rglob("*.png")):
        with Image.open(path) as image:
            if image.mode == "P":
                continue  # already a palette image
            palette = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        palette.save(path, optimize=True)


def _tar_entry(name: str, data: bytes | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = len(data), 0o644
    return info


def archive_profiles(run: Path) -> None:
    for folder in sorted(run.rglob("stack-profile")):
        if not folder.is_dir():
            continue
        archive = folder.with_name(folder.name + recorded.FOLDER_ARCHIVE)
        with lzma.open(archive, "wb", preset=9) as xz, tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tar_entry(folder.name, None))
            for path in sorted(folder.rglob("*")):
                name = path.relative_to(folder.parent).as_posix()
                if path.is_dir():
                    tar.addfile(_tar_entry(name, None))
                    continue
                data = recorded.read_bytes(path)  # a .folded.gz goes in as its .folded
                name = name.removesuffix(".gz") if path.suffix == ".gz" else name
                tar.addfile(_tar_entry(name, data), io.BytesIO(data))
        shutil.rmtree(folder)


def pack_folder(folder: Path, export: set[str]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pack one run folder in place; its (bytes, files) before and after. `export`: the studies whose Optuna
    store nothing resumes from (their trials are exported and the store dropped)."""
    before = size_and_count(folder)
    drop_mlflow(folder)
    pack_stores(folder, export)
    drop_report_html(folder)
    pack_results(folder)
    pack_vllm_bench(folder)
    pack_soaks(folder)
    gzip_files(folder)
    quantize_plots(folder)
    archive_profiles(folder)
    return before, size_and_count(folder)
