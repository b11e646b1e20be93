#!/usr/bin/env bash
# Run the test suite: ./run_tests.sh [pytest args]. Creates .venv with the test extras if needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$ROOT/scripts/bootstrap.sh" "test"
cd "$ROOT"
# Offline guards: no GCE metadata probing, gcsfs without the zonal-bucket probe.
export NO_GCE_CHECK=true GCE_METADATA_HOST=127.0.0.1:9 GCE_METADATA_IP=127.0.0.1:9
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
exec "$ROOT/.venv/bin/python" -m pytest "$@"
