#!/bin/sh
# Install Cadence from a source tree into a fresh virtualenv, with nothing else.
# The Dockerfile's build stage runs this; tests/test_docker.py runs it too, so the
# image recipe is checked where no Docker engine runs.
#
#   docker/install.sh VENV [SOURCE]     (SOURCE: the folder with pyproject.toml; default .)
set -eu
venv=${1:?usage: install.sh VENV [SOURCE]}
source_dir=${2:-.}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --quiet --disable-pip-version-check "$source_dir"
# the entry point exists and imports every module it needs at start
"$venv/bin/cadence" --help >/dev/null
"$venv/bin/python" -c "import agent.app.service, agent.views.report_html, agent.connectors.google, agent.connectors.microsoft, agent.connectors.caldav, agent.connectors.smtp"
