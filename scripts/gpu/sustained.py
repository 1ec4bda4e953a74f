"""The sustained SLO rate of served configs on one GPU, three ways, one server each (issue 16's proof).

For every config, in order, on one server started by `autotune serve --engine vllm`:
  1. objective: the tuner's own objective (`autotune bench --space SPACE`: the space's workload, SLO and load,
     i.e. its steady-state windows and verdicts), the bisection started from a known bracket (`--rate-range`)
     instead of a capacity probe so the lease holds both configs;
  2. sustained: `autotune bench --slo-rate --window-s 120`, bracketed from the objective's rate upwards: the first
     120 s window at the objective's rate, the next 5% above it (a pass and a fail bound the sustained rate to 5%);
  3. confirmation: VLLM_BENCH_PROCS `vllm bench serve` processes sharing the sustained rate for VLLM_BENCH_S (random-mm,
     the same image size and token lengths as the workload), their per-request p99s combined
     (`autotune.bench.vllm_bench.combine`); when they miss the SLO, the same again at VLLM_BENCH_STEP_DOWN (0.95) x
     that rate in `vllm-bench-lower/`, so that the independent client's own rate is bracketed, not only refuted.
Every step checks the time left (DEADLINE_EPOCH) and is skipped, saying so, when it cannot finish.
With SUSTAINED_ONLY=1 step 1 is left out and LOW:HIGH bracket the 120 s windows themselves (a pair of configs whose
objectives were measured before fits one lease: on an H100 each config's objective took ~270 s of ~800; with
VLLM_BENCH_PROCS=0 the vllm bench step is left out too, for a pair whose confirmations were recorded before). With
CONFIRM_ONLY=1 steps 1 and 2 are left out and step 3 runs at LOW (a serving change checked against a rate measured
before, in the few minutes a lease has left).

For the config named by SOAK_CONFIG (issue 20's device items), on the same server afterwards:
  4. soak: `autotune soak` at SOAK_FRACTION (0.8) of the sustained rate for the time left (less KILL_RESERVE_S):
     server RSS, open descriptors, GPU memory and per-request latency over time (`soak/soak.json`);
  5. engine death: `autotune bench --rate` at that rate, and a few seconds into its window the engine core is killed
     with SIGKILL: when /health stopped answering 200, whether the server exited by itself, which of its processes
     were left, GPU memory before, during and after (`engine-kill/record.json`);
  6. restart: the same config started again on the same GPU and a COMPARE_S window at the soak rate measured again,
     beside the same window measured before the soak (`engine-kill/restart.json`, before.json, after-restart.json).
With SOAK_RATE (req/s) the soak config skips steps 1-3 and soaks at that rate (a sustained rate measured before, on
this GPU model: say which in the record); with ENGINE_KILL=0 steps 5-6 are left out (tests/gpu/test_gpu_engine_death.py
kills an engine core inside a tuner trial instead) and the soak has the time they would have taken.

usage (on the GPU host, after staging; detached so no device command cuts a window):
  RUN_DIR=/root/sustained DEADLINE_EPOCH=$(( $(date +%s) + 1500 )) \
    setsid nohup python3 scripts/gpu/sustained.py NAME=CONFIG:LOW:HIGH ... > /root/sustained.log 2>&1 &
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from autotune.bench.vllm_bench import VllmBenchCombined, combine
from autotune.bench.window_log import describe_window, read_windows, windows_path
from autotune.config import EngineKind
from autotune.errors import ConfigError
from autotune.observe.cpu import classify_process
from autotune.tune.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]  # run with PYTHONPATH=$PWD (scripts/gpu/env.sh)

SPACE = os.environ.get("SPACE", "search_spaces/qwen3-vl-4b.yaml")
SLO_MS = {"ttft_ms": 2000.0, "tpot_ms": 50.0}  # p99 bounds
SLO = [arg for name, bound in SLO_MS.items() for arg in ("--slo", f"{name}={bound:g}")]
WINDOW_S = float(os.environ.get("WINDOW_S", "120"))
SERVER_CPUS = os.environ.get("SERVER_CPUS", "0-9")
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "10-15")
VLLM_BENCH_PROCS = int(os.environ.get("VLLM_BENCH_PROCS", "3"))
VLLM_BENCH_S = float(os.environ.get("VLLM_BENCH_S", "60"))
# On 2026-12-05 (H100) random-mm's noise JPEGs (3.7x the bytes of the workload's photo-like ones) missed p99 TPOT at the
# best config's sustained rate: one step down brackets the rate this other client sustains (1 to skip it).
VLLM_BENCH_STEP_DOWN = float(os.environ.get("VLLM_BENCH_STEP_DOWN", "0.95"))
MODEL_DIR = os.environ.get("MODEL", "/root/models/qwen3-vl-4b-instruct")
RUN_DIR = Path(os.environ.get("RUN_DIR", "/root/sustained"))
DEADLINE = float(os.environ.get("DEADLINE_EPOCH", str(time.time() + 1500)))
ENGINE = EngineKind(os.environ.get("ENGINE", "vllm"))  # simulated: a smoke test of this script without a GPU
SOAK_CONFIG = os.environ.get("SOAK_CONFIG", "")
SOAK_FRACTION = float(os.environ.get("SOAK_FRACTION", "0.8"))
# One client process saturated at 64 req/s of vlm-chat on one core (event-loop lag p99 26 ms): fixed, so that a
# saturated soak is not run again from the start with more processes (it would outlast the lease).
SOAK_PROCESSES = int(os.environ.get("SOAK_PROCESSES", "3"))
MIN_SOAK_S = float(os.environ.get("MIN_SOAK_S", "120"))
# The soak's memory bound for a GPU server: its process tree holds ~26 GiB of RSS (CUDA contexts, pinned buffers of two
# engine cores and four API servers), so 256 MiB (~1%) of growth from the first judged window to the last (of its PSS; of
# its RSS in the records of 2026-12-06 and before); `autotune soak`'s own default (32 MiB) is sized for the simulated
# engine's one process.
SOAK_MEMORY_GROWTH_MIB = float(os.environ.get("SOAK_MEMORY_GROWTH_MIB", "256"))
# The soak's settling span (recorded, not judged): on 2026-12-06 the best config's tree grew +6 GiB of RSS under its
# first load, at a rate that fell from 3,503 to 261 MiB/min within 200 s (a fill of allocator arenas and buffers
# of 8 processes); on 2026-12-07 its two GPU workers' PSS still grew +277 MiB/min 120-150 s in (from +2,712 in the first
# 30 s). The bounds compare the windows after it: 300 s, at most a third of the soak (a leak goes on for the other two).
SOAK_SETTLE_S = float(os.environ.get("SOAK_SETTLE_S", "300"))
COMPARE_S = int(os.environ.get("COMPARE_S", "45"))  # the fixed-rate window before the kill and after the restart
RESTART_NEEDS_S = float(os.environ.get("RESTART_NEEDS_S", "290"))  # a start (~230 s, less on a compile-cache hit) and that window
# The engine-kill step and the server's stop (100 s), then the restart and its window.
ENGINE_KILL = os.environ.get("ENGINE_KILL", "1") == "1"
KILL_RESERVE_S = float(os.environ.get("KILL_RESERVE_S", str(100 + RESTART_NEEDS_S) if ENGINE_KILL else "0"))
SOAK_RATE = float(os.environ["SOAK_RATE"]) if os.environ.get("SOAK_RATE") else None
SUSTAINED_ONLY = os.environ.get("SUSTAINED_ONLY", "0") == "1"
CONFIRM_ONLY = os.environ.get("CONFIRM_ONLY", "0") == "1"


def cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def say(message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with open(RUN_DIR / "progress.log", "a") as handle:
        handle.write(line + "\n")


def left_s() -> float:
    return DEADLINE - time.time()


def bench(url: str, out: Path, *args: str) -> dict:
    """One `autotune bench` run, cut when the lease would end (then its result file is missing: the windows it
    finished are in its .windows.jsonl, and said in the progress log)."""
    argv = [sys.executable, "-m", "autotune.cli", "bench", "--url", url, "--client-cpus", CLIENT_CPUS, "--quiet",
            "--output", str(out), *args]
    say("$ " + " ".join(argv[2:]))
    started = time.time()
    with open(out.with_suffix(".log"), "w") as log:
        try:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=max(1.0, left_s())).returncode
        except subprocess.TimeoutExpired:
            code = "cut by the lease"
    say(f"  exit {code} after {time.time() - started:.0f} s")
    if not out.exists() and (log_path := windows_path(out)).exists():  # cut: the windows it finished, from its log
        for number, logged in enumerate(read_windows(log_path), 1):
            say("  " + describe_window(number, logged.window, logged.simulated))
    return json.loads(out.read_text()) if out.exists() else {}


def gpu_memory_used_mib() -> float | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True)
    except FileNotFoundError:  # no NVIDIA driver: the simulated smoke test
        return None
    return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None


def wait_gpu_released(limit_s: float = 90.0) -> float | None:
    """Poll GPU memory until it is back under 2 GiB (the next server must not start beside the last one)."""
    deadline = time.time() + min(limit_s, max(0.0, left_s()))
    used = gpu_memory_used_mib()
    while used is not None and used > 2048 and time.time() < deadline:
        time.sleep(1)
        used = gpu_memory_used_mib()
    return used


def vllm_bench(url: str, model: str, rate: float, folder: Path) -> VllmBenchCombined | None:
    """The independent client at `rate`, its files in `folder`; returns their combined verdict (None when unreadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_process = rate / VLLM_BENCH_PROCS
    prompts = max(1, round(per_process * VLLM_BENCH_S))
    procs = []
    for k in range(VLLM_BENCH_PROCS):
        argv = ["taskset", "-c", CLIENT_CPUS, sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve",
                "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
                "--model", model, "--tokenizer", MODEL_DIR, "--dataset-name", "random-mm",
                "--random-mm-base-items-per-request", "1", "--random-mm-limit-mm-per-prompt", '{"image":1,"video":0}',
                "--random-mm-bucket-config", "{(448,448,1):1.0}", "--random-input-len", "64",
                "--random-output-len", "128", "--ignore-eos", "--num-prompts", str(prompts),
                "--request-rate", f"{per_process:.4f}", "--seed", str(1000 + k), "--save-result", "--save-detailed",
                "--result-dir", str(folder), "--result-filename", f"vllm-bench-p{k}.json"]
        say(f"$ vllm bench serve p{k}: {per_process:.2f} req/s x {prompts} prompts")
        procs.append(subprocess.Popen(argv, stdout=open(folder / f"vllm-bench-p{k}.log", "w"), stderr=subprocess.STDOUT))
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, left_s()))
        except subprocess.TimeoutExpired:
            proc.kill()
            say("  vllm bench cut by the lease")
    files = [folder / f"vllm-bench-p{k}.json" for k in range(VLLM_BENCH_PROCS)]
    try:
        combined = combine([f for f in files if f.exists()], SLO_MS)
    except ConfigError as exc:  # a process cut by the lease left no file, or an unreadable one
        say(f"  vllm bench not combined: {exc}")
        return None
    (folder / "vllm-bench-combined.json").write_text(combined.model_dump_json())
    say(f"  vllm bench combined: {combined.model_dump_json()[:400]}")
    return combined


