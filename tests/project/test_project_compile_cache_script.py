"""scripts/gpu/compile_cache.sh, the device runs' compile-cache carrier, run by bash here (no GPU needed): what it packs
restores to the same files, an archive packed before the change to xz still restores, and one over the size limit
is dropped with a message."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu" / "compile_cache.sh"

pytestmark = pytest.mark.skipif(shutil.which("xz") is None, reason="xz is not installed")


def _bash(commands: str, cwd: Path, cache_root: Path, **env: str) -> str:
    result = subprocess.run(
        ["bash", "-c", f"set -e; source {SCRIPT}; {commands}"], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "VLLM_CACHE_ROOT": str(cache_root), **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fill(cache_root: Path) -> dict[str, bytes]:
    """A cache like vLLM's: a compile key's artifacts (repetitive, as compiled code is), the model infos and Triton's
    kernels."""
    files = {
        "torch_compile_cache/83e6379d22/rank_0_0/backbone/artifact.bin": os.urandom(4096) * 64,
        "torch_compile_cache/torch_aot_compile/a3a1/rank_0_0/model": b"aot" * 1000,
        "modelinfos/qwen3_vl-Qwen3VLForConditionalGeneration.json": b'{"hash": "x"}',
        "triton/4Q2F/_topk_topp_kernel.cubin": b"cubin" * 200,  # Triton's kernel cache (env.sh's TRITON_CACHE_DIR)
    }
    for name, data in files.items():
        (cache_root / name).parent.mkdir(parents=True, exist_ok=True)
        (cache_root / name).write_bytes(data)
    return files


def _contents(cache_root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache_root)): p.read_bytes() for p in cache_root.rglob("*") if p.is_file()}


def test_a_packed_cache_restores_to_the_same_files(tmp_path: Path) -> None:
    packed, restored, checkout = tmp_path / "packed", tmp_path / "restored", tmp_path / "checkout"
    files = _fill(packed)
    (checkout / ".compile-cache").mkdir(parents=True)
    archive = checkout / ".compile-cache" / "compile-cache.tar.xz"
    out = _bash(f"pack_compile_cache {archive}", checkout, packed)
    assert "compile cache packed" in out and archive.stat().st_size < 64 * 4096  # xz finds the repeats gzip cannot
    out = _bash("restore_compile_cache", checkout, restored)
    assert "restored from .compile-cache/compile-cache.tar.xz" in out
    assert _contents(restored) == files


def test_an_archive_packed_before_xz_still_restores(tmp_path: Path) -> None:
    packed, restored, checkout = tmp_path / "packed", tmp_path / "restored", tmp_path / "checkout"
    files = _fill(packed)
    (checkout / ".compile-cache").mkdir(parents=True)
    subprocess.run(["tar", "czf", str(checkout / ".compile-cache" / "compile-cache.tgz"), "torch_compile_cache",
                    "modelinfos"], cwd=packed, check=True)
    out = _bash("restore_compile_cache", checkout, restored)
    before_triton = {name: data for name, data in files.items() if not name.startswith("triton/")}  # not packed then
    assert "restored from .compile-cache/compile-cache.tgz" in out and _contents(restored) == before_triton


def test_nothing_carried_and_an_archive_over_the_limit_are_said(tmp_path: Path) -> None:
    cache_root, checkout = tmp_path / "cache", tmp_path / "checkout"
    checkout.mkdir()
    assert "none carried" in _bash("restore_compile_cache", checkout, cache_root)
    (cache_root / "torch_compile_cache").mkdir(parents=True)
    (cache_root / "torch_compile_cache" / "noise.bin").write_bytes(os.urandom(2 * 1048576))  # incompressible
    archive = tmp_path / "cc.tar.xz"
    out = _bash(f"pack_compile_cache {archive}", checkout, cache_root, COMPILE_CACHE_MAX_MB="1")
    assert "2 MB > 1 MB, not packed" in out and not archive.exists()


def test_tritons_kernels_are_dropped_first_when_the_archive_would_be_too_large(tmp_path: Path) -> None:
    cache_root, checkout = tmp_path / "cache", tmp_path / "checkout"
    checkout.mkdir()
    (cache_root / "torch_compile_cache").mkdir(parents=True)
    (cache_root / "torch_compile_cache" / "key.bin").write_bytes(b"compiled" * 1000)
    (cache_root / "triton").mkdir()
    (cache_root / "triton" / "noise.cubin").write_bytes(os.urandom(2 * 1048576))  # incompressible, over the limit
    archive = tmp_path / "cc.tar.xz"
    out = _bash(f"pack_compile_cache {archive}", checkout, cache_root, COMPILE_CACHE_MAX_MB="1")
    assert "compile cache packed" in out and "triton" not in out.split("(")[1]
    listed = subprocess.run(["tar", "tJf", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "torch_compile_cache/key.bin" in listed and "triton" not in listed
