"""Stack profiles of a server's Python threads: `profiler` (inside each server process) writes folded stacks while
`gate` is open, `reader` reads them back, `activity` classifies the engine core's samples; `dumps` prints stacks."""
