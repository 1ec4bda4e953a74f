"""The chat page at `/ui`, served by `AutotuneGuard` in front of both engines' apps (ours and vLLM's).

The page is three static files (`static/`): plain HTML, CSS and JavaScript, no build step and nothing fetched
from elsewhere. They hold no data, so they are served without the API key (a browser cannot put a Bearer
header on a page load); everything the page shows it fetches from the guarded API with the key the person
enters: `/autotune/config`, `/v1/models`, `/v1/chat/completions` (streamed), `/metrics`, and `/autotune/gpu`
(below). A bad image or a wrong key thus gets the API's own error, shown as it is.

Why not Gradio: with the vLLM engine, `autotune serve` is vLLM's server with `--api-server-count` processes
sharing one port (every tuned config in experiments/ has 2 to 6), and Gradio keeps each session's queue in the
process that served it, so a page's requests spread over the processes lose their session. The page's
streamed answer is also the API's own response, not a second hop through a server-side handler.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from importlib import resources

from autotune.observe.gpu import gpu_activity_now

UI_PATH = "/ui"
GPU_PATH = "/autotune/gpu"

_FILES = {
    UI_PATH: ("index.html", "text/html; charset=utf-8"),
    UI_PATH + "/": ("index.html", "text/html; charset=utf-8"),
    UI_PATH + "/index.html": ("index.html", "text/html; charset=utf-8"),
    UI_PATH + "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    UI_PATH + "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}

# Only this server's own files and API; images are shown from data: URLs; no framing by other sites.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def is_ui_path(path: str) -> bool:
    return path == UI_PATH or path.startswith(UI_PATH + "/")


@functools.cache
def asset(path: str) -> Asset | None:
    """The file served at `path` (under /ui), or None."""
    entry = _FILES.get(path)
    if entry is None:
        return None
    name, content_type = entry
    return Asset(resources.files(__package__).joinpath("static", name).read_bytes(), content_type)


def gpu_activity_document(measured: bool) -> bytes:
    """GET /autotune/gpu: each visible GPU's utilization and memory now (NVML), or why it is not known.
    `measured` is False for the simulated engine, whose GPU is a model (its busy time is in /metrics)."""
    if not measured:
        return json.dumps(
            {"available": False, "reason": "simulated engine: GPU busy time is modeled (see /metrics)", "gpus": []}
        ).encode()
    gpus = gpu_activity_now()
    if gpus is None:
        return json.dumps({"available": False, "reason": "NVML sees no GPU here", "gpus": []}).encode()
    return json.dumps({"available": True, "reason": None, "gpus": [asdict(gpu) for gpu in gpus]}).encode()
