#!/usr/bin/env bash
# Installs moto (a local S3-compatible server, from PyPI) into a virtual environment for the
# object-store tests of epic-fhir-views, and prints the path of its `moto_server`.
# The tests read that path from EPIC_FHIR_MOTO_SERVER (.ci/run sets it).
set -euo pipefail
venv="${EPIC_FHIR_VENV:-${HOME}/.cache/epic-fhir/venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi
echo "$venv/bin/moto_server"
