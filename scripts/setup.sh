#!/usr/bin/env bash
# Create .venv (if absent) and install robust-mmr with the exact pins of constraints.txt.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "[setup] installing robust-mmr and its pinned dependencies (constraints.txt)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -c constraints.txt -e '.[test]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# torchvision / timm / medmnistc pull a CUDA torch here and break imports: refuse to go on with them.
for bad in torchvision timm medmnistc; do
  if .venv/bin/python -c "import $bad" 2>/dev/null; then
    echo "[setup] ERROR: '$bad' is importable in .venv; it must never be installed (pip uninstall $bad)" >&2
    exit 1
  fi
done
.venv/bin/python -c "import torch; assert not torch.version.cuda, 'a CUDA build of torch was installed'; print('[setup] torch', torch.__version__, '(CPU build)')"
