#!/usr/bin/env bash
# Services and programs the CPU tests need, on a Debian/Ubuntu CI image, as root:
# - PostgreSQL binaries for tests/scaleout (the test starts its own server in a temporary folder on 127.0.0.1;
#   nothing runs as a system service);
# - Chromium for tests/web (Playwright drives this system browser over CDP, no chromedriver; its own browser download
#   cannot be reached from CI);
# - Compose, to validate docker-compose.yml (tests/project/test_project_compose.py: `config` only, no daemon):
#   Debian's docker-compose when neither it nor the `docker compose` plugin is there.
set -euo pipefail
packages=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
command -v chromium >/dev/null || packages+=(chromium)
if ! command -v docker-compose >/dev/null && ! { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; }; then
  packages+=(docker-compose)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi
ls -d /usr/lib/postgresql/*/bin/initdb
chromium --version 2>/dev/null
command -v docker-compose >/dev/null && docker-compose version --short || docker compose version
