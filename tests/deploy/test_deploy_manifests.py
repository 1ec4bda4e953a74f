"""deploy/k8s and deploy/slurm: every Kubernetes object valid against the schemas (offline), the kustomization
rendered as kubectl renders it, and the commands they run accepted by the CLIs they call (autotune, mlflow)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from autotune.cli.main import app  # every command registered (the _app module alone has those imported so far)
from autotune.deploy.manifests import collect, describe, main, render_kustomization, validate_manifests
from autotune.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SLURM = REPO / "deploy" / "slurm" / "autotune-array.sbatch"


def _objects() -> dict[str, dict[str, Any]]:
    return {describe(doc): doc for doc, _ in render_kustomization(K8S)}


def _container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    pod = doc["spec"]["template"]["spec"]
    return next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name)


def test_every_object_is_valid_against_the_kubernetes_schemas() -> None:
    docs = render_kustomization(K8S)
    assert validate_manifests(docs) == len(docs) == 9
    assert sorted(_objects()) == [
        "ConfigMap/autotune-study", "Job/autotune-workers", "Secret/autotune-db", "Service/mlflow", "Service/mlflow-db",
        "Service/optuna-db", "StatefulSet/mlflow", "StatefulSet/mlflow-db", "StatefulSet/optuna-db",
    ]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_offline_rendering_is_what_kubectl_kustomize_renders() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True)
    theirs = {describe(doc): doc for doc in yaml.safe_load_all(done.stdout) if doc}
    assert theirs == _objects()


def test_the_job_runs_one_worker_per_gpu_on_the_shared_storage() -> None:
    job = _objects()["Job/autotune-workers"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == job["spec"]["parallelism"]
    worker = _container(job, "worker")
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert worker["image"] == "autotune:latest"  # the kustomization's `images` rule applied
    env = {item["name"]: item for item in worker["env"]}
    assert env["AUTOTUNE_STORAGE"]["value"].startswith("postgresql+psycopg2://optuna:$(OPTUNA_DB_PASSWORD)@optuna-db:5432/")
    assert env["AUTOTUNE_MLFLOW_URI"]["value"] == "http://mlflow:5000"
    assert not any("OPTUNA_DB_PASSWORD" in arg for arg in worker["args"])  # the password stays out of argv


def _expand(text: str, values: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), text)


def _autotune_command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _parse(command: Any, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The parameters the CLI would run with (its own parser, types and environment variables; nothing runs)."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return dict(command.make_context(command.name or "cmd", list(args)).params)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_the_worker_command_is_the_one_line_start_the_cli_accepts() -> None:
    objects = _objects()
    study = objects["ConfigMap/autotune-study"]["data"]
    secrets = objects["Secret/autotune-db"]["stringData"]
    worker = _container(objects["Job/autotune-workers"], "worker")
    assert worker["command"] == ["autotune", "tune"]
    env: dict[str, str] = {}
    for item in worker["env"]:  # in order, as the kubelet expands them
        if "value" in item:
            env[item["name"]] = _expand(item["value"], {**study, **env})
        elif "secretKeyRef" in item["valueFrom"] and item["valueFrom"]["secretKeyRef"]["name"] == "autotune-db":
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    args = [_expand(arg, {**study, **env}) for arg in worker["args"]]
    assert not [arg for arg in args if "$(" in arg], args  # every variable is defined
    params = _parse(_autotune_command("tune"), args, env)
    assert params["space_file"] is None and params["model"] == study["MODEL"]  # the one-line start
    assert params["slo"] == [f"ttft_ms={study['SLO_TTFT_MS']}", f"tpot_ms={study['SLO_TPOT_MS']}"]
    assert params["n_trials"] == int(study["N_TRIALS_PER_WORKER"]) and params["study"] == study["STUDY"]
    assert params["storage"] == f"postgresql+psycopg2://optuna:{secrets['OPTUNA_DB_PASSWORD']}@optuna-db:5432/optuna"
    assert params["mlflow_uri"] == "http://mlflow:5000"


def test_the_mlflow_server_command_and_environment_are_mlflows_own() -> None:
    from mlflow.cli import server

    mlflow = _container(_objects()["StatefulSet/mlflow"], "mlflow")
    assert mlflow["command"] == ["mlflow", "server"]
    env = {item["name"]: item.get("value", "secret") for item in mlflow["env"]}
    env = {name: _expand(value, {"MLFLOW_DB_PASSWORD": "pw"}) for name, value in env.items()}
    params = _parse(server, mlflow["args"], env)
    assert params["backend_store_uri"] == "postgresql://mlflow:pw@mlflow-db:5432/mlflow"
    assert params["artifacts_destination"] == "/mlartifacts" and params["serve_artifacts"] is True
    assert "mlflow" in params["allowed_hosts"].split(",")  # MLflow 3 refuses other Host headers than its defaults


def test_every_referenced_secret_and_config_key_is_defined() -> None:
    objects = _objects()
    defined = {("Secret", "autotune-db", key) for key in objects["Secret/autotune-db"]["stringData"]}
    defined |= {("ConfigMap", "autotune-study", key) for key in objects["ConfigMap/autotune-study"]["data"]}
    for doc in objects.values():
        if "template" not in doc.get("spec", {}):
            continue
        for container in doc["spec"]["template"]["spec"].get("initContainers", []) + doc["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ("Secret", ref["name"], ref["key"]) in defined, (describe(doc), ref)


def test_an_invalid_value_is_refused_naming_the_file_object_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "k8s"
    shutil.copytree(K8S, bad)
    workers = bad / "workers.yaml"
    workers.write_text(workers.read_text().replace("parallelism: 2", "parallelism: two"))
    with pytest.raises(ConfigError) as refused:
        validate_manifests(collect([bad]))
    assert str(refused.value).startswith(f"{workers}: Job/autotune-workers: spec.parallelism: 'two' is not of type 'integer'")
    workers.write_text(workers.read_text().replace("parallelism: two", "parallelism: 2").replace("resources:", "resource:"))
    with pytest.raises(ConfigError, match=r"Job/autotune-workers: spec.template.spec.containers\[0\]: Additional properties "
                                          r"are not allowed \('resource' was unexpected\)"):
        validate_manifests(collect([bad]))


def test_the_validator_command_exits_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(K8S)]) == 0 and "9 Kubernetes object(s) valid" in capsys.readouterr().out
    broken = tmp_path / "svc.yaml"
    broken.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: http}]\n")
    assert main([str(broken)]) == 2
    assert f"{broken}: Service/s: spec.ports[0].port: 'http' is not of type 'integer'" in capsys.readouterr().err


def test_unsupported_kustomize_features_are_named(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(ConfigError, match="patches: not rendered offline"):
        render_kustomization(tmp_path)


def test_the_slurm_array_task_runs_the_one_line_start_the_cli_accepts(tmp_path: Path) -> None:
    record = tmp_path / "argv"
    stub = tmp_path / "stub.py"
    stub.write_text(f"import sys, json\nopen({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    env = {
        "PATH": os.environ["PATH"], "AUTOTUNE": f"{sys.executable} {stub}", "SLURM_ARRAY_TASK_ID": "3",
        "AUTOTUNE_STORAGE": "postgresql+psycopg2://u:p@db:5432/optuna", "AUTOTUNE_MLFLOW_URI": "http://mlflow:5000",
    }
    done = subprocess.run(["bash", str(SLURM)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    import json

    argv = json.loads(record.read_text())
    assert argv[0] == "tune"
    params = _parse(_autotune_command("tune"), argv[1:], env)
    assert params["model"] == "Qwen/Qwen3-VL-4B-Instruct" and params["experiments_dir"] == Path("experiments/task-3")
    assert params["storage"] == env["AUTOTUNE_STORAGE"] and params["n_trials"] == 10
    missing = subprocess.run(["bash", str(SLURM)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode != 0 and "set AUTOTUNE_STORAGE to the shared PostgreSQL URL" in missing.stderr
