"""`python -m autotune.cli ...`: the whole command without relying on PATH."""

from autotune.cli.main import main

main()
