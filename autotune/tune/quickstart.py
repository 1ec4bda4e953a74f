"""The one-line start: a search space built for a model, a workload, an SLO and the GPU this process finds.

    autotune tune --model PATH_OR_ID --workload NAME_OR_FILE --slo ttft_ms=2000 --slo tpot_ms=50

The space has the levers of the reference space (search_spaces/qwen3-vl-4b.yaml), kept to what the model and the
GPU allow: the vision levers only for a vision-language model, fp8 weights and KV cache only on GPUs with fp8
(compute capability 8.9 and newer), the memory shares and engine counts the memory model (autotune/memory_model.py)
says leave room for one `max_model_len` sequence beside the 16-bit weights. It is written to
`<experiments>/<study>/space.yaml` for the user to read and edit (`autotune tune THAT_FILE` runs the edited one) and
then run like any space file. A model it cannot size (no config.json, a field the memory model needs missing, or
one that does not fit the GPU) is refused with one message naming what is missing.

With `--engine simulated` the GPU is the simulator profile's (no GPU needed) and the load is a few requests a trial.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autotune.bench.dataset import load_dataset
from autotune.bench.distributions import FixedInt, NormalInt, UniformInt
from autotune.bench.options import parse_slo
from autotune.bench.schemas import SLO
from autotune.bench.trace import load_trace
from autotune.bench.workload import Workload, resolve_workload
from autotune.config import EngineConfig, EngineKind
from autotune.errors import ConfigError
from autotune.memory_model import COLOCATED_RESERVE_GIB, ModelInfo, estimate_memory
from autotune.space import SearchSpace, load_search_space
from autotune.observe.gpu import GpuFacts, first_visible_gpu
from autotune.tune.preflight import check_engine
from serving.engines.profile import SimulatorProfile

SPACE_FILE = "space.yaml"
MAX_MODEL_LEN = 8192
"""The reference space's context: enough for the shipped workloads (one image, short prompts)."""
ACTIVATION_RESERVE_GIB = 4.0
UTILIZATIONS = (0.8, 0.85, 0.9, 0.95)
ENGINES_PER_GPU = (1, 2, 3)
API_SERVER_COUNTS = (1, 2, 4, 6)
"""Not cut to this host's cores: every worker of a study must build the same space (its hash is checked)."""
STREAM_INTERVALS = (1, 4, 16)
"""vLLM's --stream-interval: tokens handed to the API servers in chunks of N (the first at once)."""
FP8_CAPABILITY = (8, 9)
"""fp8 weights and KV cache need Ada or Hopper (sm_89, sm_90) or newer."""
_ENCODER_GRAPH_MODELS = ("qwen3_vl",)
"""Model types whose vision encoder vLLM 0.24 runs in CUDA graphs (`compilation_config.cudagraph_mm_encoder`)."""


def model_config(model: str) -> tuple[Path, dict[str, Any]]:
    """The model's folder and its config.json: a local folder, or the hub's copy of config.json for a hub id."""
    import json

    local = Path(model).expanduser()
    if local.is_dir():
        folder = local
    elif local.exists() or model.startswith(("/", "./", "../", "~")) or model.count("/") != 1:
        raise ConfigError(f"--model {model!r}: no such model folder (give a folder holding config.json, or a hub id org/name)")
    else:
        folder = _hub_config_folder(model)
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"--model {model!r}: {path}: no such file (the one-line start sizes the model from its config.json)")
    try:
        return folder, json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--model {model!r}: {path}: not valid JSON: {exc}") from None


def _hub_config_folder(model: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ConfigError(
            f"--model {model!r}: not a local folder, and huggingface_hub is not installed to fetch its config.json: "
            "give a local model folder"
        ) from None
    try:
        return Path(hf_hub_download(model, "config.json")).parent
    except Exception as exc:  # offline, unknown repository, gated model without a token
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--model {model!r}: not a local folder, and its config.json could not be fetched from the hub ({reason}): "
            "give a local model folder, or set HF_TOKEN for a gated model"
        ) from None


