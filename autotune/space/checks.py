"""The checks a search space passes beyond its schema: fields exist, values suit EngineConfig, sections agree.

Each issue names its field (`parameters.max_num_seqs.low: ...`), so a space with several mistakes lists them all.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, get_args

from pydantic import ValidationError

from autotune.config import EngineConfig, Quantization
from autotune.space.engine_config import InvalidTrialConfig, engine_config_from_params
from autotune.space.fidelity import fidelity_issues
from autotune.space.paths import path_problem, set_path
from autotune.space.schema import ParamSpec

if TYPE_CHECKING:
    from autotune.space.search_space import SearchSpace

# Quantization methods that read a quantized checkpoint (need a model variant); fp8 quantizes online.
CHECKPOINT_QUANTIZATIONS = frozenset({"awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors"})


def _field_errors(base: dict[str, Any], path: str, value: Any) -> list[str]:
    """Errors EngineConfig reports for this one field set to `value` (cross-field checks are left to trials)."""
    settings = json.loads(json.dumps(base, default=str))
    set_path(settings, path, value)
    try:
        EngineConfig.model_validate(settings)
    except ValidationError as exc:
        top = path.split(".")[0]
        return [item["msg"] for item in exc.errors(include_url=False) if tuple(item.get("loc", ()))[:1] == (top,)]
    return []


def semantic_issues(space: SearchSpace) -> list[str]:
    issues: list[str] = []
    base = space.engine_base.model_dump(mode="json")
    for path, value in space.fixed.items():
        problem = path_problem(path)
        if problem:
            issues.append(f"fixed.{path}: {problem}")
            continue
        issues += [f"fixed.{path}: {msg} (got {value!r})" for msg in _field_errors(base, path, value)]
        set_path(base, path, value)
    targets: dict[str, str] = {}
    declared: list[str] = []
    for name, spec in space.parameters.items():
        where = f"parameters.{name}"
        if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
            issues.append(f"{where}: a parameter name may hold letters, digits, '_', '-' and '.' only")
        target = spec.target(name)
        problem = path_problem(target)
        if problem:
            issues.append(f"{where}{'.field' if spec.field else ''}: {problem}")
            continue
        if target in space.fixed:
            issues.append(f"{where}: {target} is also in fixed; tune it or fix it, not both")
        for subject in spec.when:
            if subject in space.parameters and subject not in declared:
                issues.append(f"{where}.when.{subject}: declare {subject} before {name} (conditions look back)")
            elif subject not in space.parameters and path_problem(subject):
                known = ", ".join(declared) or "none"
                issues.append(f"{where}.when.{subject}: not a parameter declared before it ({known}) nor an engine field")
        values = spec.candidate_values()
        if "otherwise" in spec.model_fields_set:
            values.append(spec.otherwise)
        for index, value in enumerate(values):
            label = _value_label(spec, index, len(values))
            if target == "quantization" and value in CHECKPOINT_QUANTIZATIONS and value not in space.model_variants:
                issues.append(
                    f"{where}.{label}: quantization {value!r} reads a quantized checkpoint: add model_variants.{value} "
                    "(a folder whose config.json carries quantization_config); fp8 quantizes the base model online"
                )
            issues += [f"{where}.{label}: {msg} (got {value!r})" for msg in _field_errors(base, target, value)]
        targets.setdefault(target, name)
        declared.append(name)
    allowed_quant = get_args(Quantization)
    for key in space.model_variants:
        if key not in allowed_quant:
            issues.append(f"model_variants.{key}: not a quantization method; allowed: {', '.join(allowed_quant)}")
    if space.objective.kind in ("goodput", "slo_rate") and all(
        getattr(space.slo, name) is None for name in ("ttft_ms", "tpot_ms", "e2el_ms")
    ):
        issues.append(f"objective: {space.objective.kind} needs an slo with at least one of ttft_ms, tpot_ms, e2el_ms")
    if space.sampler.kind == "grid":
        for name, spec in space.parameters.items():
            if spec.type not in ("categorical", "bool"):
                issues.append(f"parameters.{name}: sampler grid needs categorical or bool parameters (got type {spec.type})")
    if (space.objective.kind == "slo_rate") != (space.load.mode == "slo_rate"):
        issues.append(
            f"objective: {space.objective.kind} with load.mode {space.load.mode}: the slo_rate objective and the "
            "slo_rate load mode go together (the mode measures slo_rate_rps)"
        )
    try:
        engine_config_from_params(space, {}, tuned=False)
    except InvalidTrialConfig as exc:
        issues.append(f"engine_base + fixed (vLLM defaults, trial 0): {exc}")
    if space.fidelity is not None:
        issues += fidelity_issues(space.fidelity, space.load, space.objective.directions())
    for name in space.sampler.compile_key_params or []:
        if name not in space.parameters:
            issues.append(f"sampler.compile_key_params: {name!r} is not a parameter; parameters: {', '.join(space.parameters)}")
    if space.sampler.compile_key_runs > 1 and space.sampler.kind == "grid":
        issues.append("sampler.compile_key_runs: the grid sampler keeps its own order; use tpe, random or nsga2")
    return issues


def _value_label(spec: ParamSpec, index: int, count: int) -> str:
    if "otherwise" in spec.model_fields_set and index == count - 1:
        return "otherwise"
    if spec.type in ("int", "float"):
        return "low" if index == 0 else "high"
    if spec.type == "bool":
        return "type"
    return f"choices[{index}]"
