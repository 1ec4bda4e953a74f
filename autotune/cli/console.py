"""The CLI's rich consoles. On a terminal rich takes its width; piped or redirected output (`| grep`, `> file`,
`| less -S`) would be wrapped at rich's default of 80 columns, breaking every table row over several lines, so it
gets a width no table of ours reaches. `COLUMNS` set in the environment still wins."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 1000


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if "COLUMNS" in os.environ or stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH)
