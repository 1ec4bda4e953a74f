#!/usr/bin/env bash
# Services the CPU tests need: PostgreSQL binaries for tests/scaleout (the test starts its own server in a
# temporary folder on 127.0.0.1; nothing runs as a system service). Run as root on a Debian/Ubuntu CI image.
set -euo pipefail
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
ls -d /usr/lib/postgresql/*/bin/initdb
