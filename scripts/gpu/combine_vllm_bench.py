"""Combine `vllm bench serve --save-detailed` results that shared one rate; prints one JSON object.

usage: combine_vllm_bench.py ttft_ms=2000 tpot_ms=50 FILE.json [FILE.json ...]
"""

import sys
from pathlib import Path

from autotune.bench.vllm_bench import combine


def main() -> None:
    slo = {key: float(value) for key, _, value in (a.partition("=") for a in sys.argv[1:] if "=" in a)}
    files = [Path(a) for a in sys.argv[1:] if "=" not in a]
    print(combine([f for f in files if f.exists()], slo).model_dump_json())


if __name__ == "__main__":
    main()
