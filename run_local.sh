#!/usr/bin/env bash
# Run the bundled sample end to end, offline, on the local runner:
#   ./run_local.sh [extra flags for python -m pipeline.main]
# Creates .venv and installs the project on first use. Works from any directory: the run starts
# in the caller's directory, so relative --input/--output paths are the caller's, while the
# bundled config's own paths are relative to the config file (configs/local.yaml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$ROOT/scripts/bootstrap.sh" ""
# The project is installed editable, so it imports from anywhere. PYTHONSAFEPATH (Python 3.11+)
# keeps the caller's directory off sys.path: a folder of theirs named pipeline/ or transforms/
# is not imported in place of ours (here or in the worker processes, which inherit it).
PYTHONSAFEPATH=1 exec "$ROOT/.venv/bin/python" -m pipeline.main --config "$ROOT/configs/local.yaml" "$@"
