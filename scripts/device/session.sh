# Shared start of the GPU session scripts (sourced; they run on the device through the run tool).
# Sourced as `. session.sh DEFAULT_OUT "$@"`: -h/--help as the script's first argument prints its
# header comment and exits. Sets OUT (default DEFAULT_OUT; the run tool brings back what lands
# there), PYTHONPATH with pytest from the carried wheels in .whl/pytest when the device lacks it, and `step NAME SECONDS CMD...`, which
# runs CMD under a time limit, tees its output to $OUT/NAME.txt and sets status=1 on failure;
# `left` prints the seconds left of a 585 s call, `ros_env` fills ROS_ENV (env assignments for rclpy
# from the ROS 2 cp312 wheels carried in .whl/ros312). One script per purpose: README.md here.
set -uo pipefail
case "${2:-}" in -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
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
left() { echo $(( 585 - SECONDS )); }
ros_env() {
  local P=/tmp/rosp SP LIB
  [ -d $P ] || python -m pip install -q --no-index --no-deps --prefix $P .whl/ros312/*.whl
  SP=$(dirname "$(find $P -type d -path '*-packages/rclpy' | head -1)")
  LIB=$(dirname "$(find $P -name librcl.so | head -1)")
  ROS_ENV=(PYTHONPATH=.:$SP LD_LIBRARY_PATH=$LIB:$(ls -d "$SP"/ros_*.libs | tr '\n' ':') RMW_IMPLEMENTATION=rmw_fastrtps_cpp)
}
