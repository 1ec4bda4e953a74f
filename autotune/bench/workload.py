"""Workloads: what each benchmark request asks for. YAML-loadable, built-ins by name.

Two kinds:
- `synthetic`: generated prompts (deterministic word text, see `text.py`) and images
  (deterministic pictures, see `images.py`), lengths fixed or drawn from a distribution, with an
  optional shared system prompt (`shared_prefix_fraction`) so prefix caching matters.
- `dataset`: a JSONL file of OpenAI chat `messages` (see `dataset.py`).
- `trace`: a timestamped JSONL trace of request shapes (start time, prompt and output lengths, image sizes), see
  `trace.py` and docs/traces.md; load mode `replay` sends each request at its trace time.

Built-ins live in `autotune/workloads/<name>.yaml`. A `.jsonl` file given where a workload is expected is a dataset
workload of its own (`dataset_workload`: the file's name, every line's `max_tokens` or 128), no YAML needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from autotune.bench.distributions import FixedInt, IntDistribution
from autotune.bench.images import ImageFormat, ImagePattern
from autotune.base_models import ClosedModel
from autotune.config import read_yaml_mapping
from autotune.errors import ConfigError, config_error_from


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _size_from_text(value: Any) -> Any:
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"expected WIDTHxHEIGHT such as 448x448 (got {value!r})")
        return {"width": int(match.group(1)), "height": int(match.group(2))}
    return value


class ImageSize(ClosedModel):
    width: Annotated[int, Field(ge=16, le=8192)]
    height: Annotated[int, Field(ge=16, le=8192)]


class ImageSpec(ClosedModel):
    """Images per request and how they look. Each image picks one of `sizes` uniformly."""

    count: IntDistribution = FixedInt(value=1)
    sizes: Annotated[list[Annotated[ImageSize, BeforeValidator(_size_from_text)]], Field(min_length=1)] = Field(
        default_factory=lambda: [ImageSize(width=448, height=448)]
    )
    format: ImageFormat = "jpeg"
    jpeg_quality: Annotated[int, Field(ge=1, le=95)] = 85
    pattern: ImagePattern = Field(
        default="photo",
        description="photo: gradient, shapes, mild noise (compresses like a photo); "
        "noise: i.i.d. random pixels, as `vllm bench serve --dataset-name random-mm` sends (worst-case compression)",
    )
    pool_size: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="None: every image is distinct (no server-side image cache hits); N: images repeat from N distinct ones",
    )


class SyntheticSpec(ClosedModel):
    input_tokens: IntDistribution = Field(description="Prompt text tokens (template and image tokens not included)")
    output_tokens: IntDistribution
    images: ImageSpec | None = Field(default=None, description="None: text only")
    shared_prefix_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0, description="Share of the prompt text sent as one system prompt common to every request"
    )
    tokenizer: str | None = Field(
        default=None, description="tokenizer.json or a model folder: fit text lengths exactly (needs `tokenizers`)"
    )


class DatasetSpec(ClosedModel):
    path: str = Field(description="JSONL file; relative paths are relative to the workload file")
    output_tokens: IntDistribution = Field(
        default=FixedInt(value=128), description="max_tokens for lines that do not set their own"
    )
    shuffle: bool = False
    shared_prefix_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0,
        description="Share of the prompt tokens that lines have in common by design (e.g. one system prompt): "
        "the prefix-cache hit rate a window may show without being flagged as cache-flattered",
    )
    shared_image_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0,
        description="Share of the images that recur across lines by design: the multimodal-cache hit rate a "
        "window may show without being flagged",
    )
    allow_repeats: bool = Field(
        default=False,
        description="Send lines again when a run needs more requests than the dataset has. A line sent twice "
        "to one server is a prefix- and multimodal-cache hit, so such windows are not checked for cache hits; "
        "without it, a run that needs more lines than the dataset has is refused",
    )


@dataclass(frozen=True, slots=True)
class CacheSharing:
    """The server-side cache hit rates (0..1) a workload may cause by design, without any request repeated."""

    prefix: float
    mm: float


class TraceSpec(ClosedModel):
    """A request trace (format: autotune/bench/trace.py, docs/traces.md); its images are generated at the sizes it lists."""

    path: str = Field(description="JSONL trace file; relative paths are relative to the workload file")
    image_format: ImageFormat = "jpeg"
    jpeg_quality: Annotated[int, Field(ge=1, le=95)] = 85
    image_pattern: ImagePattern = "photo"
    tokenizer: str | None = Field(
        default=None, description="tokenizer.json or a model folder: fit text lengths exactly (needs `tokenizers`)"
    )


class Workload(ClosedModel):
    name: str
    kind: Literal["synthetic", "dataset", "trace"]
    description: str = ""
    seed: int = 0
    ignore_eos: bool = Field(default=True, description="Ask the server to generate exactly max_tokens")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Added to every request body, e.g. {temperature: 0}"
    )
    synthetic: SyntheticSpec | None = None
    dataset: DatasetSpec | None = None
    trace: TraceSpec | None = None

    @model_validator(mode="after")
    def _section_matches_kind(self) -> Workload:
        sections = {"synthetic": self.synthetic, "dataset": self.dataset, "trace": self.trace}
        others = [name for name, section in sections.items() if name != self.kind and section is not None]
        if sections[self.kind] is None or others:
            raise ValueError(
                f"kind {self.kind!r} needs a {self.kind!r} section"
                + (f" and no {', '.join(repr(name) for name in others)} section" if others else "")
            )
        reserved = {"model", "messages", "stream"} & set(self.extra_body)
        if reserved:
            raise ValueError(f"extra_body may not set {sorted(reserved)} (the benchmark sets them)")
        return self

    def declared_cache_sharing(self) -> CacheSharing:
        """Synthetic: the shared system prompt's fraction, and every image when they come from a pool. Trace: none
        (each request's text and images are generated from its index). Dataset: what its section declares
        (everything when lines may repeat)."""
        if self.synthetic is not None:
            images = self.synthetic.images
            return CacheSharing(
                prefix=self.synthetic.shared_prefix_fraction,
                mm=1.0 if images is not None and images.pool_size is not None else 0.0,
            )
        if self.trace is not None:
            return CacheSharing(prefix=0.0, mm=0.0)
        assert self.dataset is not None
        if self.dataset.allow_repeats:
            return CacheSharing(prefix=1.0, mm=1.0)
        return CacheSharing(prefix=self.dataset.shared_prefix_fraction, mm=self.dataset.shared_image_fraction)


def builtin_workloads() -> list[str]:
    folder = resources.files("autotune") / "workloads"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def workload_from_mapping(data: dict[str, Any], source: str | Path, base_dir: Path | None = None) -> Workload:
    try:
        workload = Workload.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source) from None
    for section in ("dataset", "trace"):
        spec = getattr(workload, section)
        if spec is not None and base_dir is not None and not Path(spec.path).is_absolute():
            resolved = (base_dir / spec.path).resolve()
            workload = workload.model_copy(update={section: spec.model_copy(update={"path": str(resolved)})})
    return workload


DATASET_SUFFIX = ".jsonl"


def dataset_workload(path: str | Path) -> Workload:
    """A JSONL dataset as a workload with the defaults of a `kind: dataset` file (name: the file's stem)."""
    source = Path(path)
    return Workload(name=source.stem, kind="dataset", dataset=DatasetSpec(path=str(source.resolve())))


def load_workload(path: str | Path) -> Workload:
    """A workload YAML file, or a JSONL dataset (by its `.jsonl` suffix)."""
    source = Path(path)
    if source.suffix == DATASET_SUFFIX:
        return dataset_workload(source)
    return workload_from_mapping(read_yaml_mapping(source), source, base_dir=source.resolve().parent)


def resolve_workload(name_or_path: str | Path) -> Workload:
    """A workload file (YAML, or a JSONL dataset), or a built-in by name (`vlm-chat`, `vlm-chat-random-mm`,
    `text-chat`, `vlm-multi-image`)."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return load_workload(candidate)
    name = str(name_or_path)
    if name in builtin_workloads():
        with resources.as_file(resources.files("autotune") / "workloads" / f"{name}.yaml") as path:
            return load_workload(path)
    if candidate.suffix in (".yaml", ".yml", ".json", DATASET_SUFFIX) or "/" in name:
        raise ConfigError(f"workload {name!r}: no such file ({candidate.resolve()})")
    raise ConfigError(
        f"workload {name!r}: not a file and not a built-in (built-ins: {', '.join(builtin_workloads())})"
    )
