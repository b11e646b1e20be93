#!/usr/bin/env bash
# Run the bundled sample end to end, offline, on the local runner:
#   ./run_local.sh [extra flags for python -m pipeline.main]
# Creates .venv and installs the project on first use. Works from any directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$ROOT/scripts/bootstrap.sh" ""
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pipeline.main --config "$ROOT/configs/local.yaml" "$@"
