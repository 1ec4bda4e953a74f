// The chat page of `autotune serve` (/ui). Everything it shows comes from the server's own API, with the
// same key and the same errors as any client: GET /autotune/config and /v1/models (what is served),
// POST /v1/chat/completions with stream: true (the answer, token by token), GET /metrics and /autotune/gpu
// (live figures). Text from the server is inserted with textContent only, never parsed as HTML.
"use strict";

const KEY_STORE = "autotune-api-key";
const METRICS_EVERY_MS = 2000;
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  model: null,
  history: [], // OpenAI messages of this chat, images included
  image: null, // {name, dataUrl} to send with the next question
  busy: false,
  previous: null, // the last /metrics sample: {t, tokens, requests, gpuBusy}
  timer: null,
};

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
  describe() {
    return `${this.status}${this.code ? " " + this.code : ""}: ${this.message}`;
  }
}

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

// An OpenAI-style error body ({"error": {"message", "code"}}), vLLM's older {"message"}, or plain text.
function apiErrorFrom(status, text) {
  let message = text.trim() || `HTTP ${status}`;
  let code = null;
  try {
    const body = JSON.parse(text);
    const error = body && typeof body.error === "object" && body.error !== null ? body.error : body;
    if (error && typeof error.message === "string") message = error.message;
    else if (body && typeof body.detail === "string") message = body.detail;
    if (error && error.code !== undefined && error.code !== null && typeof error.code !== "number") code = String(error.code);
  } catch (_) {
    /* not JSON: keep the text */
  }
  return new ApiError(status, message, code);
}

async function getJson(path) {
  const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
  const text = await response.text();
  if (!response.ok) throw apiErrorFrom(response.status, text);
  return JSON.parse(text);
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function fill(list, rows) {
  const element = $(list);
  element.replaceChildren();
  for (const [term, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    element.append(dt, dd);
  }
}

function number(value, digits = 2) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits).replace(/\.?0+$/, "") : null;
}

// ---- what is served -------------------------------------------------------------------------------------

const HIDDEN_SETTINGS = new Set(["model", "served_model_name", "env", "extra_engine_args"]);
const DEFAULT_SETTINGS = { dtype: "auto", load_format: "auto", kv_cache_dtype: "auto", tensor_parallel_size: 1, data_parallel_size: 1, engines_per_gpu: 1 };

function renderServed(config, model) {
  const simulated = Boolean(config.simulated);
  const badge = $("engine-badge");
  badge.textContent = simulated ? "SIMULATED engine (CPU stand-in, modeled figures)" : `${config.engine} engine`;
  badge.classList.toggle("simulated", simulated);
  badge.hidden = false;
  $("model-name").textContent = model.id;
  const engine = config.engine_config || {};
  const details = config.engine_details || {};
  const rows = [
    ["engine", simulated ? `${config.engine} (CPU stand-in, not a GPU)` : config.engine],
    ["model", engine.model],
    ["served as", model.id],
    ["max_model_len", model.max_model_len],
  ];
  if (simulated && details.profile) rows.push(["profile", `${details.profile} (${details.calibrated ? "calibrated" : "not calibrated"})`]);
  for (const [name, value] of Object.entries(engine)) {
    if (HIDDEN_SETTINGS.has(name) || value === null || DEFAULT_SETTINGS[name] === value || name === "max_model_len") continue;
    rows.push([name, typeof value === "object" ? JSON.stringify(value) : value]);
  }
  fill("served", rows);

  const provenance = config.provenance || {};
  const origin = provenance.study ? provenance.study : "none (vLLM defaults, not from a study)";
  const objectives = (provenance.objectives || []).map((objective) => {
    const value = number(objective.value);
    const baseline = (provenance.baseline_metrics || {})[objective.name];
    const ratio = typeof baseline === "number" && baseline > 0 && typeof objective.value === "number"
      ? ` (${(objective.value / baseline).toFixed(2)}x vLLM defaults)` : "";
    return `${objective.name} ${objective.direction === "minimize" ? "↓" : "↑"} ${value ?? "-"}${ratio}`;
  });
  fill("provenance", [
    ["study", origin],
    ["trial", provenance.trial_number],
    ["objective", objectives.join("; ")],
    ["workload", provenance.workload && provenance.workload.name],
    ["measured on", provenance.simulated ? "simulated engine" : ((provenance.hardware || {}).gpus || []).join(", ")],
    ["created", provenance.created_at ? provenance.created_at.replace("T", " ").slice(0, 19) + " UTC" : null],
  ]);
}

