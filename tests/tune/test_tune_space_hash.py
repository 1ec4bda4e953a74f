"""A study's space hash does not depend on where the checkout lives, and still catches a changed space."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from helpers.servers import MODEL_DIR as MODEL
from helpers.tune import QUICK_SPACE

from autotune.space import load_search_space


def _checkout(root: Path, **changes: object) -> Path:
    """A copy of the quick space in <root>/search_spaces, its model under <root>/models (relative path)."""
    (root / "search_spaces").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "models" / "qwen").mkdir()  # only its path matters here
    data = yaml.safe_load(QUICK_SPACE.read_text())
    data["engine_base"]["model"] = "../models/qwen"
    data["workload"] = "./w.yaml"
    data.update(changes)
    shutil.copy(QUICK_SPACE, root / "search_spaces" / "w.yaml")  # any file: only its path is hashed
    path = root / "search_spaces" / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_hash_is_the_same_from_two_checkout_paths(tmp_path: Path) -> None:
    here = load_search_space(_checkout(tmp_path / "gpu-host" / "repo"))
    there = load_search_space(_checkout(tmp_path / "laptop" / "elsewhere"))
    assert here.engine_base.model != there.engine_base.model  # resolved paths differ...
    assert here.content_hash() == there.content_hash()  # ...the study identity does not
    assert here.legacy_content_hash() != there.legacy_content_hash()
    assert here.matches_hash(here.legacy_content_hash())  # studies recorded with the earlier hash resume


def test_hash_still_changes_with_the_space(tmp_path: Path) -> None:
    base = load_search_space(_checkout(tmp_path / "a"))
    other_load = load_search_space(_checkout(tmp_path / "b", load={"mode": "concurrency", "concurrency": 3, "num_requests": 9}))
    other_model = load_search_space(_checkout(tmp_path / "c"), model=str(MODEL))
    assert len({base.content_hash(), other_load.content_hash(), other_model.content_hash()}) == 3
    assert not base.matches_hash(other_load.content_hash())


def test_a_field_the_schema_adds_later_does_not_change_the_hash(tmp_path: Path) -> None:
    """Only non-default values are hashed: a newer autotune with a new (defaulted) field resumes older studies."""
    base = load_search_space(_checkout(tmp_path / "a"))
    load = base.load.model_dump(exclude_unset=True)
    spelled_out = load_search_space(_checkout(tmp_path / "b", load={**load, "slo_rate_tolerance": 0.05, "arrival": "poisson"}))
    assert spelled_out.content_hash() == base.content_hash()  # defaults written out == defaults left out
    changed = load_search_space(_checkout(tmp_path / "c", load={**load, "arrival": "constant"}))
    assert changed.content_hash() != base.content_hash()


def test_a_study_recorded_under_the_full_hash_resumes_and_is_migrated(tmp_path: Path) -> None:
    import optuna

    from autotune.tune import attrs
    from autotune.tune.session import open_study
    from autotune.tune.settings import TuneSettings

    space = load_search_space(_checkout(tmp_path / "repo"))
    settings = TuneSettings(experiments_dir=tmp_path / "exp", study="old", mlflow=False)
    session = open_study(space, settings, create=True)
    session.study.set_user_attr(attrs.STUDY_SPACE_HASH, space.full_content_hash())  # as recorded until 2026-11-26
    assert space.full_content_hash() != space.content_hash()
    resumed = open_study(space, settings, create=False)
    stored = optuna.load_study(study_name="old", storage=resumed.storage_url).user_attrs[attrs.STUDY_SPACE_HASH]
    assert stored == space.content_hash()
