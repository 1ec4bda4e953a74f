"""`python -m autotune.cli ...` (how the tuner starts `autotune serve` without relying on PATH)."""

from autotune.cli import main

main()
