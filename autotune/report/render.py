"""Report documents: Markdown (PNG files beside it) and self-contained HTML (PNGs as base64)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from autotune.observe.gpm import GPM_UNAVAILABLE, NVML_BUSY_LABEL, SM_ACTIVE_LABEL, gpm_shown
from autotune.observe.names import NVML_BUSY_METRIC, SM_ACTIVE_METRIC
from autotune.observe.stacks.activity import ACTIVITIES
from autotune.report.data import ReportData, TrialRun
from autotune.report.figures import Figure
from autotune.tune.report import gpm_unavailable, metric_label

SIMULATED_BANNER = "SIMULATED engine — not GPU measurements"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _summary_lines(data: ReportData) -> list[str]:
    counts = ", ".join(f"{state} {n}" for state, n in sorted(data.counts.items()))
    lines = [
        f"Engine: {data.engine.value}{' (SIMULATED)' if data.simulated else ''}; workload: {data.workload}; "
        f"objective: {data.objective} ({', '.join(data.objective_names)})",
        f"Trials: {data.n_trials} ({counts})",
    ]
    if data.best is not None:
        lines.append(f"Best: trial {data.best.number} ({data.best_how})")
    else:
        lines.append(f"Best: none ({data.best_how})")
    if data.default is None:
        lines.append("No vLLM-defaults trial completed: no baseline")
    lines += [_gpu_activity_line(run) for run in (data.default, data.best) if run is not None and NVML_BUSY_METRIC in run.metrics]
    return lines


def _gpu_activity_line(run: TrialRun) -> str:
    """Both GPU readings of a trial, labeled: NVML's busy flag and the SMs' activity (GPM), or why there is none."""
    busy = f"{NVML_BUSY_LABEL} {_num(run.metrics[NVML_BUSY_METRIC])}% (share of time any kernel ran)"
    sm_active = run.metrics.get(SM_ACTIVE_METRIC)
    sm_text = f"{SM_ACTIVE_LABEL} {_num(sm_active)}% (share of SMs busy)" if sm_active is not None else gpm_shown(run.gpm_status)
    return f"GPU activity, {run.label} (trial {run.number}): {busy}; {sm_text}"


def _bound(value: float | None, lower_bound: bool) -> str:
    return ("≥ " if lower_bound else "") + _num(value)


def _cell(metric: str, value: float | None, lower_bound: bool, run: TrialRun | None) -> str:
    if value is None and run is not None and gpm_unavailable(metric, run.metrics):
        return GPM_UNAVAILABLE
    return _bound(value, lower_bound)


def _comparison_rows(data: ReportData) -> list[list[str]]:
    return [
        [metric_label(row.metric), row.better, _cell(row.metric, row.default, row.default_lower_bound, data.default),
         _cell(row.metric, row.best, row.best_lower_bound, data.best), _ratio(row.ratio)]
        for row in data.comparison
    ]


COMPARISON_HEADER = ["metric", "better", "default (trial 0)", "best", "best / default"]


CONFIRM_HEADER = ["config", "trials", "measurements", "mean", "range"]


def _confirmation_rows(data: ReportData) -> list[list[str]]:
    c = data.confirmation
    if c is None:
        return []
    return [
        [label, ", ".join(map(str, m.trials)), ", ".join(_num(v) for v in m.values), _num(m.mean), f"{_num(m.low)}-{_num(m.high)}"]
        for label, m in (("best", c.best), ("vLLM defaults", c.defaults))
    ]


STACK_TITLE = "Where the server's time went (stack profile, reported window)"
STACK_NOTE = ("Share of the model runner thread's samples (the engine core's, or its Worker process's) per activity, and the busiest API server's event loop and "
              "preprocessing threads (busy share); from --stack-profile-hz.")


def _stack_header(data: ReportData) -> list[str]:
    return ["trial", "kind", data.objective_names[0], *ACTIVITIES, "API event loop", "API preprocessing"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _stack_rows(data: ReportData) -> list[list[str]]:
    return [
        [str(r.number), r.kind, _num(r.objective), *(_pct(r.engine_core.get(a)) for a in ACTIVITIES),
         _pct(r.api_event_loop_busy), _pct(r.api_preprocessing_busy)]
        for r in data.stack_rows
    ]


def _best_params(data: ReportData) -> list[list[str]]:
    return [[name, str(value)] for name, value in sorted((data.best.params if data.best else {}).items())]


def to_markdown(data: ReportData, figures: Sequence[Figure], image_names: dict[str, str]) -> str:
    out: list[str] = [f"# Study {data.study}", ""]
    if data.simulated:
        out += [f"> **{SIMULATED_BANNER}**", ""]
    out += [f"- {line}" for line in _summary_lines(data)] + [""]

    def table(header: list[str], rows: list[list[str]]) -> None:
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
        out.append("")

    out += ["## vLLM defaults vs best", ""]
    table(COMPARISON_HEADER, _comparison_rows(data))
    if data.best is not None and data.best.params:
        out += [f"Best trial {data.best.number} parameters:", ""]
        table(["parameter", "value"], _best_params(data))
    if data.confirmation is not None:
        out += [f"## Repeated measurements ({data.confirmation.metric})", "", data.confirmation.verdict, ""]
        table(CONFIRM_HEADER, _confirmation_rows(data))
    if data.stack_rows:
        out += [f"## {STACK_TITLE}", "", STACK_NOTE, ""]
        table(_stack_header(data), _stack_rows(data))
    for figure in figures:
        out += [f"## {figure.title}", ""]
        if figure.name in image_names:
            out += [f"![{figure.title}]({image_names[figure.name]})", ""]
        else:
            out += [figure.note or "n/a", ""]
    out += ["## Failed and pruned trials", ""]
    if data.issues:
        table(["trial", "state", "reason"], [[str(i.number), i.state, i.reason] for i in data.issues])
    else:
        out += ["None.", ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.banner{background:#b00020;color:#fff;padding:12px;font-weight:bold;
font-size:1.3em;text-align:center}img{max-width:100%}.note{color:#666;font-style:italic}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(data: ReportData, figures: Sequence[Figure]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Study {html.escape(data.study)}</title>",
             f"<style>{_CSS}</style></head><body>"]
    if data.simulated:
        parts.append(f"<div class='banner'>{html.escape(SIMULATED_BANNER)}</div>")
    parts.append(f"<h1>Study {html.escape(data.study)}</h1><ul>")
    parts += [f"<li>{html.escape(line)}</li>" for line in _summary_lines(data)]
    parts.append("</ul><h2>vLLM defaults vs best</h2>")
    parts.append(_html_table(COMPARISON_HEADER, _comparison_rows(data)))
    if data.best is not None and data.best.params:
        parts.append(f"<p>Best trial {data.best.number} parameters:</p>" + _html_table(["parameter", "value"], _best_params(data)))
    if data.confirmation is not None:
        parts.append(f"<h2>Repeated measurements ({html.escape(data.confirmation.metric)})</h2>")
        parts.append(f"<p>{html.escape(data.confirmation.verdict)}</p>" + _html_table(CONFIRM_HEADER, _confirmation_rows(data)))
    if data.stack_rows:
        parts.append(f"<h2>{html.escape(STACK_TITLE)}</h2><p>{html.escape(STACK_NOTE)}</p>")
        parts.append(_html_table(_stack_header(data), _stack_rows(data)))
    for figure in figures:
        parts.append(f"<h2>{html.escape(figure.title)}</h2>")
        if figure.png is not None:
            encoded = base64.b64encode(figure.png).decode("ascii")
            parts.append(f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{encoded}'>")
        else:
            parts.append(f"<p class='note'>{html.escape(figure.note or 'n/a')}</p>")
    parts.append("<h2>Failed and pruned trials</h2>")
    if data.issues:
        parts.append(_html_table(["trial", "state", "reason"], [[str(i.number), i.state, i.reason] for i in data.issues]))
    else:
        parts.append("<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