def size_model(model: str) -> tuple[ModelInfo, dict[str, Any]]:
    """The memory model's view of the model, and its raw config; errors name the model and the missing field."""
    folder, config = model_config(model)
    try:
        return ModelInfo.from_model_dir(folder), config
    except ConfigError as exc:
        raise ConfigError(f"--model {model!r}: cannot size it: {exc}") from None


def gpu_for(engine: EngineKind) -> GpuFacts:
    """The GPU the space is sized for: this process's first visible GPU, or the simulator profile's."""
    if engine is EngineKind.SIMULATED:
        profile = SimulatorProfile.load(None)
        name = profile.gpu.name if "simulated" in profile.gpu.name.lower() else f"{profile.gpu.name} (simulated)"
        return GpuFacts(name=name, memory_gib=profile.gpu.memory_gib)
    found = first_visible_gpu()
    if found is None:
        raise ConfigError(
            "the one-line start sizes the search space for the GPU it runs on, and NVML sees none here: run it on the "
            "GPU host, or try it with --engine simulated"
        )
    return found


def _largest(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def media_limit(workload: Workload) -> dict[str, Any]:
    """`limit_mm_per_prompt` for the workload: its most images per request and largest size (vLLM profiles memory
    and warms up on that size instead of the largest it accepts), no video."""
    count: int | None = 0
    size: tuple[int, int] | None = None
    if workload.synthetic is not None and workload.synthetic.images is not None:
        images = workload.synthetic.images
        spread = images.count
        count = spread.value if isinstance(spread, FixedInt) else (spread.max if isinstance(spread, (UniformInt, NormalInt)) else None)
        largest = max(images.sizes, key=lambda s: s.width * s.height)
        size = (largest.width, largest.height)
    elif workload.trace is not None:
        entries = load_trace(workload.trace.path)
        count = max(len(e.images) for e in entries)
        sizes = [s for e in entries for s in e.images]
        size = max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    elif workload.dataset is not None:
        count = max(entry.images for entry in load_dataset(workload.dataset.path))
    if count is None:  # an unbounded count distribution: vLLM's default limit
        return {"video": 0}
    if size is None or count == 0:
        return {"image": count, "video": 0}
    return {"image": {"count": count, "width": size[0], "height": size[1]}, "video": 0}


def _fits(model: ModelInfo, gpu: GpuFacts, max_model_len: int, utilization: float, engines: int, reserve_gib: float) -> bool:
    engine = EngineConfig(model="sizing", max_model_len=max_model_len, gpu_memory_utilization=utilization, engines_per_gpu=engines)
    return estimate_memory(engine, model, gpu.memory_gib, reserve_gib).kv_capacity_tokens >= max_model_len


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._").lower() or "model"


def default_study_name(model: str, workload: str) -> str:
    return f"{_slug(Path(model).name)}-{_slug(Path(workload).stem if workload.endswith(('.yaml', '.yml')) else workload)}"


def build_space(
    *, model: str, workload: str, slo: SLO, engine: EngineKind, study: str, gpu: GpuFacts
) -> dict[str, Any]:
    """The search space mapping (as written to space.yaml) for this model, workload, SLO and GPU."""
    if all(getattr(slo, name) is None for name in ("ttft_ms", "tpot_ms", "e2el_ms")):
        raise ConfigError(
            "the one-line start needs at least one --slo (e.g. --slo ttft_ms=2000 --slo tpot_ms=50): it tunes for the "
            "highest request rate within it"
        )
    info, config = size_model(model)
    chosen = resolve_workload(workload)
    max_model_len = min(MAX_MODEL_LEN, info.max_position_embeddings)
    utilizations = [u for u in UTILIZATIONS if _fits(info, gpu, max_model_len, u, 1, ACTIVATION_RESERVE_GIB)]
    if not utilizations:
        weights = estimate_memory(EngineConfig(model="sizing"), info, gpu.memory_gib).weights_gib
        raise ConfigError(
            f"--model {model!r}: {weights:.1f} GiB of 16-bit weights, a {ACTIVATION_RESERVE_GIB:.0f} GiB reserve and "
            f"one {max_model_len}-token sequence do not fit {gpu.name} ({gpu.memory_gib:.1f} GiB) at "
            f"gpu_memory_utilization {max(UTILIZATIONS)}: write a search space with tensor_parallel_size > 1 or a "
            "quantized checkpoint (docs/search-space.md)"
        )
    engines = [k for k in ENGINES_PER_GPU if _fits(info, gpu, max_model_len, max(utilizations), k, COLOCATED_RESERVE_GIB)]
    fp8 = gpu.compute_capability is None or gpu.compute_capability >= FP8_CAPABILITY
    vision = isinstance(config.get("vision_config"), dict)
    quantized = "quantization_config" in config or "quantization_config" in (config.get("text_config") or {})

    parameters: dict[str, Any] = {
        "max_num_seqs": {"type": "categorical", "choices": [128, 256, 512]},
        "enable_chunked_prefill": {"type": "bool"},
        "max_num_batched_tokens": {
            "type": "categorical", "choices": [2048, 4096, 8192], "when": {"enable_chunked_prefill": True},
        },
        "max_num_batched_tokens_unchunked": {
            "field": "max_num_batched_tokens", "type": "categorical", "choices": [max_model_len],
            "when": {"enable_chunked_prefill": False},
        },
        "gpu_memory_utilization": {"type": "categorical", "choices": utilizations},
        "kv_cache_dtype": {"type": "categorical", "choices": ["auto", "fp8"] if fp8 else ["auto"]},
    }
    if fp8 and not quantized:
        parameters["quantization"] = {"type": "categorical", "choices": [None, "fp8"]}
    parameters["enable_prefix_caching"] = {"type": "bool"}
    parameters["async_scheduling"] = {"type": "bool"}
    if vision:
        parameters["preprocessing_workers"] = {"type": "categorical", "choices": [1, 2, 4]}
        parameters["mm_processor_cache_gb"] = {
            "type": "categorical", "choices": [0, 4, 8], "when": {"preprocessing_workers": 1}, "otherwise": 0,
        }
    parameters["api_server_count"] = {"type": "categorical", "choices": list(API_SERVER_COUNTS)}
    parameters["extra_engine_args.stream_interval"] = {"type": "categorical", "choices": list(STREAM_INTERVALS)}
    if vision:
        parameters["mm_processor_kwargs.use_fast"] = {"type": "bool"}
        if str(config.get("model_type", "")) in _ENCODER_GRAPH_MODELS:
            parameters["extra_engine_args.compilation_config.cudagraph_mm_encoder"] = {"type": "bool"}
    parameters["engines_per_gpu"] = {"type": "categorical", "choices": engines}
    # a lever with one choice left is not tuned (vLLM's default stays), unless it sets a field under a condition
    parameters = {
        name: spec for name, spec in parameters.items() if spec["type"] == "bool" or len(spec["choices"]) > 1 or "when" in spec
    }

    engine_base: dict[str, Any] = {"model": model, "served_model_name": _slug(Path(model).name), "max_model_len": max_model_len}
    if vision:
        engine_base["limit_mm_per_prompt"] = media_limit(chosen)
    simulated = engine is EngineKind.SIMULATED
    replay = chosen.kind == "trace"
    if simulated:
        load: dict[str, Any] = {"mode": "replay", "num_requests": 16} if replay else {
            "mode": "concurrency", "concurrency": 8, "num_requests": 16, "client_processes": 1,
        }
        trial: dict[str, Any] = {
            "startup_timeout_s": 30, "warmup_requests": 2, "measure_timeout_s": 60, "stop_timeout_s": 10,
            "gpu_memory_gib": round(gpu.memory_gib, 2), "gpu_release_timeout_s": 10,
        }
    else:
        # the reference space's load and trial settings (tests/tune/test_tune_quickstart.py keeps them the same)
        load = {"mode": "replay", "num_requests": None} if replay else {
            "mode": "slo_rate", "concurrency": 256, "num_requests": None, "duration_s": 8,
            "slo_rate_fractions": [0.95, 0.85, 0.75, 0.6, 0.45, 0.3], "slo_rate_tolerance": 0.05,
            "slo_rate_above": [1.05, 1.2, 1.4],
        }
        trial = {"warmup_requests": 32, "measure_timeout_s": 900, "activation_reserve_gib": ACTIVATION_RESERVE_GIB}
    slo_flags = " ".join(f"--slo {name}={getattr(slo, name):g}" for name in ("ttft_ms", "tpot_ms", "e2el_ms") if getattr(slo, name))
    return {
        "name": study,
        "description": (
            f"Built by `autotune tune --model {model} --workload {workload} {slo_flags}` for {gpu.name} "
            f"({gpu.memory_gib:.1f} GiB) with the {engine.value} engine"
        ),
        "engine": engine.value,
        "engine_base": engine_base,
        "parameters": parameters,
        "workload": workload,
        "load": load,
        "slo": slo.model_dump(exclude_none=True),
        "objective": "goodput" if simulated or replay else "slo_rate",
        "constraints": [{"metric": "error_rate", "max": 0.01}, {"metric": "client_saturated", "max": 0}],
        "budget": {"n_trials": 10 if simulated else 40},
        "sampler": {"kind": "tpe", "seed": 0, "n_startup_trials": 4 if simulated else 8},
        "trial": trial,
    }


def _header(space: dict[str, Any]) -> str:
    return (
        f"# {space['description']}.\n"
        "# Written by the one-line start for you to read and edit: `autotune tune THIS_FILE` runs the edited space\n"
        "# (under the same study name only while what it measures is unchanged; docs/search-space.md).\n"
    )


def write_quickstart_space(
    *, model: str, workload: str, slo: SLO, engine: EngineKind, study: str | None, experiments_dir: Path
) -> tuple[Path, str]:
    """Build the space and write it to `<experiments>/<study>/space.yaml`; (its path, the study name).

    The same command again finds the same file and resumes; a file that differs (edited, or other options) is not
    overwritten: the message says how to run it or start another study.
    """
    check_engine(engine)
    name = study or default_study_name(model, workload)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise ConfigError(f"--study {name!r}: letters, digits, '.', '_' and '-' only, starting with a letter or digit")
    workload_ref = str(Path(workload).resolve()) if Path(workload).is_file() else workload
    model_ref = str(Path(model).expanduser().resolve()) if Path(model).expanduser().is_dir() else model
    space = build_space(model=model_ref, workload=workload_ref, slo=slo, engine=engine, study=name, gpu=gpu_for(engine))
    text = _header(space) + yaml.safe_dump(space, sort_keys=False, allow_unicode=True)
    path = experiments_dir / name / SPACE_FILE
    if path.is_file():
        if path.read_text() != text:
            raise ConfigError(
                f"{path} exists and differs from the space these options build (edited, or other options): run "
                f"`autotune tune {path}` to use it, or give another --study"
            )
        return path, name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path, name


def quickstart(
    model: str | None, workload: str | None, slo: list[str] | None, engine: EngineKind | None, study: str | None,
    experiments_dir: Path,
) -> tuple[Path, str]:
    """`autotune tune` without SPACE.yaml: check the options, write the space; (its path, the study name)."""
    missing = [option for option, value in (("--model", model), ("--workload", workload), ("--slo", slo)) if not value]
    if missing:
        raise ConfigError(
            f"autotune tune needs SPACE.yaml, or {', '.join(missing)} to build one (the one-line start: "
            "autotune tune --model PATH_OR_ID --workload NAME_OR_FILE --slo ttft_ms=2000 --slo tpot_ms=50)"
        )
    assert model is not None and workload is not None and slo
    return write_quickstart_space(
        model=model, workload=workload, slo=parse_slo(slo), engine=engine or EngineKind.VLLM, study=study,
        experiments_dir=experiments_dir,
    )


def tune_space(
    space_file: Path | None, *, model: str | None, workload: str | None, slo: list[str] | None,
    engine: EngineKind | None, study: str | None, experiments_dir: Path,
) -> tuple[SearchSpace, str | None, Path | None]:
    """The space `autotune tune` runs: SPACE.yaml (`model` replacing its model), or without it the one the one-line
    start builds and writes; (the space, the study name, the path of a space written here or None)."""
    if space_file is None:
        built, study = quickstart(model, workload, slo, engine, study, experiments_dir)
        return load_search_space(built), study, built  # the built space names the model
    if workload is not None or slo:
        raise ConfigError("--workload and --slo build a space when no SPACE.yaml is given; with SPACE.yaml, set them in the file")
    return load_search_space(space_file, model=model), study, None