def soak(server: ServerProcess, folder: Path, rate: float) -> None:
    duration_s = min(float(os.environ.get("SOAK_MAX_S", "1800")), left_s() - KILL_RESERVE_S - 40)
    if duration_s < MIN_SOAK_S:
        say(f"soak skipped: {left_s():.0f} s left")
        return
    settle_s = min(SOAK_SETTLE_S, round(duration_s / 3))
    window_s = max(30.0, round((duration_s - settle_s) / 5))
    out = folder / "soak"
    argv = ["taskset", "-c", CLIENT_CPUS, sys.executable, "-m", "autotune.cli", "soak", "--url", server.base_url,
            "--pid", str(server.pid), "--rate", f"{rate:.3f}", "--duration-s", f"{duration_s:.0f}",
            "--window-s", f"{window_s:.0f}", "--settle-s", f"{settle_s:.0f}", "--processes", str(SOAK_PROCESSES), "--out", str(out),
            "--memory-growth-mib", f"{SOAK_MEMORY_GROWTH_MIB:.0f}"]
    say(f"$ soak at {rate:.2f} req/s for {duration_s:.0f} s: {settle_s:.0f} s of settling, then windows of {window_s:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out / "soak.log", "w") as log:
        try:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                  timeout=max(1.0, left_s() - KILL_RESERVE_S + 30)).returncode
        except subprocess.TimeoutExpired:
            code = "cut by the lease"
    say(f"  soak exit {code} after {time.time() - started:.0f} s: {(out / 'soak.log').read_text()[-600:]}")


