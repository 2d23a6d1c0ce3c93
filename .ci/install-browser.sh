#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (chromedriver), which the patient-portal
# example's browser tests (examples/patient-portal/tests/browser.rs) drive headless.
# Does nothing when both are there; apt's output is shown only when the install fails.
set -euo pipefail
if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "install-browser: installing Debian's chromium and chromium-driver" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-browser: apt-get failed" >&2
  exit 1
fi
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null) and $(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2)" >&2
