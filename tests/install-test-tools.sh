#!/usr/bin/env bash
# What the tests drive besides Python packages, installed when missing: Debian's chromium for the console's
# tests (tests/browser.py), and the official Node.js SDK from npm for the client tests (tests/node_client.py),
# at the versions tests/node/package-lock.json pins.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix node --silent --no-audit --no-fund
else
  echo "npm is missing: the Node.js SDK's tests will be skipped" >&2
fi
