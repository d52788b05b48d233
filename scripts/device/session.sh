# Shared start of the GPU session scripts (sourced; they run on the device through the run tool).
# Sets OUT (default $1; the run tool brings back what lands there), PYTHONPATH with pytest from the
# carried wheels in .whl/pytest when the device lacks it, and `step NAME SECONDS CMD...`, which
# runs CMD under a time limit, tees its output to $OUT/NAME.txt and sets status=1 on failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-$1}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python -c "import pytest" 2>/dev/null || python -m pip install -q --no-index --no-deps --target .whl/pydeps \
  .whl/pytest/*.whl .whl/mamba/packaging-*.whl
export PYTHONPATH=.:.whl/pydeps
status=0
step() {
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T))"
  # SIGINT first: pytest then prints where it was and its summary; KILL 15 s later
  timeout -s INT -k 15 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "=== $name rc=$rc"
  [ "$rc" = 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
