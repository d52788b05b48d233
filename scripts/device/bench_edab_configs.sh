#!/usr/bin/env bash
# The fused EDAB's launch configurations: its tuned-versus-default GPU test, then
# benchmarks/edab_fused.py (every configuration per shape and the per-stage times). A short call
# (LIMIT s, default 190). Arguments: more configurations to time, e.g. 512/1/1,1024/2/4 (give it a
# warm Triton cache or a longer LIMIT).
#   run(command="bash scripts/device/bench_edab_configs.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=300)
. "$(dirname "$0")/session.sh" /tmp/bench_edab_configs "$@"
step pytest_tuned 80 python -m pytest -q -p no:cacheprovider test/core/inference/test_fused_edab.py -k tuned
step edab_fused $(( ${LIMIT:-190} - SECONDS )) python benchmarks/edab_fused.py ${1:+--extra-candidates "$1"}
exit $status
