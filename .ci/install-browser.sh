#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its WebDriver (chromedriver), which the
# patient-portal example's browser tests (examples/patient-portal/tests/browser.rs) drive.
# Does nothing when both are already there.
set -euo pipefail
if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "install-browser: installing Debian's chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium) and $(/usr/bin/chromedriver --version 2>/dev/null | head -1 || echo chromedriver)" >&2
