"""autotune.report.recorded: a recorded file reads the same whether stored plain, gzip'd, xz'd or in a folder archive."""

from __future__ import annotations

import gzip
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from autotune.report import recorded

LOG = b"INFO starting\nERROR ValueError: boom\n"


def _archive(folder: Path) -> Path:
    """Pack `folder` as `folder.tar.xz` beside it (members named from its parent) and remove the folder."""
    archive = folder.with_name(folder.name + recorded.FOLDER_ARCHIVE)
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(folder, arcname=folder.name)
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    return archive


@pytest.mark.parametrize("store", ["plain", "gz", "xz"])
def test_a_file_reads_the_same_in_every_stored_form(tmp_path: Path, store: str) -> None:
    log = tmp_path / "server.log"
    if store == "plain":
        log.write_bytes(LOG)
    elif store == "gz":
        (tmp_path / "server.log.gz").write_bytes(gzip.compress(LOG))
    else:
        (tmp_path / "server.log.xz").write_bytes(lzma.compress(LOG))
    assert recorded.exists(log)
    assert recorded.read_bytes(log) == LOG
    assert recorded.read_text(log).splitlines()[-1] == "ERROR ValueError: boom"
    assert recorded.glob(tmp_path, "*.log") == [log]  # named as written, whatever the stored form


def test_a_file_written_compressed_reads_as_its_content(tmp_path: Path) -> None:
    (tmp_path / "result.json.gz").write_bytes(gzip.compress(b'{"kind": "autotune-bench-result"}'))
    assert recorded.read_bytes(tmp_path / "result.json.gz") == b'{"kind": "autotune-bench-result"}'
    assert recorded.read_bytes(tmp_path / "result.json") == b'{"kind": "autotune-bench-result"}'


def test_a_missing_file_is_not_recorded_and_says_which_forms_were_looked_for(tmp_path: Path) -> None:
    assert not recorded.exists(tmp_path / "optuna.db")
    with pytest.raises(FileNotFoundError, match=r"optuna\.db\.gz or optuna\.db\.xz"):
        recorded.read_bytes(tmp_path / "optuna.db")
    with pytest.raises(FileNotFoundError, match=r"stack-profile\.tar\.xz"):
        with recorded.folder(tmp_path / "stack-profile"):
            pass


def test_an_archived_folder_is_unpacked_for_the_block_and_its_members_exist(tmp_path: Path) -> None:
    window = tmp_path / "trials" / "8" / "stack-profile" / "phase00-c256"
    window.mkdir(parents=True)
    (window / "EngineCore.7.folded").write_text("MainThread;run 10\n")
    archive = _archive(tmp_path / "trials" / "8" / "stack-profile")

    profile = tmp_path / "trials" / "8" / "stack-profile"
    assert not profile.exists() and archive.is_file()
    assert recorded.exists(profile)
    assert recorded.exists(profile / "phase00-c256" / "EngineCore.7.folded")
    assert not recorded.exists(profile / "phase00-c256" / "APIServer_0.8.folded")
    with recorded.folder(profile) as unpacked:
        assert unpacked.name == "stack-profile" and unpacked != profile
        assert (unpacked / "phase00-c256" / "EngineCore.7.folded").read_text() == "MainThread;run 10\n"
    assert not unpacked.exists()  # the temporary copy is gone after the block


def test_a_plain_folder_is_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "stack-profile").mkdir()
    with recorded.folder(tmp_path / "stack-profile") as folder:
        assert folder == tmp_path / "stack-profile"


def test_a_folder_without_a_study_store_is_one_clear_error_on_the_command_line(tmp_path: Path) -> None:
    """`summarize trial-cost` and `summarize screening` open recorded studies the same way: a folder without
    optuna.db (plain or compressed) is one 'error:' line and exit code 2, never a traceback."""
    for args in (["trial-cost", str(tmp_path)], ["screening", str(tmp_path), "p.json"]):
        done = subprocess.run([sys.executable, "-m", "autotune.cli", "summarize", *args], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert "error:" in done.stderr and "no study recorded here (no optuna.db, optuna.db.gz or optuna.db.xz)" in done.stderr
        assert "Traceback" not in done.stderr + done.stdout
