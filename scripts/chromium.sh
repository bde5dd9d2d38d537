#!/usr/bin/env bash
# Install Debian's chromium for the portal's end-to-end test (tests/test_portal.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Never downloads
# a browser through Playwright; the test drives this system binary.
set -euo pipefail
BIN=/usr/bin/chromium
if [ -x "$BIN" ]; then
  echo "chromium present: $BIN"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "chromium.sh: $BIN missing and not root (no sudo); install the 'chromium' package" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
if [ ! -x "$BIN" ]; then
  echo "chromium.sh: apt-get finished but $BIN is still missing" >&2
  exit 1
fi
echo "chromium installed: $BIN"
