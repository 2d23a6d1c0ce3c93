#!/usr/bin/env bash
# Installs the Epic-aware third-party client that the interop test
# (crates/epic-fhir-cli/tests/interop_smart_fetch.rs) drives against the sandbox: SMART Fetch,
# the SMART on FHIR community's bulk/crawl tool, from PyPI, pinned, into a virtual environment
# under the repository's ignored target/ folder. Idempotent: a matching install is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
SMART_FETCH_VERSION=1.0.3
VENV="${EPIC_FHIR_INTEROP_VENV:-target/interop/venv}"
if [ -x "$VENV/bin/smart-fetch" ] && "$VENV/bin/smart-fetch" --version 2>/dev/null | grep -qx "smart-fetch $SMART_FETCH_VERSION"; then
  echo "smart-fetch $SMART_FETCH_VERSION already installed in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "smart-fetch==$SMART_FETCH_VERSION"
"$VENV/bin/smart-fetch" --version
