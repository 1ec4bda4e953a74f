"""Where vLLM's engine core and API servers spend their time, from the trials' stack profiles (--stack-profile-hz).

For every trial of a study folder that has `trials/N/stack-profile/` (each server process's folded stacks per
measured window, `autotune.observe.stacks.profiler`), two windows are read: the capacity probe (`phase00-c*`, the
highest load) and the window whose rate the trial reports (its slo_rate). The model runner's thread (the engine
core's main thread, or its Worker process's with several engines per GPU or tensor parallel) is split into the
activities of `autotune.observe.stacks.activity` (idle, scheduler, input preparation, multimodal batching, vision
encoder, language model, waiting for the GPU, other); the busiest API server's event loop and its preprocessing
threads are given as busy shares. A trial whose start was profiled too (`start/`) gets a second table: each start
process's main thread by the functions below its trunk, in seconds (`autotune.observe.stacks.start`).
`write_stack_profiles` writes `stack_profiles.json` and `stack_profiles.md` (`autotune report STUDY_OR_RUN_DIR
--stack-profiles`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.errors import ConfigError
from autotune.observe.stacks.activity import (
    ACTIVITIES,
    ENGINE_CORE_ACTIVITIES,
    api_server_busy,
    engine_core_shares,
    window_folders,
)
from autotune.observe.stacks.profiler import START_WINDOW
from autotune.observe.stacks.start import start_breakdown
from autotune.report import recorded

Json = dict[str, Any]

MADE_BY = "autotune report --stack-profiles"
JSON_NAME = "stack_profiles.json"
MARKDOWN_NAME = "stack_profiles.md"


def study_folder(target: Path) -> Path:
    """The study folder of `target`: itself when it has `trials/`, else the one study of a run folder's `study/`."""
    if (target / "trials").is_dir():
        return target
    studies = sorted(p for p in (target / "study").glob("*") if (p / "trials").is_dir())
    if len(studies) == 1:
        return studies[0]
    if not studies:
        raise ConfigError(f"{target} is neither a study folder (with trials/) nor a run folder (with study/<name>/trials/)")
    names = ", ".join(p.name for p in studies)
    raise ConfigError(f"{target}/study holds several studies ({names}): pass the study folder itself")


def summarize(study_dir: Path) -> list[Json]:
    """One row per trial with a stack profile: its probe's and reported window's engine-core and API-server shares."""
    rows = []
    for trial_dir in sorted((study_dir / "trials").iterdir(), key=lambda p: int(p.name)):
        if not recorded.exists(trial_dir / "stack-profile"):
            continue
        trial = json.loads((trial_dir / "trial.json").read_text())
        rate = (trial.get("summary") or {}).get("slo_rate_rps")
        row: Json = {"trial": int(trial_dir.name), "slo_rate_rps": round(rate or 0.0, 2)}
        with recorded.folder(trial_dir / "stack-profile") as profile:
            reported, probe = window_folders(profile, rate)
            for kind, window in (("probe", probe), ("reported", reported)):
                row[f"{kind}_window"] = window.name if window else None
                row[f"engine_core_{kind}"] = engine_core_shares(window) if window else None
                row[f"api_server_{kind}"] = api_server_busy(window) if window else None
            start = profile / START_WINDOW
            row["start"] = [p.model_dump() for p in start_breakdown(start)] if start.is_dir() else None
        rows.append(row)
    return rows


def render(rows: list[Json]) -> str:
    """The Markdown table: a line per trial and window (probe, reported)."""
    lines = [
        f"# Engine-core main thread: share of samples per activity (made by {MADE_BY})\n",
        "| trial | window | " + " | ".join(ACTIVITIES) + " | busiest API server event loop | its preprocessing threads |",
        "|---|---|" + "---|" * (len(ACTIVITIES) + 2),
    ]
    for row in rows:
        for kind in ("probe", "reported"):
            engine, api = row[f"engine_core_{kind}"], row[f"api_server_{kind}"]
            if engine is None:
                continue
            cells = [f"{100 * engine[n]:.0f}%" for n in ACTIVITIES]
            api_cells = [f"{100 * api['event_loop_busy']:.0f}%", f"{100 * api['preprocessing_threads_busy']:.0f}%"] if api else ["", ""]
            lines.append(f"| {row['trial']} | {row[f'{kind}_window']} | " + " | ".join(cells + api_cells) + " |")
    starts = [row for row in rows if row.get("start")]
    if starts:
        lines += [
            "\n# Server start: each process's main thread, the functions below its trunk (seconds on the stack)\n",
            "| trial | process | profiled s | where (s) |",
            "|---|---|---|---|",
        ]
        for row in starts:
            for process in row["start"]:
                where = "; ".join(f"{f['frame']} {f['seconds']:.1f}" for f in process["top_frames"])
                cut = "" if process["complete"] else " (cut: the process died)"
                lines.append(f"| {row['trial']} | {process['title']}{cut} | {process['seconds']:.1f} | {where} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class StackProfilesOutcome:
    markdown: str
    files: list[Path]


def write_stack_profiles(target: Path, output_dir: Path | None = None) -> StackProfilesOutcome:
    """`stack_profiles.json` and `stack_profiles.md` of a study folder or run folder, written into `output_dir`
    (default: `target`)."""
    rows = summarize(study_folder(target))
    out = output_dir if output_dir is not None else target
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / JSON_NAME, out / MARKDOWN_NAME
    json_path.write_text(json.dumps({"made_by": MADE_BY, "activities": ENGINE_CORE_ACTIVITIES, "trials": rows}, indent=2))
    markdown = render(rows)
    markdown_path.write_text(markdown)
    return StackProfilesOutcome(markdown=markdown, files=[json_path, markdown_path])
