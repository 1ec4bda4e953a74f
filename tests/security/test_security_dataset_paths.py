"""Dataset image paths cannot leave the dataset's folder (the benchmark inlines local images it reads).

A secret image sits next to the dataset folder, and the folder holds symlinks pointing out of it. Every
generated reference (`..`, absolute paths, `~`, backslashes, percent-encoding, file: URLs, NUL bytes,
symlinks to files and folders outside) either loads an image from inside the folder or is refused with a
ConfigError naming the file and line; the secret's bytes are never inlined.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability.reliability_record import Outcome, current_test, record_outcome

from autotune.bench.dataset import load_dataset
from autotune.errors import ConfigError


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, "PNG")
    return buffer.getvalue()


SECRET = _png((1, 2, 3))
INSIDE = _png((200, 10, 10))

escapes = st.sampled_from(
    [
        "../secret.png", "../../secret.png", "sub/../../secret.png", "./../secret.png", "sub/../sub/../../secret.png",
        "{outside}/secret.png", "/etc/passwd", "~/secret.png", "..\\secret.png", "sub\\..\\..\\secret.png",
        "%2e%2e/secret.png", "..%2fsecret.png", "file://{outside}/secret.png", "file:secret.png", "link-out.png",
        "dir-out/secret.png", "sub/link-up/secret.png", "inside.png\x00../secret.png", "//{outside}/secret.png",
        "C:\\secret.png", "inside.png/../../secret.png",
    ]
)
fine = st.sampled_from(["inside.png", "./inside.png", "sub/../inside.png", "sub/nested.png", "link-in.png"])
SEGMENTS = ["..", ".", "sub", "link-up", "dir-out", "inside.png", "secret.png", "nested.png", "link-out.png", "%2e%2e", ""]
composed = st.tuples(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6), st.sampled_from(["/", "\\"])).map(
    lambda parts: parts[1].join(parts[0])
)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(SECRET)
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "inside.png").write_bytes(INSIDE)
    (folder / "sub" / "nested.png").write_bytes(INSIDE)
    (folder / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "dir-out").symlink_to(outside, target_is_directory=True)
    (folder / "sub" / "link-up").symlink_to(tmp_path / "outside", target_is_directory=True)
    (folder / "link-in.png").symlink_to(folder / "inside.png")
    return folder, outside


def test_image_paths_cannot_escape_the_dataset_folder(layout: tuple[Path, Path]) -> None:
    folder, outside = layout
    dataset = folder / "requests.jsonl"
    secret_b64 = base64.b64encode(SECRET).decode()
    outcomes = {"tried": 0, "refused": 0, "loaded": 0, "leaked": 0}
    problems: list[str] = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(reference=st.one_of(escapes, fine, composed))
    def one(reference: str) -> None:
        url = reference.replace("{outside}", str(outside))
        line = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
        dataset.write_text(json.dumps(line) + "\n")
        outcomes["tried"] += 1
        try:
            entries = load_dataset(dataset)
        except ConfigError as exc:
            outcomes["refused"] += 1
            if f"{dataset}:1" not in str(exc):
                problems.append(f"{url!r}: the error does not name the file and line: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - anything else would be a traceback
            problems.append(f"{url!r}: {type(exc).__name__}: {exc}")
            return
        outcomes["loaded"] += 1
        inlined = json.dumps(entries[0].messages)
        if secret_b64 in inlined:
            outcomes["leaked"] += 1
            problems.append(f"{url!r} inlined the file outside the dataset folder")
        elif base64.b64encode(INSIDE).decode() not in inlined:  # nested.png has the same bytes
            problems.append(f"{url!r} loaded something else: {inlined[:200]}")

    one()
    record_outcome(
        Outcome(
            scenario="Dataset image paths trying to leave the dataset folder (.., absolute, ~, symlinks, file:)",
            category="security",
            tried=outcomes["tried"],
            unit="dataset lines",
            lost=outcomes["leaked"] + len(problems),
            lost_meaning="a file outside the folder inlined, or a traceback",
            expected="inside paths load; every escape is a ConfigError naming file:line",
            test=current_test(),
            details={"refused": outcomes["refused"], "loaded": outcomes["loaded"]},
        )
    )
    assert not problems, "\n".join(problems[:20])
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0
