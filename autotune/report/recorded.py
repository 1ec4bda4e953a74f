"""Recorded experiment files, read the same whether they are stored plain or compressed.

`experiments/` keeps its large files compressed (experiments/README.md): a file written as `X` may be stored
as `X.gz` or `X.xz`, and a folder `D` as the archive `D.tar.xz` beside where it was (members named from `D`'s
parent: `D/...`). Readers name a file as the tools wrote it (`trials/3/server.log`, `study/S/optuna.db`,
`trials/8/stack-profile`) and this module finds its stored form; what it reads is always the uncompressed
content (a `result.json.gz`, written compressed by `autotune bench`, reads as its JSON).
"""

from __future__ import annotations

import gzip
import lzma
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from autotune.errors import ConfigError
from autotune.tune.session import StudySession, reopen_study

DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {".gz": gzip.decompress, ".xz": lzma.decompress}
FOLDER_ARCHIVE = ".tar.xz"


def stored_file(path: Path) -> Path | None:
    """The file holding `path`'s content: `path` itself, else `path.gz` or `path.xz`; None when none is there."""
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in DECOMPRESS)):
        if candidate.is_file():
            return candidate
    return None


def folder_archive(path: Path) -> Path | None:
    """The archive `path.tar.xz` of the folder `path`, when it is stored that way."""
    if not path.name:
        return None
    archive = path.with_name(path.name + FOLDER_ARCHIVE)
    return archive if archive.is_file() else None


@lru_cache(maxsize=64)
def _members(archive: Path) -> frozenset[str]:
    with tarfile.open(archive, "r:xz") as tar:
        return frozenset(name.rstrip("/") for name in tar.getnames())


def exists(path: Path) -> bool:
    """`path` is recorded: a file (plain or compressed), a folder (or its archive), or a member of an archived folder."""
    if stored_file(path) is not None or path.is_dir() or folder_archive(path) is not None:
        return True
    for folder in path.parents:
        if (archive := folder_archive(folder)) is not None:
            return path.relative_to(folder.parent).as_posix() in _members(archive)
    return False


def read_bytes(path: Path) -> bytes:
    """The uncompressed content of the file written as `path`."""
    found = stored_file(path)
    if found is None:
        raise FileNotFoundError(f"{path}: not recorded (nor as {path.name}.gz or {path.name}.xz)")
    data = found.read_bytes()
    return DECOMPRESS[found.suffix](data) if found.suffix in DECOMPRESS else data


def read_text(path: Path, errors: str = "replace") -> str:
    return read_bytes(path).decode(errors=errors)


def glob(folder: Path, pattern: str) -> list[Path]:
    """The files under `folder` matching `pattern` as they were written (a stored `x.log.gz` is `x.log`), sorted."""
    found = set(folder.glob(pattern))
    for suffix in DECOMPRESS:
        found.update(p.with_name(p.name.removesuffix(suffix)) for p in folder.glob(pattern + suffix))
    return sorted(found)


@contextmanager
def folder(path: Path) -> Iterator[Path]:
    """A real folder with `path`'s files: `path` itself, or its archive unpacked into a temporary folder for the
    duration of the `with` block."""
    if path.is_dir():
        yield path
        return
    archive = folder_archive(path)
    if archive is None:
        raise FileNotFoundError(f"{path}: not recorded (no folder, no {path.name}{FOLDER_ARCHIVE})")
    with tempfile.TemporaryDirectory(prefix="autotune-recorded-") as scratch:
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(scratch, filter="data")
        yield Path(scratch) / path.name


@contextmanager
def study(study_dir: Path) -> Iterator[StudySession]:
    """The study recorded in `study_dir` (its `optuna.db`, plain or compressed), opened from a scratch copy for the
    duration of the `with` block: the recorded store is only read. A folder without one is a ConfigError."""
    if stored_file(study_dir / "optuna.db") is None:
        raise ConfigError(f"{study_dir}: no study recorded here (no optuna.db, optuna.db.gz or optuna.db.xz)")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / study_dir.name
        copy.mkdir()
        (copy / "optuna.db").write_bytes(read_bytes(study_dir / "optuna.db"))
        yield reopen_study(study_dir.name, experiments_dir=Path(scratch), mlflow=False)
