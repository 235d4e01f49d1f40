#!/usr/bin/env bash
# Rewrite constraints.txt from the current .venv (after changing dependencies in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Exact versions for a reproducible install: pip install -c constraints.txt -e '.[test]'"
  echo "# Regenerate with scripts/lock.sh after changing pyproject.toml dependencies."
  .venv/bin/python -m pip freeze --exclude-editable | grep -v '^robust-mmr' | sed 's/^torch==\(.*\)+cpu$/torch==\1/'
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
