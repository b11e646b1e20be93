# Sourced by run_local.sh and run_tests.sh: create .venv if missing and install the project
# into it, re-installing only when setup.py changed (pip on a warm venv still costs seconds).
# Usage: . scripts/bootstrap.sh [extras]     e.g. ". scripts/bootstrap.sh test"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "storybeam: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi
SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
STAMP="$VENV/.storybeam-installed-${EXTRAS:-base}"
HASH="$(cat "$ROOT/setup.py" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  echo "storybeam: installing $SPEC into $VENV (first run takes a few minutes)" >&2
  (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet -e "$SPEC" >&2)
  echo "$HASH" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# The project's own modules as bytecode, as an installed (non-editable) package has them: with
# PYTHONDONTWRITEBYTECODE set, every process of a run (runner, worker pool, extraction
# children) would compile them again (~0.3 s of CPU each). Only changed files are compiled.
"$VENV/bin/python" -m compileall -q "$ROOT/pipeline" "$ROOT/transforms" >/dev/null || true
