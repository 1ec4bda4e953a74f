"""Kubernetes manifests: read them, render a kustomization offline, check every document against the schemas.

Validation uses `kubernetes-validate` (PyPI), which ships the Kubernetes JSON schemas, so it runs offline; strict mode
refuses unknown fields (a typo such as `resource:` for `resources:`). An invalid document raises one ConfigError
naming the file, the resource and the field: `deploy/k8s/tuner-job.yaml: Job/autotune-workers: spec.parallelism:
'two' is not of type 'integer', 'null'`.

`render_kustomization` renders the subset of Kustomize that deploy/k8s uses (`resources` files and folders,
`images`, `labels` without selectors), so the manifests are checked where kubectl is not installed; anything else
in a kustomization.yaml is refused by name (`kubectl kustomize` renders the full language, and the tests compare
the two where kubectl exists).

    python -m autotune.deploy.manifests deploy/k8s [more files or folders]   # render and validate; exit 2 on errors
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from autotune import install_hint
from autotune.errors import ConfigError

KUBERNETES_VERSION = "1.33"
"""The Kubernetes API version manifests are checked against (Indexed Jobs with backoffLimitPerIndex are GA)."""

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "images", "labels"}

Manifest = dict[str, Any]


def describe(doc: Manifest) -> str:
    """`Kind/name` of a document (as kubectl names it)."""
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
    return f"{doc.get('kind', '?')}/{name}"


def field_path(parts: Iterable[int | str]) -> str:
    """['spec', 'containers', 0, 'image'] -> 'spec.containers[0].image'."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validate_manifest(doc: Manifest, source: str | Path) -> None:
    """Check one document against the Kubernetes schemas (strict: unknown fields are errors)."""
    try:
        import kubernetes_validate
    except ImportError:
        raise ConfigError(
            f"checking Kubernetes objects needs kubernetes-validate (it ships the schemas): {install_hint('deploy')}"
        ) from None

    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str):
            raise ConfigError(f"{source}: {describe(doc)}: {key}: missing (every Kubernetes object names its {key})")
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ConfigError(f"{source}: {describe(doc)}: {field_path(exc.path)}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise ConfigError(
            f"{source}: {describe(doc)}: no Kubernetes {KUBERNETES_VERSION} schema for kind {doc['kind']!r} "
            f"of apiVersion {doc['apiVersion']!r}"
        ) from None


def validate_manifests(docs: Iterable[tuple[Manifest, str]]) -> int:
    """Validate (document, source) pairs; the number checked. Raises at the first invalid one."""
    count = 0
    for doc, source in docs:
        validate_manifest(doc, source)
        count += 1
    return count


def load_documents(path: Path) -> list[Manifest]:
    """The non-empty YAML documents of a file."""
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return docs


def kustomization_file(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def render_kustomization(folder: Path) -> list[tuple[Manifest, str]]:
    """The documents `kubectl kustomize FOLDER` prints for the supported subset, each with the file it came from."""
    spec_path = kustomization_file(folder)
    if spec_path is None:
        raise ConfigError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(spec_path.read_text()) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{spec_path}: expected a mapping")
    unsupported = sorted(set(spec) - _SUPPORTED_KEYS)
    if unsupported:
        raise ConfigError(
            f"{spec_path}: {', '.join(unsupported)}: not rendered offline (supported: {', '.join(sorted(_SUPPORTED_KEYS))}); "
            "render with `kubectl kustomize`"
        )
    docs: list[tuple[Manifest, str]] = []
    for index, entry in enumerate(spec.get("resources") or []):
        target = folder / str(entry)
        if target.is_dir():
            docs += render_kustomization(target)
        elif target.is_file():
            docs += [(doc, str(target)) for doc in load_documents(target)]
        else:
            raise ConfigError(f"{spec_path}: resources[{index}]: no such file or folder: {entry}")
    for doc, _ in docs:
        _apply_images(doc, spec.get("images") or [], spec_path)
        _apply_labels(doc, spec.get("labels") or [], spec_path)
    return docs


def _containers(doc: Manifest) -> list[Manifest]:
    """Every container and init container of a workload's pod template (or of a Pod)."""
    spec = doc.get("spec") or {}
    pod = spec if doc.get("kind") == "Pod" else ((spec.get("template") or {}).get("spec") or {})
    if doc.get("kind") == "CronJob":
        pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for key in ("initContainers", "containers") for c in pod.get(key) or [] if isinstance(c, dict)]


def _apply_images(doc: Manifest, images: list[dict[str, Any]], source: Path) -> None:
    for container in _containers(doc):
        image = str(container.get("image", ""))
        name, tag = (image.split("@", 1)[0], None) if "@" in image else (image, None)
        if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
            name, tag = image.rsplit(":", 1)
        for rule in images:
            if rule.get("name") != name:
                continue
            unknown = set(rule) - {"name", "newName", "newTag", "digest"}
            if unknown:
                raise ConfigError(f"{source}: images: {', '.join(sorted(unknown))}: not rendered offline")
            new_name = rule.get("newName", name)
            if "digest" in rule:
                container["image"] = f"{new_name}@{rule['digest']}"
            elif "newTag" in rule:
                container["image"] = f"{new_name}:{rule['newTag']}"
            else:
                container["image"] = new_name if tag is None else f"{new_name}:{tag}"


def _apply_labels(doc: Manifest, labels: list[dict[str, Any]], source: Path) -> None:
    for rule in labels:
        unknown = set(rule) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown or rule.get("includeSelectors"):
            raise ConfigError(f"{source}: labels: only pairs and includeTemplates are rendered offline")
        pairs = {str(k): str(v) for k, v in (rule.get("pairs") or {}).items()}
        metadata = doc.setdefault("metadata", {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **pairs}
        if not rule.get("includeTemplates"):
            continue
        spec = doc.get("spec") or {}
        templates = [spec.get("template"), *(spec.get("volumeClaimTemplates") or [])]  # as kustomize labels them
        for template in (t for t in templates if isinstance(t, dict)):
            template_meta = template.setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), **pairs}


def collect(paths: Iterable[Path]) -> list[tuple[Manifest, str]]:
    """Documents of files, and of folders (rendered through their kustomization, else every *.yaml in them)."""
    docs: list[tuple[Manifest, str]] = []
    for path in paths:
        if path.is_dir():
            if kustomization_file(path) is not None:
                docs += render_kustomization(path)
            else:
                for file in sorted(path.glob("*.yaml")):
                    docs += [(doc, str(file)) for doc in load_documents(file)]
        else:
            docs += [(doc, str(path)) for doc in load_documents(path)]
    return [(copy.deepcopy(doc), source) for doc, source in docs]


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        count = validate_manifests(collect(paths))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{count} Kubernetes object(s) valid against the Kubernetes {KUBERNETES_VERSION} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
