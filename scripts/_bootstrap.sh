# Sourced by scripts/serve and scripts/test: make sure .venv exists and matches pyproject.toml.
# Re-running is cheap: the install only happens when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp_base=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
stamp="$stamp_base${EXTRAS:+-$EXTRAS}"
# An install with extras also satisfies a caller that needs none (serve, migrate after test).
if [ ! -f "$stamp" ] && ! { [ -z "$EXTRAS" ] && compgen -G "$stamp_base*" >/dev/null; }; then
  echo "installing dependencies into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
