"""Rendered request bodies on disk, in fixed chunks of request indexes, shared by every run and process.

Request `i` of a synthetic or trace workload is a pure function of (workload, i, model name) (see prepare.py), so
its bytes can be kept: a chunk holds requests `k * CHUNK_REQUESTS .. (k + 1) * CHUNK_REQUESTS - 1` of one
(workload, model) and is named by a hash of both, the chunk's first index, the files the text depends on
(a tokenizer, a trace) and the format version. Windows of any size reuse the chunks they overlap, so the second run
of a seed (a resumed study, the next trial of the tuner, the same `autotune bench` again) renders nothing.

Chunks missing from disk are rendered in parallel by spawned processes (one per core, at most `MAX_RENDER_PROCESSES`)
when there are at least `PARALLEL_MIN_CHUNKS` of them and this machine has `PARALLEL_MIN_CORES` cores: 3,200 vlm-chat
requests cost ~4.2 CPU seconds (a busy 2-core Xeon VM), and each render process ~0.6 s to start; on fewer cores
the processes would only compete with each other (and the server) for the same ones.

Files live under `~/.cache/autotune/bodies` (or `$AUTOTUNE_CACHE_DIR/bodies`); the oldest are removed once
they hold more than `MAX_CACHE_BYTES`. A file is written under a temporary name and renamed, so concurrent
writers leave one complete chunk and a reader never sees half of one. A cache that cannot be written only
costs time. Dataset workloads are not cached here: their bodies are the dataset's own lines, loaded once
per run.

File layout: 8 bytes big-endian header length, a JSON header (one [index, max_tokens, text_tokens, images,
body_bytes] per request), then the bodies back to back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from autotune.bench.images import GENERATOR_VERSION
from autotune.bench.client import PreparedRequest
from autotune.bench.prepare import RENDER_VERSION, make_renderer
from autotune.bench.workload import Workload
from autotune.cache import cache_root

log = logging.getLogger(__name__)

CHUNK_REQUESTS = 256
PARALLEL_MIN_CHUNKS = 3
PARALLEL_MIN_CORES = 4
MAX_RENDER_PROCESSES = 8
MAX_CACHE_BYTES = 4 * 1024**3
FORMAT_VERSION = 1
_HEADER_BYTES = 8

RenderRange = Callable[[int, int], list[PreparedRequest]]
"""render(first_index, count) -> the requests first_index .. first_index + count - 1."""


def body_cache_dir() -> Path:
    return cache_root() / "bodies"


def _file_fingerprint(path: str) -> list[object]:
    """What a rendered body depends on in a file: its resolved path, size and modification time."""
    source = Path(path)
    if source.is_dir():
        source = source / "tokenizer.json"
    try:
        stat = source.stat()
    except OSError:
        return [str(source), None]
    return [str(source.resolve()), stat.st_size, stat.st_mtime_ns]


def workload_key(workload: Workload, model_name: str) -> str:
    """A hash of everything a synthetic request body depends on, except its index."""
    inputs: list[object] = []
    if workload.synthetic is not None and workload.synthetic.tokenizer:
        inputs.append(_file_fingerprint(workload.synthetic.tokenizer))
    if workload.trace is not None:
        inputs.append(_file_fingerprint(workload.trace.path))
        if workload.trace.tokenizer:
            inputs.append(_file_fingerprint(workload.trace.tokenizer))
    document = {
        "format": FORMAT_VERSION,
        "workload": workload.model_dump(mode="json", exclude={"name", "description"}),
        "model": model_name,
        "inputs": inputs,
        "generator": _generator_versions(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]


def _generator_versions() -> dict[str, int]:
    return {"images": GENERATOR_VERSION, "prepare": RENDER_VERSION}


def encode_chunk(requests: Sequence[PreparedRequest]) -> bytes:
    header = json.dumps(
        [[r.index, r.max_tokens, r.text_tokens, r.images, len(r.body)] for r in requests], separators=(",", ":")
    ).encode()
    return b"".join([len(header).to_bytes(_HEADER_BYTES, "big"), header, *(r.body for r in requests)])


def decode_chunk(data: bytes) -> list[PreparedRequest]:
    """The requests of one chunk file; ValueError when it is truncated or malformed."""
    if len(data) < _HEADER_BYTES:
        raise ValueError("truncated chunk")
    size = int.from_bytes(data[:_HEADER_BYTES], "big")
    rows = json.loads(data[_HEADER_BYTES : _HEADER_BYTES + size])
    position = _HEADER_BYTES + size
    requests: list[PreparedRequest] = []
    for index, max_tokens, text_tokens, images, length in rows:
        body = data[position : position + length]
        if len(body) != length:
            raise ValueError("truncated chunk")
        requests.append(PreparedRequest(index=index, body=body, max_tokens=max_tokens, text_tokens=text_tokens, images=images))
        position += length
    if position != len(data):
        raise ValueError("trailing bytes in chunk")
    return requests


def render_chunk(workload_json: str, model_name: str, first: int) -> bytes:
    """One chunk, encoded: what a spawned render process does (a module-level function, so it pickles by name)."""
    renderer = make_renderer(Workload.model_validate_json(workload_json))
    return encode_chunk([renderer.render(index, model_name) for index in range(first, first + CHUNK_REQUESTS)])


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class BodyCache:
    """Bodies of one (workload, model), by chunk; `take(first, count)` renders only the chunks not on disk.

    `parallel`: (workload JSON, model name) for rendering many missing chunks in spawned processes (`render_chunk`);
    None renders every chunk here with `render`.
    """

    def __init__(
        self, key: str, render: RenderRange, folder: Path | None = None, parallel: tuple[str, str] | None = None
    ) -> None:
        self.key = key
        self.render = render
        self.folder = folder or body_cache_dir()
        self.parallel = parallel
        self.rendered_requests = 0
        """Requests rendered by this cache (not read from disk): 0 on a fully cached run."""

    def _path(self, chunk: int) -> Path:
        return self.folder / f"{self.key}-{chunk * CHUNK_REQUESTS}.bin"

    def take(self, first: int, count: int) -> list[PreparedRequest]:
        if count <= 0:
            return []
        last = first + count - 1
        chunks = {chunk: self._read(chunk) for chunk in range(first // CHUNK_REQUESTS, last // CHUNK_REQUESTS + 1)}
        missing = [chunk for chunk, cached in chunks.items() if cached is None]
        parallel = self.parallel and len(missing) >= PARALLEL_MIN_CHUNKS and _cores() >= PARALLEL_MIN_CORES
        rendered = self._render_parallel(missing) if parallel else {}
        wrote = False
        requests: list[PreparedRequest] = []
        for chunk, cached in chunks.items():
            if cached is None:
                cached = rendered.get(chunk) or self.render(chunk * CHUNK_REQUESTS, CHUNK_REQUESTS)
                self.rendered_requests += len(cached)
                wrote = self._write(chunk, cached) or wrote
            requests.extend(r for r in cached if first <= r.index <= last)
        if wrote:
            prune(self.folder, MAX_CACHE_BYTES)
        return requests

    def _render_parallel(self, chunks: list[int]) -> dict[int, list[PreparedRequest]]:
        """Render `chunks` in spawned processes; {} when they cannot run (then they are rendered here)."""
        assert self.parallel is not None
        workload_json, model_name = self.parallel
        workers = max(1, min(len(chunks), _cores(), MAX_RENDER_PROCESSES))
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                encoded = pool.map(render_chunk, [workload_json] * len(chunks), [model_name] * len(chunks),
                                   [chunk * CHUNK_REQUESTS for chunk in chunks])
                return {chunk: decode_chunk(data) for chunk, data in zip(chunks, encoded, strict=True)}
        except (OSError, RuntimeError, BrokenProcessPool) as exc:
            log.warning("body cache: parallel rendering failed (%s: %s); rendering here", type(exc).__name__, exc)
            return {}

    def _read(self, chunk: int) -> list[PreparedRequest] | None:
        path = self._path(chunk)
        try:
            data = path.read_bytes()
            requests = decode_chunk(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("body cache: ignoring unreadable %s (%s)", path, exc)
            return None
        if [r.index for r in requests] != list(range(chunk * CHUNK_REQUESTS, (chunk + 1) * CHUNK_REQUESTS)):
            log.warning("body cache: ignoring %s (its indexes do not match its name)", path)
            return None
        try:
            os.utime(path)  # recently used: pruned last
        except OSError:
            pass
        return requests

    def _write(self, chunk: int, requests: Sequence[PreparedRequest]) -> bool:
        path = self._path(chunk)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(encode_chunk(requests))
            tmp.replace(path)
        except OSError as exc:
            log.warning("body cache: cannot write %s (%s); bodies will be rendered again next time", path, exc)
            return False
        return True


def prune(folder: Path, max_bytes: int) -> None:
    """Remove the least recently used chunk files until the folder holds at most `max_bytes`."""
    try:
        files = [(entry.stat().st_mtime_ns, entry.stat().st_size, entry) for entry in folder.glob("*.bin")]
    except OSError:
        return
    total = sum(size for _, size, _ in files)
    for _, size, entry in sorted(files, key=lambda item: item[0]):
        if total <= max_bytes:
            break
        try:
            entry.unlink()
            total -= size
        except OSError:
            pass
