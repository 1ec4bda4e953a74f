"""A soak's memory series rebuilt from its progress lines, for a run cut off before it wrote its record.

`autotune soak` prints a progress line at least once a minute (autotune.bench.soak.progress_line): the server's RSS
and PSS, each vLLM process role's PSS, open descriptors, processes, GPU memory, and each role's largest mapping kinds.
A soak whose machine is taken back before the end leaves only those lines (its requests live in the client processes
until the run ends), so this module reads them back into `ResourceSample`s, tabulates them and plots them:

    samples = read_progress(Path("soak.log").read_text())
    print(progress_table(samples))
    plot_progress(samples, Path("memory.png"), settle_s=300)
    windows = read_windows(Path("soak.log").read_text())  # the windows told as they closed (autotune.bench.soak_live)
    print(windows_table(windows), latency_verdict(windows))

What the lines do not carry stays missing: per-request records, the samples between two lines, all but each role's
three largest mapping kinds, and the last window (told only in the record; soaks before 2026-12-07c told none).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast, get_args

from autotune.bench.soak import ResourceSample, SoakBounds
from autotune.bench.soak_live import parse_window_line
from autotune.bench.soak_windows import SoakWindow
from autotune.observe.cpu import ROLES, Role
from autotune.observe.memory_maps import MappingKind

_MAPPING_KINDS: tuple[str, ...] = get_args(MappingKind)
_LINE = re.compile(r"^soak: (?P<t>\d+(?:\.\d+)?) s in: (?P<body>.*)$")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_RSS = re.compile(rf"server RSS {_NUMBER} MiB(?: \((?P<roles>[^)]*)\))?")
_PSS = re.compile(rf"PSS {_NUMBER} MiB(?: \((?P<roles>[^)]*)\))?")
_FDS = re.compile(r"(\d+) open fds")
_PROCESSES = re.compile(r"(\d+) processes")
_GPU = re.compile(rf"GPU memory {_NUMBER} MiB")
_MAPPINGS = re.compile(r"^(?P<role>\w+) by mapping: (?P<kinds>.*)$")


def _pairs(text: str, allowed: tuple[str, ...]) -> dict[str, float]:
    """'api_server 12.5, heap 3.0' -> {name: value}, keeping the names in `allowed`."""
    pairs: dict[str, float] = {}
    for part in text.split(", "):
        name, _, value = part.strip().rpartition(" ")
        if name in allowed:
            pairs[name] = float(value)
    return pairs


def parse_progress_line(line: str) -> ResourceSample | None:
    """The sample a progress line shows (t_s: its seconds since the soak began), or None for any other line."""
    match = _LINE.match(line.strip())
    if match is None:
        return None
    main, *mapping_parts = match["body"].split("; ")
    rss, pss = _RSS.search(main), _PSS.search(main)
    by_role = (pss or rss)["roles"] if (pss or rss) is not None else None
    roles = cast(dict[Role, float], _pairs(by_role, ROLES)) if by_role else None
    by_mapping: dict[Role, dict[MappingKind, float]] = {}
    for part in mapping_parts:
        if (mapping := _MAPPINGS.match(part)) is not None and mapping["role"] in ROLES:
            by_mapping[cast(Role, mapping["role"])] = cast(dict[MappingKind, float], _pairs(mapping["kinds"], _MAPPING_KINDS))
    fds, processes, gpu = _FDS.search(main), _PROCESSES.search(main), _GPU.search(main)
    return ResourceSample(
        t_s=float(match["t"]),
        rss_mib=float(rss.group(1)) if rss else None,
        rss_by_role_mib=roles if pss is None else None,
        pss_mib=float(pss.group(1)) if pss else None,
        pss_by_role_mib=roles if pss is not None else None,
        pss_by_role_and_mapping_mib=by_mapping or None,
        open_fds=int(fds.group(1)) if fds else None,
        processes=int(processes.group(1)) if processes else None,
        gpu_memory_used_mib=float(gpu.group(1)) if gpu else None,
    )


def read_progress(text: str) -> list[ResourceSample]:
    """Every progress line's sample, in the order printed (other lines are skipped)."""
    return [sample for line in text.splitlines() if (sample := parse_progress_line(line)) is not None]


