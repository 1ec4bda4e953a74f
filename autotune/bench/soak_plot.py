"""The soak's figure (matplotlib Agg, PNG): latencies, server memory and open file descriptors over the run."""

from __future__ import annotations

from pathlib import Path

from autotune.bench.soak import SoakRecord


_NAN = float("nan")


def memory_series(record: SoakRecord) -> list[tuple[str, list[float], dict[str, object]]]:
    """The memory panel's lines, (label, values per sample, line style): the server's RSS and PSS, its PSS (else RSS)
    by vLLM process role when there are several roles, and the GPU's used memory, each only where it was sampled."""
    samples = record.samples
    lines: list[tuple[str, list[float], dict[str, object]]] = []
    if any(s.rss_mib is not None for s in samples):
        lines.append(("server RSS (process tree)", [_NAN if s.rss_mib is None else s.rss_mib for s in samples], {"color": "tab:green"}))
    has_pss = any(s.pss_mib is not None for s in samples)
    if has_pss:
        lines.append(("server PSS (shared pages once)", [_NAN if s.pss_mib is None else s.pss_mib for s in samples], {"color": "tab:olive"}))
    measure = "PSS" if has_pss else "RSS"  # by role: what the verdict judges
    by_role = [(s.pss_by_role_mib if has_pss else s.rss_by_role_mib) or {} for s in samples]
    roles = sorted({role for sample in by_role for role in sample})
    if len(roles) > 1:  # a single role is the tree total again
        for role in roles:
            values = [sample.get(role, _NAN) for sample in by_role]
            lines.append((f"{measure} of {role} processes", values, {"linestyle": "--", "linewidth": 1}))
    if any(s.gpu_memory_used_mib is not None for s in samples):
        values = [_NAN if s.gpu_memory_used_mib is None else s.gpu_memory_used_mib for s in samples]
        lines.append(("GPU memory used", values, {"color": "tab:purple"}))
    return lines


def plot_soak(record: SoakRecord, path: Path) -> Path:
    """Three panels sharing the time axis (seconds since the load started): per-request E2E latency with each
    window's p99 TTFT and E2E latency; the server's RSS (by vLLM process role too, and GPU memory, when sampled);
    its open descriptors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = record.settings
    fig, (latency, memory, fds) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    if settings.settle_s > 0:  # the settling span: recorded, not judged
        for axis in (latency, memory, fds):
            axis.axvspan(0, settings.settle_s, color="tab:gray", alpha=0.12,
                         label="settling (not judged)" if axis is memory else None)
    ok = [(t, e2el) for t, _, e2el, success in record.requests if success and e2el is not None]
    failed = [t for t, _, _, success in record.requests if not success]
    if ok:
        latency.scatter([t for t, _ in ok], [e for _, e in ok], s=3, alpha=0.25, color="tab:gray", label="E2E latency (each request)")
    for name, label, color in (("e2el_p99_ms", "p99 E2E latency", "tab:blue"), ("ttft_p99_ms", "p99 TTFT", "tab:orange")):
        xs: list[float] = []
        ys: list[float] = []
        for window in record.windows:
            value = getattr(window, name)
            if value is not None:
                xs += [window.start_s, window.end_s]
                ys += [value, value]
        if xs:
            latency.plot(xs, ys, color=color, linewidth=2, label=f"{label} per {settings.window_s:g} s window")
    if failed:
        latency.scatter(failed, [0] * len(failed), marker="x", color="tab:red", label=f"failed ({len(failed)})")
    latency.set_ylabel("ms")
    latency.legend(loc="upper left", fontsize=8)
    latency.grid(alpha=0.3)

    times = [s.t_s for s in record.samples]
    for label, values, style in memory_series(record):
        memory.plot(times, values, label=label, **style)
    memory.set_ylabel("MiB")
    memory.legend(loc="upper left", fontsize=8)
    memory.grid(alpha=0.3)

    open_fds = [s.open_fds for s in record.samples]
    if any(v is not None for v in open_fds):
        fds.plot(times, [_NAN if v is None else v for v in open_fds], color="tab:brown", label="open file descriptors")
        fds.legend(loc="upper left", fontsize=8)
    fds.set_ylabel("descriptors")
    fds.set_xlabel("seconds since the load started (negative: warm-up)")
    fds.grid(alpha=0.3)

    engine = "SIMULATED engine" if record.simulated else "real engine"
    verdict = "held every bound" if not record.problems else f"{len(record.problems)} bound(s) broken"
    fig.suptitle(
        f"Soak: {settings.rate_rps:g} req/s for {settings.duration_s:g} s, {Path(settings.workload).stem}, {engine}\n"
        f"{record.sent} requests, {record.failed} failed; {verdict}",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
