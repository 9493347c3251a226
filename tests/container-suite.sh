#!/usr/bin/env bash
# The store, SQL-surface and migration tests once more, on PostgreSQL in a container (tests/databases.py).
# Installs Debian's docker.io when dockerd is missing and starts dockerd (vfs storage, which works in any
# file system) when none answers; the image is IMAGESEARCH_TEST_POSTGRES_IMAGE, else the local one that
# tests/build-postgres-image.sh builds once.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v dockerd >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  as_root nohup dockerd --storage-driver=vfs >"${TMPDIR:-/tmp}/dockerd.log" 2>&1 &
  timeout 60 sh -c 'until docker info >/dev/null 2>&1; do sleep 0.2; done'
fi

export IMAGESEARCH_TEST_POSTGRES=container
export IMAGESEARCH_TEST_POSTGRES_IMAGE="${IMAGESEARCH_TEST_POSTGRES_IMAGE:-$(bash tests/build-postgres-image.sh)}"
# Ryuk (testcontainers' reaper of containers a killed run leaves) comes from Docker Hub; the session removes
# its container itself.
export TESTCONTAINERS_RYUK_DISABLED="${TESTCONTAINERS_RYUK_DISABLED:-true}"
.venv/bin/python -m pytest -q tests/test_store.py tests/test_schema.py tests/test_sql_*.py
