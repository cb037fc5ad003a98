# Sourced by scripts/serve and scripts/test: a virtualenv in .venv with factpatch installed.
# torch is pinned first so pip takes the CPU build on this kind of machine instead of CUDA wheels.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
python -m pip install --quiet "torch==${FACTPATCH_TORCH_VERSION:-2.13.0}"
python -m pip install --quiet -e ".[service,worker${FACTPATCH_EXTRAS:-}]"
