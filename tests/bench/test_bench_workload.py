"""Workloads: built-ins, YAML errors, deterministic requests and images, datasets and their confinement."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from autotune.bench.dataset import load_dataset
from autotune.bench.images import image_bytes, image_cache_dir
from autotune.bench.prepare import build_requests
from autotune.bench.workload import builtin_workloads, load_workload, resolve_workload
from autotune.errors import ConfigError
from autotune.model_files import usable_model_dir

from helpers.servers import MODEL_DIR as SHARED_MODEL_DIR

MODEL_DIR = Path(SHARED_MODEL_DIR)


def _body(request) -> dict:
    return json.loads(request.body)


def test_builtins_load_and_vlm_chat_matches_its_definition() -> None:
    assert {"vlm-chat", "text-chat", "vlm-multi-image"} <= set(builtin_workloads())
    for name in builtin_workloads():
        assert resolve_workload(name).name == name
    (request,) = build_requests(resolve_workload("vlm-chat"), 1, "served-name")
    body = _body(request)
    assert body["model"] == "served-name"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["max_tokens"] == 128
    parts = body["messages"][-1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 1 and request.images == 1
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (448, 448)
    text = [p["text"] for p in parts if p["type"] == "text"][0]
    assert len(text.split()) == 64


def test_requests_are_deterministic_and_distinct() -> None:
    workload = resolve_workload("vlm-chat")
    first = build_requests(workload, 3, "m")
    again = build_requests(workload, 3, "m")
    assert [r.body for r in first] == [r.body for r in again]
    assert len({r.body for r in first}) == 3  # every request (text and image) differs
    shifted = build_requests(workload, 1, "m", first_index=2)
    assert shifted[0].body == first[2].body


def test_images_same_bytes_twice_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(tmp_path))
    first = image_bytes(64, 48, seed=5, fmt="png")
    cached = list(image_cache_dir().iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == first
    cached[0].unlink()
    assert image_bytes(64, 48, seed=5, fmt="png") == first  # regenerated identically
    assert image_bytes(64, 48, seed=6, fmt="png") != first


def test_random_mm_workload_sends_random_pixel_jpegs_like_vllm_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from io import BytesIO

    from PIL import Image

    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(tmp_path))
    first, second = build_requests(resolve_workload("vlm-chat-random-mm"), 2, "m")
    urls = [
        next(p for p in _body(r)["messages"][-1]["content"] if p["type"] == "image_url")["image_url"]["url"]
        for r in (first, second)
    ]
    pixels = [np.asarray(Image.open(BytesIO(base64.b64decode(u.split(",", 1)[1])))) for u in urls]
    assert all(u.startswith("data:image/jpeg;base64,") for u in urls) and pixels[0].shape == (448, 448, 3)
    assert not np.array_equal(pixels[0], pixels[1])
    # i.i.d. pixels: neighbours are uncorrelated and the JPEG is far larger than a photo-like one of the same size
    flat = pixels[0].astype(float)
    assert abs(np.corrcoef(flat[:, :-1].ravel(), flat[:, 1:].ravel())[0, 1]) < 0.3
    photo = image_bytes(448, 448, seed=1, fmt="jpeg", jpeg_quality=75)
    noise = image_bytes(448, 448, seed=1, fmt="jpeg", jpeg_quality=75, pattern="noise")
    assert len(noise) > 3 * len(photo)


def test_shared_prefix_and_image_pool(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(
        "name: shared\nkind: synthetic\nsynthetic:\n  input_tokens: 100\n  output_tokens: {kind: uniform, min: 5, max: 9}\n"
        "  shared_prefix_fraction: 0.25\n  images: {count: 1, sizes: [32x32], pool_size: 1}\n"
    )
    requests = build_requests(load_workload(spec), 4, "m")
    bodies = [_body(r) for r in requests]
    systems = {b["messages"][0]["content"] for b in bodies}
    assert len(systems) == 1 and len(next(iter(systems)).split()) == 25
    users = [b["messages"][1]["content"] for b in bodies]
    assert len({u[-1]["text"] for u in users}) == 4
    assert all(len(u[-1]["text"].split()) == 75 for u in users)
    assert len({u[0]["image_url"]["url"] for u in users}) == 1  # pool of one image
    assert all(5 <= r.max_tokens <= 9 for r in requests)


def test_text_token_count_is_exact_with_the_qwen_tokenizer(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(usable_model_dir(MODEL_DIR)) / "tokenizer.json"))
    (request,) = build_requests(resolve_workload("text-chat"), 1, "m")
    text = _body(request)["messages"][-1]["content"][-1]["text"]
    assert len(tokenizer.encode(text, add_special_tokens=False).ids) == 256
    spec = tmp_path / "w.yaml"
    spec.write_text(f"name: t\nkind: synthetic\nsynthetic:\n  input_tokens: 37\n  output_tokens: 4\n  tokenizer: {MODEL_DIR}\n")
    (request,) = build_requests(load_workload(spec), 1, "m")
    text = _body(request)["messages"][-1]["content"][-1]["text"]
    assert len(tokenizer.encode(text, add_special_tokens=False).ids) == 37


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("name: x\nkind: video\n", "kind: Input should be 'synthetic', 'dataset' or 'trace'"),
        ("name: x\nkind: synthetic\n", "needs a 'synthetic' section"),
        ("name: x\nkind: synthetic\nsynthetic: {input_tokens: 5, output_tokens: {kind: zipf}}\n", "synthetic.output_tokens"),
        ("name: x\nkind: synthetic\nsynthetic: {input_tokens: 5, output_tokens: 5, images: {sizes: [big]}}\n", "WIDTHxHEIGHT"),
        ("name: x\nkind: synthetic\nsynthetic: {input_tokens: 5, output_tokens: 5, colour: red}\n", "synthetic.colour: Extra inputs"),
    ],
)
def test_bad_workload_yaml_names_the_field(tmp_path: Path, yaml_text: str, expected: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_workload(spec)
    assert str(spec) in str(caught.value) and expected in str(caught.value)


def test_unknown_workload_lists_builtins() -> None:
    with pytest.raises(ConfigError, match="vlm-chat"):
        resolve_workload("no-such-workload")


def _dataset(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "img" / "a.png").write_bytes(image_bytes(32, 32, seed=1, fmt="png"))
    path = folder / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _line(url: str, **extra: object) -> str:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "describe"}]
    return json.dumps({"messages": [{"role": "user", "content": content}], **extra})


def test_dataset_workload_inlines_local_images(tmp_path: Path) -> None:
    data = _dataset(tmp_path, [_line("img/a.png", max_tokens=7), "", _line("https://example.com/x.jpg")])
    spec = data.parent / "w.yaml"
    spec.write_text("name: d\nkind: dataset\ndataset: {path: set.jsonl, output_tokens: 9}\n")
    requests = build_requests(load_workload(spec), 3, "m")
    bodies = [_body(r) for r in requests]
    first_url = bodies[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert first_url.startswith("data:image/png;base64,")
    assert base64.b64decode(first_url.split(",", 1)[1]) == (data.parent / "img" / "a.png").read_bytes()
    assert bodies[1]["messages"][0]["content"][0]["image_url"]["url"] == "https://example.com/x.jpg"
    assert [r.max_tokens for r in requests] == [7, 9, 7]  # cycles over the lines


def test_a_jsonl_file_is_a_dataset_workload_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dataset(tmp_path, [_line("img/a.png", max_tokens=7), _line("img/a.png")])
    monkeypatch.chdir(tmp_path)
    workload = resolve_workload("data/set.jsonl")  # as `--workload data/set.jsonl` gives it
    assert workload.kind == "dataset" and workload.name == "set" and workload.dataset is not None
    assert workload.dataset.path == str(data)  # absolute: image paths stay relative to the file's folder
    requests = build_requests(workload, 2, "m")
    assert [r.max_tokens for r in requests] == [7, 128]  # a line's own max_tokens, else the dataset default
    assert _body(requests[0])["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    with pytest.raises(ConfigError, match=r"workload 'data/nope.jsonl': no such file \(.*data/nope.jsonl\)"):
        resolve_workload("data/nope.jsonl")


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"prompt": "hi"}', "messages: Field required"),
        (_line("../secret.png"), "may not contain '..'"),
        (_line("/etc/passwd"), "must be relative"),
        (_line("file:///etc/passwd"), "scheme not allowed"),
        (_line("img/missing.png"), "not found"),
    ],
)
def test_dataset_bad_line_reports_line_number_and_reason(tmp_path: Path, bad_line: str, reason: str) -> None:
    data = _dataset(tmp_path, [_line("img/a.png"), bad_line])
    with pytest.raises(ConfigError) as caught:
        load_dataset(data)
    assert f"{data}:2:" in str(caught.value) and reason in str(caught.value)


def test_dataset_symlink_out_of_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(image_bytes(16, 16, seed=2, fmt="png"))
    data = _dataset(tmp_path, [_line("img/link.png")])
    os.symlink(outside, data.parent / "img" / "link.png")
    with pytest.raises(ConfigError, match="leaves the dataset folder"):
        load_dataset(data)


def test_distributions_are_seeded_and_bounded() -> None:
    from pydantic import TypeAdapter

    from autotune.bench.distributions import IntDistribution

    adapter = TypeAdapter(IntDistribution)
    normal = adapter.validate_python({"kind": "normal", "mean": 100, "std": 30, "min": 80, "max": 120})
    draws = [normal.sample(np.random.default_rng(seed)) for seed in range(200)]
    assert min(draws) >= 80 and max(draws) <= 120 and len(set(draws)) > 10
    assert draws == [normal.sample(np.random.default_rng(seed)) for seed in range(200)]
    with pytest.raises(ValueError, match="min must be <= max"):
        adapter.validate_python({"kind": "uniform", "min": 5, "max": 1})


def test_every_photo_has_its_own_decoded_pixels() -> None:
    # vLLM keys its multimodal and prefix caches by a hash of the decoded pixels: distinct files are not enough
    import hashlib
    from io import BytesIO

    from PIL import Image

    requests = build_requests(resolve_workload("vlm-chat"), 200, "m", first_index=5_000)
    digests = set()
    for request in requests:
        part = next(p for p in _body(request)["messages"][-1]["content"] if p["type"] == "image_url")
        image = Image.open(BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1])))
        digests.add(hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest())
    assert len(digests) == 200
