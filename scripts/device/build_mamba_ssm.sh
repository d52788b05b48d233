#!/usr/bin/env bash
# Build mamba-ssm's selective_scan_fn on the GPU device, which has no internet.
#
# Why this script: the sdist's setup.py compiles for ~9 GPU architectures and did not finish
# in 7 minutes; we only need sm_90 (H100) for benchmarks/ss2d.py and the `mamba` backend.
# Inputs (fetched on a machine with internet, git-ignored, passed with `carry: [".whl/mamba"]`):
#   .whl/mamba/mamba_ssm-2.3.2.post1.tar.gz   pip download --no-build-isolation --no-deps \
#                                              --no-binary :all: mamba-ssm==2.3.2.post1 -d .whl/mamba
#   .whl/mamba/{einops,packaging,wheel,setuptools}-*.whl   pip download --no-deps ... -d .whl/mamba
# Output: mamba_ssm importable from $MAMBA_TARGET (default .whl/mamba_site) plus its pure-Python
# deps in $MAMBA_DEPS (default .whl/mamba_deps); the script prints the PYTHONPATH to use.
# Env: MAMBA_ARCH (default 90), MAX_JOBS (default 16). A second run reuses a finished build.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
PY=${PYTHON:-python}
WHL=${MAMBA_WHEELS:-$PWD/.whl/mamba}
TARGET=${MAMBA_TARGET:-$PWD/.whl/mamba_site}
DEPS=${MAMBA_DEPS:-$PWD/.whl/mamba_deps}
ARCH=${MAMBA_ARCH:-90}
export PYTHONPATH="$TARGET:$DEPS${PYTHONPATH:+:$PYTHONPATH}"

check() { "$PY" -c "from mamba_ssm.ops.selective_scan_interface import selective_scan_fn; import mamba_ssm; print('mamba_ssm', mamba_ssm.__version__, 'selective_scan_fn importable')"; }

# pure-Python build/runtime deps the device may lack, from the carried wheels (no index)
mkdir -p "$DEPS"
for mod in einops packaging wheel setuptools; do
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    whl=$(ls "$WHL"/"$mod"-*.whl 2>/dev/null | head -1 || true)
    [ -n "$whl" ] || { echo "error: $mod is missing and no $WHL/$mod-*.whl to install" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --target "$DEPS" "$whl"
    echo "installed $(basename "$whl") into $DEPS"
  fi
done

if ls "$TARGET"/selective_scan_cuda*.so >/dev/null 2>&1 && check 2>/dev/null; then
  echo "mamba_ssm already built in $TARGET"
else
  sdist=$(ls "$WHL"/mamba_ssm-*.tar.gz 2>/dev/null | head -1 || true)
  [ -n "$sdist" ] || { echo "error: no $WHL/mamba_ssm-*.tar.gz (see the header of this script)" >&2; exit 2; }
  work=$(mktemp -d)
  tar xzf "$sdist" -C "$work"
  src=$(ls -d "$work"/mamba_ssm-*/)
  # 1) one GPU architecture instead of the setup.py list
  "$PY" - "$src/setup.py" "$ARCH" <<'PYEOF'
import sys
path, arch = sys.argv[1], sys.argv[2]
text = open(path).read()
anchor = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
if anchor not in text:
    sys.exit("error: setup.py layout changed; cannot cut the arch list")
cut = (f"    cc_flag = [f for f in cc_flag if f != '-gencode' and not f.startswith('arch=')]"
       f" + ['-gencode', 'arch=compute_{arch},code=sm_{arch}']\n")
open(path, "w").write(text.replace(anchor, cut + anchor, 1))
print(f"setup.py: building for sm_{arch} only")
PYEOF
  # 2) mamba_ssm/__init__.py eagerly imports Mamba2/Mamba3 and the LM model, which need
  #    huggingface_hub, transformers and tilelang (absent on the device, unused by
  #    selective_scan_fn); keep only the version there. The submodules are unchanged.
  grep -q '^__version__' "$src/mamba_ssm/__init__.py"
  grep '^__version__' "$src/mamba_ssm/__init__.py" > "$src/mamba_ssm/__init__.py.new"
  mv "$src/mamba_ssm/__init__.py.new" "$src/mamba_ssm/__init__.py"
  rm -rf "$TARGET"
  echo "building selective_scan_cuda (MAX_JOBS=${MAX_JOBS:-16}) ..."
  MAMBA_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}" \
    "$PY" -m pip install --no-build-isolation --no-deps --no-index --target "$TARGET" "$src" \
    > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "error: mamba_ssm build failed" >&2; exit 1; }
  rm -rf "$work"
fi
check
echo "mamba_ssm build took $(( $(date +%s) - start )) s"
echo "use: export PYTHONPATH=$TARGET:$DEPS:\$PYTHONPATH"