def group_processes(root_pid: int) -> list[dict]:
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    found = []
    for process in processes:
        try:
            found.append({"pid": process.pid, "name": process.name(), "cmdline": process.cmdline()[:3],
                          "role": classify_process(process.name(), process.cmdline())})
        except psutil.Error:
            continue
    return found


def requests_in_server(url: str) -> float:
    """Running plus waiting requests from vLLM's Prometheus gauges (0 where the server has none)."""
    text = subprocess.run(["curl", "-s", "-m", "2", f"{url}/metrics"], capture_output=True, text=True).stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")))


def still_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def health_code(url: str) -> int | None:
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", f"{url}/health"],
                          capture_output=True, text=True)
    return int(done.stdout) if done.stdout.strip().isdigit() and done.stdout.strip() != "000" else None


def kill_engine_under_load(server: ServerProcess, folder: Path, rate: float) -> None:
    """SIGKILL the engine core a few seconds into a measured window and record what the server and the GPU do."""
    if left_s() < 75:
        say(f"engine kill skipped: {left_s():.0f} s left")
        return
    out = folder / "engine-kill"
    out.mkdir(parents=True, exist_ok=True)
    processes = group_processes(server.pid)
    engines = [p for p in processes if p["role"] == "engine_core"]
    record: dict = {"rate_rps": rate, "processes_before": processes, "gpu_memory_before_kill_mib": gpu_memory_used_mib()}
    if not engines:
        say(f"engine kill skipped: no engine core among {processes}")
        (out / "record.json").write_text(json.dumps(record, indent=2))
        return
    argv = [sys.executable, "-m", "autotune.cli", "bench", "--url", server.base_url, "--client-cpus", CLIENT_CPUS,
            "--quiet", "--rate", f"{rate:.3f}", "--duration", "30", "--workload", "vlm-chat", *SLO,
            "--processes", str(SOAK_PROCESSES),
            "--output", str(out / "bench.json")]
    say(f"$ engine kill: {' '.join(argv[2:])}; SIGKILL to {[p['pid'] for p in engines]} once requests run")
    load = subprocess.Popen(argv, stdout=open(out / "bench.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    # The measured window is under way once more requests are in the server than a warm-up sends (it sends <= 32).
    deadline = time.time() + 90
    in_flight = 0.0
    while time.time() < deadline and load.poll() is None and in_flight < 50:
        time.sleep(0.5)
        in_flight = requests_in_server(server.base_url)
    record["requests_in_server_at_window"] = in_flight
    time.sleep(5)
    killed_at = time.time()
    for engine in engines:
        os.kill(engine["pid"], signal.SIGKILL)
    record["killed"] = engines
    record["gpu_memory_at_kill_mib"] = gpu_memory_used_mib()
    health_lost_s = server_exit_s = None
    while time.time() - killed_at < 45:
        if health_lost_s is None and health_code(server.base_url) != 200:
            health_lost_s = time.time() - killed_at
        if server_exit_s is None and not server.alive():
            server_exit_s = time.time() - killed_at
        if health_lost_s is not None and server_exit_s is not None:
            break
        time.sleep(0.5)
    record.update(health_lost_after_s=health_lost_s, server_exited_by_itself_after_s=server_exit_s,
                  server_exit_code=server.exit_code)
    try:
        load.wait(timeout=60)
    except subprocess.TimeoutExpired:
        load.kill()
    record["bench_exit_code"] = load.returncode
    if (out / "bench.json").exists():
        bench_result = json.loads((out / "bench.json").read_text())
        requests = bench_result.get("requests") or []
        errors = sorted({(r.get("error") or "")[:160] for r in requests if not r.get("success")})
        record["bench"] = {"requests": len(requests), "failed": sum(not r.get("success") for r in requests),
                           "errors": errors[:10]}
    stop_started = time.time()
    server.stop()
    record["stop_s"] = time.time() - stop_started
    record["processes_left_after_stop"] = [p["pid"] for p in processes if still_running(p["pid"])]
    record["gpu_memory_after_mib"] = wait_gpu_released()
    record["gpu_memory_released_after_kill_s"] = time.time() - killed_at
    log_text = (folder / "serve.log").read_text(errors="replace")
    record["serve_log_after_kill"] = [line for line in log_text.splitlines()
                                      if any(k in line for k in ("died", "Dead", "dead", "shutdown", "ERROR"))][-20:]
    (out / "record.json").write_text(json.dumps(record, indent=2))
    say(f"engine kill: {json.dumps({k: v for k, v in record.items() if k not in ('processes_before', 'serve_log_after_kill')})}")


def fixed_rate_window(url: str, out: Path, rate: float) -> dict:
    """The window the engine-kill step compares: the same rate, workload and seed before the kill and after the restart."""
    return bench(url, out, "--rate", f"{rate:.3f}", "--duration", str(COMPARE_S), "--workload", "vlm-chat", *SLO,
                 "--seed", "11", "--processes", str(SOAK_PROCESSES))


def window_figures(result: dict) -> dict:
    summary = result.get("summary") or {}
    return {"completed": summary.get("completed"), "failed": summary.get("failed"),
            "throughput_rps": summary.get("throughput_rps"), "ttft_p99_ms": (summary.get("ttft_ms") or {}).get("p99"),
            "tpot_p99_ms": (summary.get("tpot_ms") or {}).get("p99"),
            "client_saturated": (summary.get("client") or {}).get("saturated")}


def restart_after_kill(config: str, out: Path, rate: float) -> None:
    """After the engine kill: the same config started again on the same GPU, and the window measured before the kill
    measured again (issue 20: the next trial measures normally)."""
    record: dict = {"rate_rps": rate, "window_s": COMPARE_S}
    if (out / "before.json").exists():
        record["before_kill"] = window_figures(json.loads((out / "before.json").read_text()))
    if left_s() < RESTART_NEEDS_S:
        say(f"restart after the kill skipped: {left_s():.0f} s left")
        record["skipped"] = f"{left_s():.0f} s left"
        (out / "restart.json").write_text(json.dumps(record, indent=2))
        return
    record["gpu_memory_before_restart_mib"] = wait_gpu_released()
    started = time.time()
    server = ServerProcess(Path(config), engine=ENGINE, port=8000, log_path=out / "serve-after-restart.log",
                           startup_timeout_s=min(600.0, left_s() - 60), cpus=cpu_list(SERVER_CPUS))
    try:
        server.start()
        record["startup_s"] = time.time() - started
        say(f"restart after the kill: ready after {record['startup_s']:.0f} s")
        record["after_restart"] = window_figures(fixed_rate_window(server.base_url, out / "after-restart.json", rate))
    except Exception as exc:  # noqa: BLE001 - recorded: the point of the step is whether the restart works
        record["start_failed"] = str(exc)[-2000:]
        say(f"restart after the kill failed: {exc}")
    finally:
        server.stop()
        record["gpu_memory_after_stop_mib"] = wait_gpu_released()
        (out / "restart.json").write_text(json.dumps(record, indent=2))
        say(f"restart after the kill: {json.dumps(record)}")


def measure(name: str, config: str, low: float, high: float) -> None:
    folder = RUN_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    if left_s() < float(os.environ.get("MIN_LEFT_TO_START_S", "400")):
        say(f"{name}: skipped, {left_s():.0f} s left")
        return
    memory_before = wait_gpu_released()
    say(f"{name}: starting {config} (GPU memory used {memory_before} MiB)")
    started = time.time()
    server = ServerProcess(Path(config), engine=ENGINE, port=8000, log_path=folder / "serve.log",
                           startup_timeout_s=min(600.0, left_s() - 60), cpus=cpu_list(SERVER_CPUS))
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - recorded, the next config still runs
        say(f"{name}: start failed: {exc}")
        (folder / "start-failed.txt").write_text(str(exc))
        server.stop()
        return
    startup_s = time.time() - started
    say(f"{name}: ready after {startup_s:.0f} s at {server.base_url}")
    record: dict = {"name": name, "config": config, "startup_s": startup_s, "server_cpus": SERVER_CPUS,
                    "client_cpus": CLIENT_CPUS, "window_s": WINDOW_S, "vllm_bench_s": VLLM_BENCH_S,
                    "gpu_memory_before_start_mib": memory_before}
    try:
        if name == SOAK_CONFIG and SOAK_RATE is not None:
            record["soak_rate_rps"] = SOAK_RATE
            soak(server, folder, SOAK_RATE)
            return
        model = json.loads(subprocess.run(["curl", "-s", f"{server.base_url}/v1/models"], capture_output=True,
                                          text=True).stdout)["data"][0]["id"]
        if SUSTAINED_ONLY or CONFIRM_ONLY:
            rate, bracket = low, f"{low:.3f}:{high:.3f}"
        else:
            objective = bench(server.base_url, folder / "objective.json", "--space", SPACE, "--rate-range",
                              f"{low}:{high}", "--server-pid", str(server.pid))
            rate = (objective.get("summary") or {}).get("slo_rate_rps") or low
            record["objective_rps"] = rate
            bracket = f"{rate:.3f}:{rate * 1.0495:.3f}"
        if CONFIRM_ONLY:
            say(f"{name}: 120 s windows left out (CONFIRM_ONLY): vllm bench at {rate:g} req/s")
        elif left_s() > 2.5 * WINDOW_S + 60:
            sustained = bench(server.base_url, folder / "sustained.json", "--slo-rate", "--workload", "vlm-chat", *SLO,
                              "--window-s", str(WINDOW_S), "--rate-range", bracket,
                              "--seed", "7", "--server-pid", str(server.pid))
            record["sustained_rps"] = (sustained.get("summary") or {}).get("slo_rate_rps")
        else:
            say(f"{name}: 120 s windows skipped, {left_s():.0f} s left")
        confirm_rate = record.get("sustained_rps") or rate
        if ENGINE is EngineKind.SIMULATED:
            say(f"{name}: vllm bench skipped (simulated engine)")
        elif VLLM_BENCH_PROCS == 0:
            say(f"{name}: vllm bench left out (VLLM_BENCH_PROCS=0)")
        elif left_s() > VLLM_BENCH_S + 60:
            confirmation = vllm_bench(server.base_url, model, confirm_rate, folder)
            record["vllm_bench_rate_rps"] = confirm_rate
            if confirmation is not None and not confirmation.meets_slo and VLLM_BENCH_STEP_DOWN < 1 \
                    and left_s() > VLLM_BENCH_S + 60:
                lower = confirm_rate * VLLM_BENCH_STEP_DOWN
                vllm_bench(server.base_url, model, lower, folder / "vllm-bench-lower")
                record["vllm_bench_lower_rate_rps"] = lower
        else:
            say(f"{name}: vllm bench skipped, {left_s():.0f} s left")
        if name == SOAK_CONFIG:
            soak_rate = SOAK_FRACTION * confirm_rate
            record["soak_rate_rps"] = soak_rate
            if not ENGINE_KILL:
                soak(server, folder, soak_rate)
                return
            (folder / "engine-kill").mkdir(exist_ok=True)
            fixed_rate_window(server.base_url, folder / "engine-kill" / "before.json", soak_rate)
            soak(server, folder, soak_rate)
            kill_engine_under_load(server, folder, soak_rate)
            restart_after_kill(config, folder / "engine-kill", soak_rate)
    finally:
        stop_started = time.time()
        server.stop()
        record["gpu_memory_after_stop_mib"] = wait_gpu_released()
        record["stop_s"] = time.time() - stop_started
        (folder / "record.json").write_text(json.dumps(record, indent=2))
        say(f"{name}: done {json.dumps(record)}")


def main() -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / "deadline").write_text(f"{DEADLINE:.0f}\n")  # scripts/gpu/wait_pack.sh waits at most until then
    for spec in sys.argv[1:]:
        name, _, rest = spec.partition("=")
        config, low, high = rest.rsplit(":", 2)
        measure(name, config, float(low), float(high))
    if os.environ.get("MARK_DONE", "1") != "1":  # the script that started it marks the run done after its own steps
        say("sustained.py: its steps done")
        return
    (RUN_DIR / "done").write_text("done\n")
    say("all done")


if __name__ == "__main__":
    main()
