#!/usr/bin/env bash
# Build Prism, Beam's portable local runner (Go), at the version of the
# installed Beam SDK, from the Go module proxy into .data/bin. Beam would
# download it from GitHub releases, which this setup does not assume it can
# reach. Idempotent. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
VERSION="$("$PY" -c 'import apache_beam; print(apache_beam.__version__)')"
BIN=".data/bin/prism-$VERSION"
if [ ! -x "$BIN" ]; then
  mkdir -p .data/bin/prism-build
  GOBIN="$PWD/.data/bin/prism-build" go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$VERSION" >&2
  mv .data/bin/prism-build/prism "$BIN"
fi
echo "$PWD/$BIN"
