#!/bin/sh
# The reference servers for bench/caldav_sync.py, in their own virtual environment (none of Reefknot's dependencies):
# Radicale and Xandikos from PyPI into bench/caldav/.venv (ignored by the .gitignore's ".venv/"), or into $1.
set -eu
venv="${1:-$(dirname "$0")/.venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade radicale xandikos
"$venv/bin/pip" list 2>/dev/null | grep -i -E '^(radicale|xandikos|dulwich) '