def read_windows(text: str) -> list[SoakWindow]:
    """Every window line's window (latencies and errors, without memory), in the order told."""
    return [window for line in text.splitlines() if (window := parse_window_line(line)) is not None]


def windows_table(windows: list[SoakWindow]) -> str:
    """A markdown table of the windows told: span, sent, failed, p99 TTFT and E2E latency."""
    rows = ["| window (s) | sent | failed | p99 TTFT (ms) | p99 E2E (ms) |", "|---|---:|---:|---:|---:|"]
    for window in windows:
        rows.append(f"| {window.start_s:g}-{window.end_s:g}{' (settling)' if window.settling else ''} | {window.sent:,} | "
                    f"{window.failed:,} | {_cell_ms(window.ttft_p99_ms)} | {_cell_ms(window.e2el_p99_ms)} |")
    return "\n".join(rows)


def latency_verdict(windows: list[SoakWindow], bounds: SoakBounds | None = None) -> str:
    """The soak's latency and error bounds over the windows told (the first judged one against the last told), in
    words; '' with fewer than two judged windows."""
    bounds = bounds or SoakBounds()
    judged = [window for window in windows if not window.settling]
    if len(judged) < 2:
        return ""
    first, last = judged[0], judged[-1]
    failed = sum(window.failed for window in windows)
    parts = [f"{failed} failed of {sum(window.sent for window in windows):,} in the windows told"]
    for name, label in (("ttft_p99_ms", "p99 TTFT"), ("e2el_p99_ms", "p99 E2E")):
        before, after = getattr(first, name), getattr(last, name)
        if before is None or after is None:
            parts.append(f"{label}: no successful request in the first or the last window told")
            continue
        limit = bounds.p99_limit_ms(before)
        parts.append(f"{label} {before:,.1f} -> {after:,.1f} ms (bound {limit:,.0f} ms: {'held' if after <= limit else 'broken'})")
    return (f"windows {first.start_s:g}-{first.end_s:g} s to {last.start_s:g}-{last.end_s:g} s: " + "; ".join(parts))


def _cell_ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _memory(sample: ResourceSample) -> tuple[float | None, dict[Role, float]]:
    """(tree total, by role): PSS where the line had it, else RSS (`ResourceSample.memory_mib`, roles never None)."""
    total, by_role = sample.memory_mib()
    return total, by_role or {}


def grown_most(samples: list[ResourceSample]) -> Role | None:
    """The role whose memory grew most from the first sample to the last (None without roles in both)."""
    if len(samples) < 2:
        return None
    first, last = _memory(samples[0])[1], _memory(samples[-1])[1]
    common = [role for role in last if role in first]
    return max(common, key=lambda role: last[role] - first[role]) if common else None


def _kinds_of(samples: list[ResourceSample], role: Role) -> list[MappingKind]:
    """The mapping kinds of `role` that every sample with mappings shows (a kind that left the top three is dropped)."""
    shown = [s.pss_by_role_and_mapping_mib[role] for s in samples
             if s.pss_by_role_and_mapping_mib and role in s.pss_by_role_and_mapping_mib]
    if not shown:
        return []
    common = set(shown[0]).intersection(*shown[1:])
    return sorted(common, key=lambda kind: -shown[-1][kind])


