"""`autotune export BEST.yaml --to k8s`: a Deployment and a Service that run `autotune serve --config` on the tuned file.

The tuned file goes in a ConfigMap mounted at /config (its model replaced where `--model` says, its API key left
out: the key comes from a Secret the user creates, `AUTOTUNE_API_KEY`); the container is the project's image
(Dockerfile: vLLM's image with autotune), listening on 0.0.0.0:8000; it asks for the GPUs the config uses
(tensor_parallel_size x data_parallel_size; engines_per_gpu share them), is ready when `/health` answers, and gets
up to 20 minutes to start (vLLM compiles and loads). Every object is checked against the Kubernetes schemas before
it is written (autotune/deploy/manifests.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autotune.config import EngineKind, TunedConfig
from autotune.deploy.manifests import Manifest, validate_manifest
from autotune.errors import ConfigError

PORT = 8000
CONFIG_DIR = "/config"
MANIFEST_FILE = "k8s.yaml"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_name(name: str, option: str = "--name") -> str:
    """A Kubernetes object name (RFC 1123 label: the Service's name becomes a DNS name)."""
    if len(name) > 63 or not _NAME.match(name):
        raise ConfigError(
            f"{option} {name!r}: a Kubernetes name is lowercase letters, digits and '-', starting and ending with a "
            "letter or digit, at most 63 characters"
        )
    return name


def default_name(tuned: TunedConfig) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", tuned.engine_config.name_for_clients.lower()).strip("-")[:55].strip("-")
    return f"{base or 'autotune'}-serve"


def gpus_needed(tuned: TunedConfig) -> int:
    """GPUs one server uses: tensor_parallel_size x data_parallel_size (co-located engines share a GPU); none simulated."""
    if tuned.engine is EngineKind.SIMULATED:
        return 0
    return tuned.engine_config.tensor_parallel_size * tuned.engine_config.data_parallel_size


def served_config(tuned: TunedConfig, model: str | None) -> str:
    """The tuned file as the pod reads it: the model it serves there, no API key (a Secret gives it)."""
    engine = tuned.engine_config.model_copy(update={"model": model or tuned.engine_config.model})
    serving = tuned.serving.model_copy(update={"api_key": None})
    return tuned.model_copy(update={"engine_config": engine, "serving": serving}).to_yaml()


def k8s_manifests(
    tuned: TunedConfig, *, name: str, image: str, model: str | None = None, models_pvc: str | None = None,
    hf_secret: str = "autotune-hf",
) -> list[Manifest]:
    """ConfigMap (the tuned file), Deployment (`autotune serve --config`), Service (port 8000)."""
    check_name(name)
    if models_pvc is not None:
        check_name(models_pvc, "--models-pvc")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "autotune"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "labels": labels},
        "data": {"best.yaml": served_config(tuned, model)},
    }
    env: list[dict[str, Any]] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hf_secret, "key": "HF_TOKEN", "optional": True}}},
    ]
    if tuned.serving.api_key is not None:
        env.append({"name": "AUTOTUNE_API_KEY", "valueFrom": {"secretKeyRef": {"name": f"{name}-api-key", "key": "API_KEY"}}})
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "hf-cache", "mountPath": "/root/.cache/huggingface"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        {"name": "hf-cache", "emptyDir": {}},
    ]
    if models_pvc is not None:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": models_pvc, "readOnly": True}})
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "command": ["autotune", "serve"],
        "args": ["--config", f"{CONFIG_DIR}/best.yaml", "--host", "0.0.0.0", "--port", str(PORT)],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "failureThreshold": 120},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 30, "failureThreshold": 3},
        "volumeMounts": mounts,
    }
    gpus = gpus_needed(tuned)
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container], "volumes": volumes}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    return [config_map, deployment, service]


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors for repeated label maps, multi-line strings (the tuned file) as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def write_k8s_export(manifests: list[Manifest], out_dir: Path, header: list[str]) -> Path:
    """Validate every object, then write them as one multi-document file."""
    path = out_dir / MANIFEST_FILE
    for doc in manifests:
        validate_manifest(doc, path)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True) for doc in manifests)
    path.write_text("".join(f"# {line}\n" for line in header) + body)
    return path
