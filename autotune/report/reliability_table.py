"""Render the reliability table of docs/reliability.md from the outcomes the tests recorded.

    AUTOTUNE_RELIABILITY_DIR=experiments/reliability .venv/bin/python -m pytest tests/reliability tests/security
    autotune summarize reliability [experiments/reliability] [docs/reliability.md]

Each JSON file under the record folder is one scenario (written by tests/reliability/reliability_record.py).
The table replaces what lies between the two marker comments in the document; the prose around it stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError

BEGIN = "<!-- reliability-table:begin -->"
END = "<!-- reliability-table:end -->"
CATEGORY_ORDER = ("fault", "bad input", "load", "security")
KEY_DETAILS = (
    "sustainable_rps", "offered_rps", "served", "refused_429_503", "max_waiting", "max_queued_requests",
    "health_failures", "rss_before_mib", "rss_max_mib", "recovery_s", "fail_reason", "refused", "accepted",
    "slowest_request_s", "slowest_s", "rss_growth_mib", "finished_before_kills", "trials_total",
    "seconds_from_cut_to_study_end", "examples", "leaks",
    "outage_s", "mlflow_down_s", "finished_before_stop", "workers_rode_out", "workers_stopped_cleanly",
    "recovered_worker_died", "trial_runs", "budget", "mode", "seconds_from_fill_to_stop", "integrity_check",
    "rss_first_window_max_mib", "rss_last_window_max_mib", "pss_first_window_max_mib", "pss_last_window_max_mib",
    "fds_first_window_max", "fds_last_window_max",
    "ttft_p99_first_window_ms", "ttft_p99_last_window_ms", "e2el_p99_first_window_ms", "e2el_p99_last_window_ms", "plot",
)


def load_outcomes(folder: Path) -> list[dict[str, Any]]:
    outcomes = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    if not outcomes:
        raise AutotuneError(f"{folder}: no recorded outcomes (run the tests with AUTOTUNE_RELIABILITY_DIR={folder})")
    rank = {name: index for index, name in enumerate(CATEGORY_ORDER)}
    return sorted(outcomes, key=lambda o: (rank.get(o["category"], len(rank)), o["scenario"]))


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _details(details: dict[str, Any]) -> str:
    statuses = [f"{key.removeprefix('status_')}: {value}" for key, value in details.items() if key.startswith("status_")]
    shown = ([f"HTTP {', '.join(statuses)}"] if statuses else []) + [
        f"{key}={details[key]}" for key in KEY_DETAILS if key in details
    ]
    return "; ".join(shown)


def _times(tried: int, unit: str) -> str:
    first, _, rest = unit.partition(" ")
    if tried == 1 and first.endswith("s"):
        unit = f"{first[:-1]} {rest}".strip()  # 1 trial, 1 run, 1 trial finished while ...
    return f"{tried} {unit}"


def render(outcomes: list[dict[str, Any]]) -> str:
    lines = [
        "| Kind | What was tried | Times | Lost | Lost would mean | Checked instead | Figures | Test |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for outcome in outcomes:
        test = outcome["test"].rsplit("::", 1)
        lines.append(
            "| "
            + " | ".join(
                _cell(value)
                for value in (
                    outcome["category"],
                    outcome["scenario"],
                    _times(outcome["tried"], outcome["unit"]),
                    f"**{outcome['lost']}**",
                    outcome["lost_meaning"],
                    outcome["expected"],
                    _details(outcome.get("details", {})),
                    f"`{Path(test[0]).name}::{test[-1]}`",
                )
            )
            + " |"
        )
    total_lost = sum(o["lost"] for o in outcomes)
    newest = max(o["recorded_at"] for o in outcomes)[:19].replace("T", " ")
    lines += ["", f"{len(outcomes)} scenarios, {total_lost} lost in all; recorded {newest} UTC."]
    return "\n".join(lines)


def write_table(document: Path, table: str) -> None:
    text = document.read_text()
    if BEGIN not in text or END not in text:
        raise AutotuneError(f"{document}: add the markers {BEGIN} and {END} where the table goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    document.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