// ---- live figures from /metrics -------------------------------------------------------------------------

// Prometheus text format: `name{labels} value`; returns {name: [{labels, value}]}.
function parseMetrics(text) {
  const series = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    (series[match[1]] ||= []).push({ labels: match[2] || "", value });
  }
  return series;
}

function total(series, name, labelFilter) {
  const entries = (series[name] || []).filter((entry) => !labelFilter || entry.labels.includes(labelFilter));
  return entries.length ? entries.reduce((sum, entry) => sum + entry.value, 0) : null;
}

function firstOf(series, names, labelFilter) {
  for (const name of names) {
    const value = total(series, name, labelFilter);
    if (value !== null) return value;
  }
  return null;
}

async function gpuActivity() {
  try {
    return await getJson("/autotune/gpu");
  } catch (_) {
    return null;
  }
}

async function refreshMetrics() {
  let series;
  try {
    const response = await fetch("/metrics", { headers: authHeaders(), cache: "no-store" });
    const text = await response.text();
    if (!response.ok) throw apiErrorFrom(response.status, text);
    series = parseMetrics(text);
  } catch (error) {
    fill("live", [["metrics", error instanceof ApiError ? error.describe() : "server not answering"]]);
    return;
  }
  const now = performance.now() / 1000;
  const sample = {
    t: now,
    tokens: firstOf(series, ["vllm:generation_tokens_total", "autotune_output_tokens_total"]),
    requests: firstOf(series, ["vllm:request_success_total"]) ?? firstOf(series, ["autotune_requests_total"], 'status="200"'),
    gpuBusy: total(series, "autotune_simulated_gpu_busy_seconds_total"),
  };
  const previous = state.previous;
  state.previous = sample;
  const rate = (key) => {
    if (!previous || previous[key] === null || sample[key] === null || sample.t <= previous.t) return null;
    return Math.max(0, (sample[key] - previous[key]) / (sample.t - previous.t));
  };
  const kv = firstOf(series, ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]);
  const rows = [
    ["running", number(firstOf(series, ["vllm:num_requests_running"]), 0)],
    ["waiting", number(firstOf(series, ["vllm:num_requests_waiting"]), 0)],
    ["requests/s", number(rate("requests"))],
    ["tokens/s", number(rate("tokens"), 1)],
    ["KV cache", kv === null ? null : `${(kv * 100).toFixed(1)}%`],
  ];
  let gpuSource = "";
  if (sample.gpuBusy !== null) {
    const busy = rate("gpuBusy");
    rows.push(["GPU busy (modeled)", busy === null ? "…" : `${Math.min(100, busy * 100).toFixed(0)}%`]);
    gpuSource = "; GPU busy is the simulated engine's model, not a measurement";
  } else {
    const gpu = await gpuActivity();
    if (gpu && gpu.available) {
      for (const device of gpu.gpus) {
        rows.push([`GPU ${device.index}`, `${number(device.utilization_pct, 0) ?? "-"}% busy, ${number(device.memory_used_mib / 1024, 1) ?? "-"} GiB`]);
      }
      gpuSource = " and NVML (/autotune/gpu)";
    } else {
      rows.push(["GPU", gpu && gpu.reason ? `not known (${gpu.reason})` : "not known"]);
    }
  }
  fill("live", rows);
  $("gpu-source").textContent = gpuSource;
}

function startMetrics() {
  if (state.timer) clearInterval(state.timer);
  refreshMetrics();
  state.timer = setInterval(refreshMetrics, METRICS_EVERY_MS);
}

// ---- the chat -------------------------------------------------------------------------------------------

function addMessage(role, text, imageUrl) {
  const item = document.createElement("li");
  item.className = role;
  if (imageUrl) {
    const image = document.createElement("img");
    image.src = imageUrl;
    image.alt = "sent image";
    item.append(image);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function showError(item, error) {
  item.className = "error";
  item.dataset.state = "error";
  item.querySelector(".text").textContent = error instanceof ApiError ? error.describe() : `request failed: ${error.message}`;
}

// Server-sent events of /v1/chat/completions: `data: {chunk}` blocks, then `data: [DONE]`.
async function readStream(response, onChunk) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onChunk(JSON.parse(data));
    }
  }
}

