"""Write a study's report files (the one entry point the CLI calls)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from autotune.report.data import gather
from autotune.report.figures import all_figures
from autotune.report.render import to_html, to_markdown
from autotune.tune.session import reopen_study


class ReportFormat(StrEnum):
    HTML = "html"
    MD = "md"


class ReportOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str
    simulated: bool
    files: list[Path]


def write_report(
    study: str,
    *,
    experiments_dir: Path = Path("experiments"),
    formats: list[ReportFormat] | None = None,
    output_dir: Path | None = None,
    storage: str | None = None,
) -> ReportOutcome:
    """report.html (self-contained) and/or report.md + PNGs in `output_dir` (default `<study folder>/report`)."""
    session = reopen_study(study, experiments_dir=experiments_dir, storage=storage, mlflow=False)
    data = gather(session)
    figures = all_figures(session.study, data)
    out = output_dir or session.study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for fmt in formats or [ReportFormat.HTML]:
        if fmt is ReportFormat.HTML:
            path = out / "report.html"
            path.write_text(to_html(data, figures), encoding="utf-8")
        else:
            names: dict[str, str] = {}
            for figure in figures:
                if figure.png is not None:
                    (out / f"{figure.name}.png").write_bytes(figure.png)
                    names[figure.name] = f"{figure.name}.png"
                    files.append(out / names[figure.name])
            path = out / "report.md"
            path.write_text(to_markdown(data, figures, names), encoding="utf-8")
        files.append(path)
    return ReportOutcome(study=data.study, simulated=data.simulated, files=files)
