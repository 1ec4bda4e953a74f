#!/usr/bin/env bash
# Services the CPU tests need (none yet); PostgreSQL for the parallel-workers test is added by its issue.
exit 0
