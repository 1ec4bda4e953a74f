"""The chat page at /ui, in a headless Chromium, on the simulated engine: an uploaded PNG and a question get an
answer streamed from the server's own /v1/chat/completions; the side panel shows the served config's
provenance and live /metrics; a wrong key, a non-image upload and an oversized image get the API's own errors."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.servers import MODEL_DIR, running_server
from PIL import Image

from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig, load_tuned_config

pytestmark = pytest.mark.slow

API_KEY = "ui-test-key-0123456789"
STEP_TIMEOUT_MS = 30_000
# Counts how often the answer's text changed while it streamed (the page replaces it on every chunk).
WATCH_ANSWER = """() => {
  window.answerLengths = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll("#messages li.assistant .text, #messages li.error .text");
    if (answers.length) window.answerLengths.push(answers[answers.length - 1].textContent.length);
  }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
}"""


def _png(path: Path, size: tuple[int, int] = (320, 240), noise: bool = False) -> Path:
    image = Image.effect_noise(size, 120).convert("RGB") if noise else Image.new("RGB", size, (40, 110, 200))
    if not noise:
        for x in range(0, size[0], 20):  # a few stripes: a recognizable picture in the screenshot
            image.paste((240, 180, 40), (x, 0, x + 8, size[1]))
    image.save(path, format="PNG")
    return path


def _dd(page: Any, panel: str, term: str) -> str:
    """The value beside `term` in a side-panel list."""
    return str(page.locator(f"#{panel} dt", has_text=term).first.locator("xpath=following-sibling::dd[1]").inner_text())


@contextlib.contextmanager
def _background_load(url: str, model: str, streams: int) -> Iterator[None]:
    """`streams` long streamed requests kept running (each restarted when it ends) until the block exits."""
    stop = threading.Event()

    def run() -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "tell a long story"}], "stream": True,
                "max_tokens": 400}
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                    for _ in response.iter_raw():
                        if stop.is_set():
                            break

    threads = [threading.Thread(target=run, daemon=True) for _ in range(streams)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def _api_error(url: str, model: str, data_url: str, key: str | None = None) -> str:
    """The error the API itself answers for this image, as the page shows it (status code: message)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "stream": True, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": "?"}]}
    ]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert 400 <= reply.status_code < 500, reply.text
    error = reply.json()["error"]
    return f"{reply.status_code} {error['code']}: {error['message']}"


def test_a_png_and_a_question_get_a_streamed_answer_beside_the_served_config(
    browser: Any, small_study: Path, screenshot_dir: Path, tmp_path: Path
) -> None:
    best = small_study / "best.yaml"
    provenance = load_tuned_config(best).provenance
    with running_server(["--config", str(best)]) as url:
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{url}/ui")
            page.wait_for_selector("#engine-badge:not([hidden])")
            assert "SIMULATED" in page.inner_text("#engine-badge")
            assert _dd(page, "provenance", "study") == provenance.study
            assert _dd(page, "provenance", "trial") == str(provenance.trial_number)
            objective = provenance.objectives[0]
            assert objective.name in _dd(page, "provenance", "objective")
            assert _dd(page, "served", "served as") == model

            page.evaluate(WATCH_ANSWER)
            page.set_input_files("#image-input", str(_png(tmp_path / "stripes.png")))
            page.wait_for_selector("#attachment:not([hidden])")
            page.fill("#question", "What is in this picture?")
            page.click("#send")
            page.wait_for_selector("#messages li.assistant[data-state='done']")
            answer = page.inner_text("#messages li.assistant .text")
            lengths = page.evaluate("window.answerLengths")
            assert answer.strip(), "no answer text"
            assert len(set(lengths)) >= 3 and max(lengths) == len(answer), lengths  # it grew chunk by chunk
            meta = page.inner_text("#messages li.assistant .meta")
            assert "first token" in meta and "tokens in" in meta
            assert page.locator("#messages li.user img").count() == 1  # the PNG went with the question

            # Live figures: the panel reads /metrics every 2 s and sees the load other clients put on the engine.
            with _background_load(url, model, streams=6):
                page.wait_for_function(
                    """() => [...document.querySelectorAll('#live dt')].some(dt => dt.textContent === 'running'
                        && Number(dt.nextElementSibling.textContent) >= 1)"""
                )
                page.wait_for_function(
                    """() => [...document.querySelectorAll('#live dt')].some(dt => dt.textContent === 'tokens/s'
                        && Number(dt.nextElementSibling.textContent) > 0)"""
                )
                assert _dd(page, "live", "GPU busy (modeled)").endswith("%")
                page.screenshot(path=str(screenshot_dir / "ui.png"))
        finally:
            page.close()


