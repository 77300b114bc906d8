#!/usr/bin/env bash
# Build (or rebuild) the project's virtual environment with Python 3.10 and every dependency.
# Usage: tools/bootstrap_venv.sh VENV_DIR
# Lava (lava-nc 0.10.0, lava-dl 0.6.0) supports Python >=3.10,<3.11 only, so 3.10 it must be.
set -euo pipefail
venv=${1:-.venv}

find_python310() {
  local c
  if [ -n "${PYTHON310:-}" ]; then echo "$PYTHON310"; return; fi
  for c in python3.10 \
           "$(command -v pyenv >/dev/null 2>&1 && pyenv root)"/versions/3.10.*/bin/python3.10 \
           "$HOME"/.pyenv/versions/3.10.*/bin/python3.10 \
           /usr/local/bin/python3.10 /usr/bin/python3.10; do
    # A pyenv shim exists even when 3.10 is not active; only a working interpreter counts.
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      echo "$c"; return
    fi
  done
  return 1
}

if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
  echo "bootstrap: $venv is not a Python 3.10 environment; rebuilding it" >&2
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! py=$(find_python310); then
    cat >&2 <<'MSG'
bootstrap: no Python 3.10 found.
respike-nm needs Python 3.10 exactly (lava-nc 0.10.0 and lava-dl 0.6.0 declare >=3.10,<3.11).
Install it, then run make again, e.g.:
  pyenv install 3.10            # with pyenv
  sudo apt-get install python3.10 python3.10-venv    # Debian/Ubuntu with python3.10 packages
or point PYTHON310 at an interpreter:  make test PYTHON310=/path/to/python3.10
MSG
    exit 1
  fi
  echo "bootstrap: creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi
lock=requirements/lock-py310.txt
constraints=()
if [ -z "${RESPIKE_NO_LOCK:-}" ] && [ -f "$lock" ]; then
  constraints=(-c "$lock")  # the exact versions a passing CI used
  echo "bootstrap: installing respike-nm into $venv with the versions in $lock (torch is large: minutes)" >&2
else
  echo "bootstrap: installing respike-nm into $venv, newest versions in its ranges (no lock file)" >&2
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q "${constraints[@]}" -e '.[dev]'
