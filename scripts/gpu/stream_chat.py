"""A streamed image chat against an OpenAI-compatible server; prints the SSE stream and timings."""

import base64
import io
import sys
import time

import httpx
from PIL import Image

url = sys.argv[1].rstrip("/")
image = Image.new("RGB", (448, 448), (40, 120, 200))
buf = io.BytesIO()
image.save(buf, format="PNG")
data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
body = {
    "model": httpx.get(url + "/v1/models").json()["data"][0]["id"],
    "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "text", "text": "Describe this image."}]}],
    "max_tokens": 32, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
}
t0 = time.perf_counter()
chunks = 0
with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
    print("status", r.status_code, "engine header", r.headers.get("x-autotune-engine"))
    for line in r.iter_lines():
        if not line.startswith("data: "):
            continue
        if chunks < 3 or "usage" in line:
            print(line[:300])
        chunks += 1
        if chunks == 1:
            print(f"ttft_ms={1000 * (time.perf_counter() - t0):.1f}")
print(f"chunks={chunks} e2e_ms={1000 * (time.perf_counter() - t0):.1f}")
