"""Model folders shipped packed: a file `NAME.xz` in a model folder stands for `NAME`, unpacked on first use.

The project ships the Qwen3-VL-4B skeleton (`search_spaces/models/qwen3-vl-4b-instruct`) with its 18.7 MB
`tokenizer.json` as `tokenizer.json.xz` (1.9 MB). Whatever reads a model folder's files (vLLM, the simulated
engine's token counter, the load generator's exact-length prompts) asks `usable_model_dir` for the folder to
read: the folder itself when nothing in it is packed, otherwise a folder in the cache
(`$AUTOTUNE_CACHE_DIR/models` or `~/.cache/autotune/models`) holding every file of it, unpacked. Its name
carries a digest of the folder's files, so an edited skeleton gets a new one; it is built in a temporary
folder and renamed into place, so processes starting together never read a half-written file.

Configs keep the path as written (a best.yaml names the project's folder, not this machine's cache).
A model that is not a local folder (a hub id) is returned unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import shutil
import tempfile
from pathlib import Path

from autotune.cache import cache_root

PACKED_SUFFIX = ".xz"
_DIGEST_CHARS = 16


def packed_files(folder: Path) -> list[Path]:
    """The `NAME.xz` files of a folder whose `NAME` is not beside them."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{PACKED_SUFFIX}") if p.is_file() and not (folder / p.stem).exists())


def usable_model_dir(model: str | Path) -> str:
    """The folder to read `model`'s files from (see the module doc); `model` itself when nothing is packed."""
    folder = Path(model).expanduser()
    if not packed_files(folder):
        return str(model)
    stat = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()]
    return str(_unpacked_copy(folder.resolve(), tuple(stat), str(cache_root())))


@functools.cache
def _unpacked_copy(folder: Path, stat: tuple[tuple[str, int, int], ...], root: str) -> Path:
    """Cached per process on the folder's file list, sizes and times (`stat`) and the cache root."""
    del stat  # part of the cache key only
    files = sorted(p for p in folder.iterdir() if p.is_file())
    target = Path(root) / "models" / f"{folder.name}-{_digest(files)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for path in files:
            if path.suffix == PACKED_SUFFIX and not (folder / path.stem).exists():
                with lzma.open(path) as source, open(building / path.stem, "wb") as sink:
                    shutil.copyfileobj(source, sink, length=1 << 20)
            else:
                shutil.copyfile(path, building / path.name)
        building.chmod(0o755)
        try:
            building.rename(target)
        except OSError:
            if not target.is_dir():  # not another process having finished first: a real failure
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:_DIGEST_CHARS]
