"""The summary of a measurements folder of side-by-side GPU runs (experiments/gpu-runs/measurements): from the bench
result JSONs, vllm bench JSONs and server logs of its sub-folders (one per device command, `baseline/` with env.json).

Writes summary.json into the folder and returns the Markdown table of every run; every figure comes from a raw file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from autotune.report import recorded

KV_RE = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
LOAD_RE = re.compile(r"Model loading took ([\d.]+) GiB")
QUANT_RE = re.compile(r"quantization=([A-Za-z_0-9]+)")


def bench_row(path: Path) -> dict[str, Any]:
    result = json.loads(recorded.read_bytes(path))
    summary = result["summary"]
    gpu = summary.get("gpu") or {}
    return {
        "file": str(path),
        "tool": "autotune bench",
        "concurrency": result["load"].get("concurrency"),
        "completed": summary["completed"],
        "throughput_rps": summary["throughput_rps"],
        "goodput_rps": summary["goodput_rps"],
        "ttft_ms_p50": summary["ttft_ms"]["p50"],
        "ttft_ms_p99": summary["ttft_ms"]["p99"],
        "tpot_ms_p50": summary["tpot_ms"]["p50"],
        "tpot_ms_p99": summary["tpot_ms"]["p99"],
        "gpu_util_mean": gpu.get("util_mean"),
        "client_saturated": summary["client"]["saturated"],
        "prefix_cache_hit_rate": summary.get("server", {}).get("prefix_cache_hit_rate"),
    }


def vllm_bench_row(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    return {
        "file": str(path),
        "tool": "vllm bench serve",
        "concurrency": result.get("max_concurrency"),
        "completed": result["completed"],
        "throughput_rps": result["request_throughput"],
        "ttft_ms_p50": result["median_ttft_ms"],
        "ttft_ms_p99": result["p99_ttft_ms"],
        "tpot_ms_p50": result["median_tpot_ms"],
        "tpot_ms_p99": result["p99_tpot_ms"],
    }


def server_facts(log: Path) -> dict[str, Any]:
    text = recorded.read_text(log)
    kv = KV_RE.findall(text)
    loaded = LOAD_RE.findall(text)
    quant = QUANT_RE.findall(text)
    return {
        "log": str(log),
        "kv_cache_tokens": int(kv[-1].replace(",", "")) if kv else None,
        "weights_gib": float(loaded[-1]) if loaded else None,
        "quantization": quant[0] if quant else None,
    }


def pct(a: float, b: float) -> float:
    return round(100.0 * (a - b) / b, 2)


def summarize_measurements(root: Path) -> list[str]:
    """Write `root`/summary.json; the lines to print: a Markdown table of every run, then the comparisons."""
    benches = [bench_row(p) for p in sorted([*root.glob("*/bench-*.json"), *root.glob("*/bench-*.json.gz")])]
    vllm = [vllm_bench_row(p) for p in sorted(root.glob("*/vllm-bench-*.json"))]
    servers = {p.stem.removeprefix("serve-"): server_facts(p) for p in recorded.glob(root, "*/serve-*.log")}
    startup = {p.stem.removeprefix("startup-"): int(p.read_text().split("=")[1]) for p in sorted(root.glob("*/startup-*.txt"))}
    by_name = {Path(r["file"]).name.removesuffix(".gz").removesuffix(".json"): r for r in benches + vllm}

    ours16, theirs16 = by_name["bench-autotune-serve-c16"], by_name["vllm-bench-autotune-serve-c16"]
    two_procs = [by_name["vllm-bench-autotune-serve-c128-p0"], by_name["vllm-bench-autotune-serve-c128-p1"]]
    summary = {
        "hardware": json.loads((root / "baseline" / "env.json").read_text()),
        "agreement_c16": {
            "autotune_bench_rps": ours16["throughput_rps"],
            "vllm_bench_rps": theirs16["throughput_rps"],
            "throughput_diff_pct": pct(ours16["throughput_rps"], theirs16["throughput_rps"]),
            "autotune_bench_ttft_p50_ms": ours16["ttft_ms_p50"],
            "vllm_bench_ttft_p50_ms": theirs16["ttft_ms_p50"],
            "ttft_p50_diff_pct": pct(ours16["ttft_ms_p50"], theirs16["ttft_ms_p50"]),
        },
        "c128": {
            "autotune_bench_one_process_rps": by_name["bench-autotune-serve-c128"]["throughput_rps"],
            "vllm_bench_two_processes_rps": round(sum(r["throughput_rps"] for r in two_procs), 2),
        },
        "serving_layer": {
            name: {
                "autotune_serve_rps": by_name[f"bench-autotune-serve-c{c}"]["throughput_rps"],
                "vllm_serve_rps": by_name[f"bench-vllm-serve-c{c}"]["throughput_rps"],
                "diff_pct": pct(by_name[f"bench-autotune-serve-c{c}"]["throughput_rps"], by_name[f"bench-vllm-serve-c{c}"]["throughput_rps"]),
            }
            for name, c in (("c128", 128), ("c256", 256))
        },
        "startup_s": startup,
        "servers": servers,
        "runs": benches + vllm,
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| run | tool | conc. | req/s | goodput req/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms | GPU util % | client saturated |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in benches + vllm:
        good = r.get("goodput_rps")
        gpu = r.get("gpu_util_mean")
        lines.append(
            f"| {Path(r['file']).parent.name}/{Path(r['file']).name.removesuffix('.gz').removesuffix('.json')} | {r['tool']} | {r['concurrency']} | {r['throughput_rps']:.2f} | "
            f"{'' if good is None else f'{good:.2f}'} | {r['ttft_ms_p50']:.0f} / {r['ttft_ms_p99']:.0f} | "
            f"{r['tpot_ms_p50']:.1f} / {r['tpot_ms_p99']:.1f} | {'' if gpu is None else f'{gpu:.1f}'} | {r.get('client_saturated', '')} |"
        )
    lines.append("")
    lines.append(json.dumps({k: summary[k] for k in ("agreement_c16", "c128", "serving_layer", "startup_s")}, indent=2))
    lines.append(json.dumps(servers, indent=2))
    return lines