def growth_since(samples: list[ResourceSample], since_s: float) -> str:
    """'from 302 to 962 s: PSS +379 MiB (gpu_worker +328, ...), of which gpu_worker heap mappings +327 MiB; last 120 s
    +22 MiB': the change from the first sample at or after `since_s` to the last ('' with fewer than two)."""
    after = [s for s in samples if s.t_s >= since_s]
    if len(after) < 2:
        return ""
    first, last = after[0], after[-1]
    measure = "PSS" if last.pss_mib is not None else "RSS"
    (total_0, roles_0), (total_1, roles_1) = _memory(first), _memory(last)
    if total_0 is None or total_1 is None:
        return ""
    roles = sorted(roles_1, key=lambda role: -(roles_1[role] - roles_0.get(role, roles_1[role])))
    by_role = ", ".join(f"{role} {roles_1[role] - roles_0[role]:+.0f}" for role in roles if role in roles_0)
    text = f"from {first.t_s:g} to {last.t_s:g} s: {measure} {total_1 - total_0:+.0f} MiB ({by_role})"
    grown = grown_most(after)
    if grown is not None:
        kinds_0 = (first.pss_by_role_and_mapping_mib or {}).get(grown, {})
        kinds_1 = (last.pss_by_role_and_mapping_mib or {}).get(grown, {})
        common = [kind for kind in kinds_1 if kind in kinds_0]
        if common:
            kind = max(common, key=lambda name: kinds_1[name] - kinds_0[name])
            text += f", of which {grown} {kind} mappings {kinds_1[kind] - kinds_0[kind]:+.0f} MiB"
    previous = after[-3] if len(after) >= 3 else first
    total_p = _memory(previous)[0]
    if total_p is not None and previous is not first:
        text += f"; the last {last.t_s - previous.t_s:g} s {total_1 - total_p:+.0f} MiB"
    return text


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def progress_table(samples: list[ResourceSample]) -> str:
    """A markdown table, one row a sample: seconds in, the tree's memory (PSS, else RSS) and each role's, the mapping
    kinds of the role that grew most, open fds, GPU memory (MiB)."""
    if not samples:
        return "(no progress line)"
    measure = "PSS" if samples[0].pss_mib is not None else "RSS"
    roles = [role for role in ROLES if any(role in _memory(s)[1] for s in samples)]
    grown = grown_most(samples)
    kinds = _kinds_of(samples, grown) if grown is not None else []
    header = ["s in", f"{measure} total", *(f"{role}" for role in roles), *(f"{grown} {kind}" for kind in kinds),
              "open fds", "GPU memory"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for sample in samples:
        total, by_role = _memory(sample)
        mapped = (sample.pss_by_role_and_mapping_mib or {}).get(grown, {}) if grown is not None else {}
        cells = [f"{sample.t_s:g}", _cell(total), *(_cell(by_role.get(role)) for role in roles),
                 *(_cell(mapped.get(kind)) for kind in kinds),
                 "" if sample.open_fds is None else str(sample.open_fds), _cell(sample.gpu_memory_used_mib)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_progress(samples: list[ResourceSample], path: Path, *, settle_s: float = 0.0, title: str = "") -> Path:
    """Three panels over seconds since the soak began: the tree's memory and each role's; the mapping kinds of the role
    that grew most; the change of each after `settle_s` (a span shaded in all three)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s.t_s for s in samples]
    measure = "PSS" if samples and samples[0].pss_mib is not None else "RSS"
    fig, (memory, kinds_axis, growth) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    memory.plot(times, [_memory(s)[0] for s in samples], marker=".", label=f"server {measure} (process tree)")
    for role in ROLES:
        values = [_memory(s)[1].get(role) for s in samples]
        if any(value is not None for value in values):
            memory.plot(times, [float("nan") if v is None else v for v in values], marker=".", linestyle="--", label=role)
    grown = grown_most(samples)
    for kind in _kinds_of(samples, grown) if grown is not None else []:
        values = [(s.pss_by_role_and_mapping_mib or {}).get(grown, {}).get(kind) for s in samples]  # type: ignore[arg-type]
        kinds_axis.plot(times, [float("nan") if v is None else v for v in values], marker=".", label=f"{grown}: {kind} mappings")
    judged = [s for s in samples if s.t_s >= settle_s]
    if len(judged) >= 2:  # the judged span's growth, which the whole-run scale above flattens
        base_total, base_roles = _memory(judged[0])
        if base_total is not None:
            growth.plot([s.t_s for s in judged], [(_memory(s)[0] or float("nan")) - base_total for s in judged],
                        marker=".", label=f"server {measure}")
        for role in ROLES:
            if role in base_roles:
                growth.plot([s.t_s for s in judged], [_memory(s)[1].get(role, float("nan")) - base_roles[role] for s in judged],
                            marker=".", linestyle="--", label=role)
        growth.set_title(f"{measure} change since {judged[0].t_s:g} s (the first line after settling)")
    for axis in (memory, kinds_axis, growth):
        if settle_s > 0:
            axis.axvspan(0, settle_s, color="tab:gray", alpha=0.12, label="settling (not judged)")
        axis.set_ylabel("MiB")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    memory.set_title(title or f"server memory ({measure}) from the soak's progress lines")
    kinds_axis.set_title(f"{measure} of the role that grew most, by mapping kind" if grown else "no mapping kinds")
    growth.set_xlabel("seconds since the soak began")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