async function send(event) {
  event.preventDefault();
  if (state.busy || !state.model) return;
  const question = $("question").value.trim();
  if (!question && !state.image) return;
  const content = [];
  if (state.image) content.push({ type: "image_url", image_url: { url: state.image.dataUrl } });
  if (question) content.push({ type: "text", text: question });
  const message = { role: "user", content };
  addMessage("user", question, state.image && state.image.dataUrl);
  const answer = addMessage("assistant", "");
  answer.dataset.state = "streaming";
  setBusy(true);
  const maxTokens = Math.max(1, Number($("max-tokens").value) || 256);
  const body = { model: state.model, messages: [...state.history, message], stream: true, max_tokens: maxTokens, stream_options: { include_usage: true } };
  const started = performance.now();
  let firstTokenMs = null;
  let usage = null;
  let text = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw apiErrorFrom(response.status, await response.text());
    await readStream(response, (chunk) => {
      if (chunk.error) throw apiErrorFrom(Number(chunk.error.code) || 500, JSON.stringify(chunk));
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        if (firstTokenMs === null) firstTokenMs = performance.now() - started;
        text += delta.content;
        answer.querySelector(".text").textContent = text;
      }
    });
    answer.dataset.state = "done";
    state.history.push(message, { role: "assistant", content: text });
    const meta = document.createElement("span");
    meta.className = "meta";
    const seconds = (performance.now() - started) / 1000;
    meta.textContent = [
      firstTokenMs === null ? null : `first token ${firstTokenMs.toFixed(0)} ms`,
      usage ? `${usage.completion_tokens} tokens in ${seconds.toFixed(2)} s` : `${seconds.toFixed(2)} s`,
      usage ? `prompt ${usage.prompt_tokens} tokens` : null,
    ].filter(Boolean).join(" · ");
    answer.append(meta);
    clearImage();
    $("question").value = "";
  } catch (error) {
    showError(answer, error);
    if (error instanceof ApiError && error.status === 401) askForKey(error);
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
}

function clearImage() {
  state.image = null;
  $("image-input").value = "";
  $("attachment").hidden = true;
}

function pickImage() {
  const file = $("image-input").files[0];
  if (!file) return;
  // Whatever the file is, it goes to the server as a data URL: the server judges it (type, size, pixels)
  // and its error is shown as it is, the same one any API client gets.
  const reader = new FileReader();
  reader.onload = () => {
    let dataUrl = String(reader.result);
    if (dataUrl.startsWith("data:;")) dataUrl = "data:application/octet-stream;" + dataUrl.slice(6);
    state.image = { name: file.name, dataUrl };
    const isImage = file.type.startsWith("image/");
    $("preview").hidden = !isImage;
    if (isImage) $("preview").src = dataUrl;
    $("attachment-name").textContent = `${file.name} (${(file.size / 1024).toFixed(1)} KiB)`;
    $("attachment").hidden = false;
  };
  reader.readAsDataURL(file);
}

// ---- the API key ----------------------------------------------------------------------------------------

function askForKey(error) {
  $("key-form").hidden = false;
  showNotice(state.key ? error.describe() : "");
  $("api-key").focus();
}

async function useKey(event) {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  sessionStorage.setItem(KEY_STORE, state.key);
  await connect();
}

async function connect() {
  try {
    const [config, models] = await Promise.all([getJson("/autotune/config"), getJson("/v1/models")]);
    state.model = models.data[0].id;
    $("key-form").hidden = true;
    showNotice("");
    renderServed(config, models.data[0]);
    startMetrics();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) askForKey(error);
    else showNotice(error instanceof ApiError ? error.describe() : `server not answering: ${error.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", send);
  $("key-form").addEventListener("submit", useKey);
  $("image-input").addEventListener("change", pickImage);
  $("remove-image").addEventListener("click", clearImage);
  $("clear").addEventListener("click", () => {
    state.history = [];
    $("messages").replaceChildren();
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  connect();
});
