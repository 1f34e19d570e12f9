# Sourced by scripts/serve and scripts/test: make sure .venv exists and holds the locked
# versions (requirements/runtime.lock, or requirements/dev.lock with the `dev` argument).
# Re-running is cheap: the install only happens when the lock file changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOCK="requirements/${1:-runtime}.lock"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp_of() { echo ".venv/.installed-$(cat "requirements/$1.lock" pyproject.toml | sha256sum | cut -c1-16)-$1"; }
stamp="$(stamp_of "$(basename "$LOCK" .lock)")"
# The dev lock holds every runtime package too, so a current dev install also satisfies serve.
if [ ! -f "$stamp" ] && [ ! -f "$(stamp_of dev)" ]; then
  echo "installing $LOCK into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$LOCK"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
