"""The OpenAI-compatible API of `autotune serve --engine simulated`, through a real uvicorn process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from helpers.serving_testlib import MODEL_NAME, data_url, image_chat, png_bytes, sse_json, write_simulated_config

from autotune.config import ServingSettings
from helpers.servers import MODEL_DIR, running_server_process
from autotune.tune.server_process import ServerProcess
from serving.tokens import IMAGE_WRAPPER_TOKENS, VisionGrid, image_tokens

API_KEY = "test-key-123"
MAX_REQUEST_BYTES = 600_000
MAX_IMAGE_BYTES = 300_000
MAX_IMAGE_PIXELS = 4_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = write_simulated_config(
        tmp_path_factory.mktemp("api") / "tuned.yaml",
        serving=ServingSettings(
            max_request_bytes=MAX_REQUEST_BYTES,
            max_image_bytes=MAX_IMAGE_BYTES,
            max_image_pixels=MAX_IMAGE_PIXELS,
        ),
    )
    # Config files hold the key masked; the key itself comes from the environment.
    with running_server_process(["--config", str(config)], env={"AUTOTUNE_API_KEY": API_KEY}) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30, trust_env=False
    ) as http:
        yield http


def assert_openai_error(response: httpx.Response, status: int, param: str | None = "any") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-autotune-engine"] == "simulated"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param != "any":
        assert error["param"] == param
    return error


# -- happy paths ------------------------------------------------------------------------------
def test_health_is_open_and_labels_the_engine(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/health", trust_env=False)
    assert response.status_code == 200
    assert response.headers["x-autotune-engine"] == "simulated"


def test_models_lists_the_served_name(client: httpx.Client) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [MODEL_NAME]
    assert response.headers["x-autotune-engine"] == "simulated"


def test_image_chat_counts_image_tokens(client: httpx.Client) -> None:
    text_only = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Describe the image."}]}],
            "max_tokens": 4,
        },
    )
    with_image = client.post(
        "/v1/chat/completions", json=image_chat(data_url(png_bytes(448, 448)), max_tokens=6, ignore_eos=True)
    )
    assert text_only.status_code == 200 and with_image.status_code == 200, with_image.text
    body = with_image.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 6
    expected_image = image_tokens(448, 448, VisionGrid.from_model_dir(MODEL_DIR)) + IMAGE_WRAPPER_TOKENS
    assert usage["prompt_tokens"] - text_only.json()["usage"]["prompt_tokens"] == expected_image
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streamed_image_chat(client: httpx.Client) -> None:
    request = image_chat(data_url(png_bytes(300, 200)), max_tokens=12, ignore_eos=True, stream=True)
    response = client.post("/v1/chat/completions", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-autotune-engine"] == "simulated"
    chunks, last = sse_json(response.text)
    assert last == "[DONE]"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 12
    token_chunks = [c for c in chunks[:-1] if c["choices"][0]["delta"].get("content")]
    assert len(token_chunks) == 12  # one chunk per token, exactly max_tokens with ignore_eos
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in token_chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in token_chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


def test_without_ignore_eos_output_is_seeded_and_bounded(client: httpx.Client) -> None:
    request = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 40, "seed": 7}
    first = client.post("/v1/chat/completions", json=request).json()
    second = client.post("/v1/chat/completions", json=request).json()
    assert 1 <= first["usage"]["completion_tokens"] <= 40
    assert first["usage"]["completion_tokens"] == second["usage"]["completion_tokens"]
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]


def test_config_endpoint_shows_simulated_and_masks_the_key(client: httpx.Client) -> None:
    response = client.get("/autotune/config")
    assert response.status_code == 200
    document = response.json()
    assert document["engine"] == "simulated" and document["simulated"] is True
    assert document["engine_config"]["model"] == MODEL_DIR
    assert document["serving"]["api_key"] == "**********"
    assert API_KEY not in response.text
    assert document["engine_details"]["calibrated"] is False
    assert "provenance" in document


def test_metrics_after_requests(client: httpx.Client) -> None:
    client.post(
        "/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
    )
    text = client.get("/metrics").text
    assert 'autotune_requests_total{engine="simulated",status="200"}' in text
    assert "autotune_time_to_first_token_seconds_bucket" in text
    assert "autotune_output_tokens_total" in text
    for gauge in (
        "autotune_queue_depth",
        "autotune_running_seqs",
        "autotune_kv_cache_usage_ratio",
        "autotune_simulated_gpu_busy_fraction",
        "vllm:num_requests_running",
    ):
        assert f'{gauge}{{engine="simulated"}}' in text, gauge


# -- authentication ---------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}])
@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/autotune/config"])
def test_api_key_required_except_health(server: ServerProcess, headers: dict[str, str], path: str) -> None:
    response = httpx.get(f"{server.base_url}{path}", headers=headers, trust_env=False)
    error = assert_openai_error(response, 401)
    assert error["type"] == "authentication_error"
    assert httpx.get(f"{server.base_url}/health", headers=headers, trust_env=False).status_code == 200


def test_api_key_required_for_chat(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "x"}]},
        trust_env=False,
    )
    assert_openai_error(response, 401)


# -- bad input: always a 4xx with an OpenAI-style body ------------------------------------------
def post_raw(client: httpx.Client, content: bytes) -> httpx.Response:
    return client.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})


def test_malformed_json(client: httpx.Client) -> None:
    assert_openai_error(post_raw(client, b'{"model": "x", "messages": ['), 400)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 9}, "temperature"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
            "messages[0].content[0].image_url.url",
        ),
        ({"messages": []}, "messages"),
        ({"n": 2}, "n"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
def test_wrong_types_name_the_param(client: httpx.Client, patch: dict, param: str) -> None:
    request = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], **patch}
    assert_openai_error(client.post("/v1/chat/completions", json=request), 400, param)


def test_body_that_is_not_an_object(client: httpx.Client) -> None:
    assert_openai_error(post_raw(client, b"[1, 2]"), 400)


def test_unknown_model(client: httpx.Client) -> None:
    request = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    error = assert_openai_error(client.post("/v1/chat/completions", json=request), 404, "model")
    assert "no-such-model" in error["message"]


def test_unknown_route_is_openai_style_404(client: httpx.Client) -> None:
    assert_openai_error(client.get("/v1/nothing"), 404)


def test_oversized_body(client: httpx.Client) -> None:
    body = b'{"model": "x", "pad": "' + b"a" * MAX_REQUEST_BYTES + b'"}'
    error = assert_openai_error(post_raw(client, body), 413)
    assert str(MAX_REQUEST_BYTES) in error["message"]


def test_oversized_body_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "x", "pad": "'
        for _ in range(MAX_REQUEST_BYTES // 50_000 + 2):
            yield b"a" * 50_000
        yield b'"}'

    response = client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert_openai_error(response, 413)


def test_too_many_pixels_is_refused_before_decoding(client: httpx.Client) -> None:
    image = png_bytes(2500, 2000)  # 5 MP > MAX_IMAGE_PIXELS, compresses to a few KB
    assert len(image) < MAX_IMAGE_BYTES
    error = assert_openai_error(client.post("/v1/chat/completions", json=image_chat(data_url(image))), 400)
    assert "max_image_pixels" in error["message"]
    assert error["param"] == "messages[0].content[1].image_url.url"


def test_too_many_image_bytes(client: httpx.Client) -> None:
    noise = bytes(range(256)) * (MAX_IMAGE_BYTES // 256 + 10)
    error = assert_openai_error(client.post("/v1/chat/completions", json=image_chat(data_url(noise))), 400)
    assert "max_image_bytes" in error["message"]


def test_undecodable_image(client: httpx.Client) -> None:
    error = assert_openai_error(
        client.post("/v1/chat/completions", json=image_chat(data_url(b"\x89PNG\r\n\x1a\n not really a png"))), 400
    )
    assert "decode" in error["message"]


def test_bad_base64(client: httpx.Client) -> None:
    error = assert_openai_error(
        client.post("/v1/chat/completions", json=image_chat("data:image/png;base64,@@@not-base64@@@")), 400
    )
    assert "base64" in error["message"]


def test_unsupported_image_scheme(client: httpx.Client) -> None:
    assert_openai_error(client.post("/v1/chat/completions", json=image_chat("file:///etc/passwd")), 400)


def test_private_image_urls_are_refused_without_connecting(
    client: httpx.Client, tripwire: tuple[int, list[object]]
) -> None:
    port, accepted = tripwire
    for url in (
        f"http://127.0.0.1:{port}/cat.png",
        f"http://localhost:{port}/cat.png",
        "http://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/cat.png",
    ):
        error = assert_openai_error(client.post("/v1/chat/completions", json=image_chat(url)), 400)
        assert "address" in error["message"], url
    assert accepted == []


def test_bad_input_never_reached_the_catch_all(client: httpx.Client, server: ServerProcess) -> None:
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics
    assert "internal error" not in server.log_tail(10_000)


def test_cache_reset_routes_exist_only_in_vllm_dev_mode(client: httpx.Client) -> None:
    from autotune.config import EngineConfig, TunedConfig
    from serving.app import dev_mode_enabled

    assert_openai_error(client.post("/reset_prefix_cache"), 404, param=None)  # as vLLM without VLLM_SERVER_DEV_MODE=1
    tuned = TunedConfig(engine_config=EngineConfig(model=MODEL_DIR, env={"VLLM_SERVER_DEV_MODE": "1"}))
    assert dev_mode_enabled(tuned, {}) is True
    assert dev_mode_enabled(TunedConfig(engine_config=EngineConfig(model=MODEL_DIR)), {"VLLM_SERVER_DEV_MODE": "0"}) is False
