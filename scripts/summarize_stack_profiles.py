"""Where vLLM's engine core and API servers spend their time, from the trials' stack profiles (--stack-profile-hz).

For every trial of a study folder that has `trials/N/stack-profile/` (each server process's folded stacks per
measured window, `autotune.observe.stacks.profiler`), two windows are read: the capacity probe (`phase00-c*`, the highest
load) and the window whose rate the trial reports (its slo_rate). The model runner's thread (the engine core's main
thread, or its Worker process's with several engines per GPU or tensor parallel) is split into the
activities of `autotune.observe.stacks.activity` (idle, scheduler, input preparation, multimodal batching, vision
encoder, language model, waiting for the GPU, other); the busiest API server's event loop and its preprocessing
threads are given as busy shares. Writes `stack_profiles.json` and `stack_profiles.md` into the run folder:

    .venv/bin/python scripts/summarize_stack_profiles.py RUN_DIR [STUDY]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autotune.observe.stacks.activity import (  # noqa: E402
    ACTIVITIES,
    ENGINE_CORE_ACTIVITIES,
    api_server_busy,
    engine_core_shares,
    window_folders,
)
from autotune.report import recorded  # noqa: E402

Json = dict[str, Any]


def summarize(study_dir: Path) -> list[Json]:
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
        rows.append(row)
    return rows


def render(rows: list[Json]) -> str:
    lines = [
        "# Engine-core main thread: share of samples per activity (made by scripts/summarize_stack_profiles.py)\n",
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
    return "\n".join(lines) + "\n"


def main() -> None:
    run_dir = Path(sys.argv[1])
    study = sys.argv[2] if len(sys.argv) > 2 else "qwen3-vl-4b-reference"
    rows = summarize(run_dir / "study" / study)
    (run_dir / "stack_profiles.json").write_text(json.dumps({"made_by": "scripts/summarize_stack_profiles.py",
                                                             "activities": ENGINE_CORE_ACTIVITIES, "trials": rows}, indent=2))
    text = render(rows)
    (run_dir / "stack_profiles.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
