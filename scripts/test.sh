#!/usr/bin/env bash
# Set up the environment (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
. .venv/bin/activate
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
exec python -m pytest -q test "$@"