def _limited_config(path: Path) -> Path:
    """The skeleton on the simulated engine with a 64 KiB image limit (the key comes from --api-key)."""
    tuned = TunedConfig(
        engine=EngineKind.SIMULATED,
        engine_config=EngineConfig(model=MODEL_DIR, served_model_name="qwen3-vl-4b", load_format="dummy"),
        serving=ServingSettings(max_image_bytes=64 * 1024),
    )
    return tuned.write(path)


def test_a_wrong_key_a_text_file_and_an_oversized_image_get_the_apis_errors(browser: Any, tmp_path: Path) -> None:
    config = _limited_config(tmp_path / "limited.yaml")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image\n")
    big = _png(tmp_path / "noise.png", size=(400, 400), noise=True)
    assert big.stat().st_size > 64 * 1024
    with running_server(["--config", str(config), "--api-key", API_KEY]) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{url}/ui")
            page.wait_for_selector("#key-form:not([hidden])")  # nothing shown before the key
            assert page.inner_text("#served") == ""

            page.fill("#api-key", "wrong-key")
            page.click("#key-form button[type=submit]")
            page.wait_for_selector("#notice:not([hidden])")
            assert page.inner_text("#notice") == "401 invalid_api_key: Invalid or missing API key"

            page.fill("#api-key", API_KEY)
            page.click("#key-form button[type=submit]")
            page.wait_for_selector("#key-form", state="hidden")
            assert _dd(page, "served", "served as") == "qwen3-vl-4b"

            def ask(file: Path) -> str:
                count = page.locator("#messages li.error").count()
                page.set_input_files("#image-input", str(file))
                page.wait_for_selector("#attachment:not([hidden])")
                page.fill("#question", "What is this?")
                page.click("#send")
                error = page.locator("#messages li.error .text").nth(count)
                error.wait_for()
                return str(error.inner_text())

            text_data_url = "data:text/plain;base64," + base64.b64encode(text_file.read_bytes()).decode()
            expected_text_error = _api_error(url, "qwen3-vl-4b", text_data_url, API_KEY)
            assert "image/*" in expected_text_error
            assert ask(text_file) == expected_text_error

            big_data_url = "data:image/png;base64," + base64.b64encode(big.read_bytes()).decode()
            expected_size_error = _api_error(url, "qwen3-vl-4b", big_data_url, API_KEY)
            assert "max_image_bytes" in expected_size_error
            assert ask(big) == expected_size_error
            page.click("#remove-image")

            # The server took all of it in stride: healthy, and the page still chats.
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            page.fill("#question", "And now just text?")
            page.click("#send")
            page.wait_for_selector("#messages li.assistant[data-state='done']")
        finally:
            page.close()


def test_the_page_is_static_and_the_data_behind_it_needs_the_key(tmp_path: Path) -> None:
    """The page's files hold no data and load without the key; /autotune/gpu, like the API, needs it;
    the OpenAI routes answer as before; `serving.web_ui: false` turns the page off."""
    with running_server(["--model", MODEL_DIR, "--engine", "simulated", "--api-key", API_KEY]) as url:
        page = httpx.get(f"{url}/ui", timeout=5)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert httpx.get(f"{url}/ui/chat.js", timeout=5).headers["content-type"].startswith("text/javascript")
        assert httpx.get(f"{url}/ui/nothing.js", timeout=5).json()["error"]["code"] == 404
        assert httpx.post(f"{url}/ui", timeout=5).status_code == 405
        assert httpx.get(f"{url}/autotune/gpu", timeout=5).status_code == 401
        gpu = httpx.get(f"{url}/autotune/gpu", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5).json()
        assert gpu == {"available": False, "reason": "simulated engine: GPU busy time is modeled (see /metrics)", "gpus": []}
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 401
    off = TunedConfig(engine=EngineKind.SIMULATED, engine_config=EngineConfig(model=MODEL_DIR),
                      serving=ServingSettings(web_ui=False))
    with running_server(["--config", str(off.write(tmp_path / "web-ui-off.yaml"))]) as url:
        assert httpx.get(f"{url}/ui", timeout=5).status_code == 404
