#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver for the real-browser test
# (tests/test_ui_browser.py). Browser downloads from elsewhere do not work here: only the
# distribution's packages. Idempotent: does nothing when both binaries are present.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo -n"; else
    echo "install_browser: need root (or sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium && test -x /usr/bin/chromedriver
echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)" >&2
