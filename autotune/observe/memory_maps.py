"""Where a process's memory lies, by the kind of mapping that holds it (psutil's grouped memory maps, read from
/proc/PID/smaps).

A soak that sees a vLLM GPU worker grow needs to know what grows: the CUDA driver's pinned host buffers (torch's
caching host allocator takes them with cudaHostAlloc, which is expected to map them through the driver's device
files, /dev/nvidia*; the device soak of 2026-12-07c never had them among a role's three largest kinds, so this is
not yet seen in a record), the C heap (glibc's main
arena `[heap]` and its other arenas, which are anonymous mappings), shared memory (/dev/shm, memfd: vLLM's message
queues) or mapped files (libraries, the model's weights when mmapped). Reading smaps walks every mapping under the
process's memory-map lock (a CUDA process has thousands), so callers read this seldom: once a progress line.
"""

from __future__ import annotations

from typing import Literal

import psutil

MappingKind = Literal["gpu_driver", "heap", "anonymous", "shared_memory", "file", "stack", "other"]

_MIB = 2**20


def mapping_kind(path: str) -> MappingKind:
    """The kind of one mapping from its path in /proc/PID/smaps ('' or '[anon]' for an anonymous one)."""
    if path.startswith("/dev/nvidia"):
        return "gpu_driver"
    if path == "[heap]":
        return "heap"
    if path in ("", "[anon]") or path.startswith("[anon:"):
        return "anonymous"
    if path.startswith(("/dev/shm/", "/memfd:", "/SYSV", "/dev/zero")):
        return "shared_memory"
    if path.startswith("[stack"):
        return "stack"
    if path.startswith("/"):
        return "file"
    return "other"  # [vdso], [vvar], [vsyscall]


def pss_by_mapping_kind(process: psutil.Process) -> dict[MappingKind, float] | None:
    """The process's PSS in MiB by mapping kind (kinds it has none of left out); None where its smaps cannot be read
    (another user's process, a process that has exited, a host without /proc)."""
    try:
        maps = process.memory_maps(grouped=True)
    except (psutil.Error, NotImplementedError, AttributeError):
        return None
    by_kind: dict[MappingKind, float] = {}
    for entry in maps:
        kind = mapping_kind(entry.path)
        by_kind[kind] = by_kind.get(kind, 0.0) + getattr(entry, "pss", entry.rss)
    return {kind: round(value / _MIB, 2) for kind, value in sorted(by_kind.items()) if value > 0}

