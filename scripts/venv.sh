#!/usr/bin/env bash
# Create the project's virtualenv and install the project's Python dependencies into it.
source "$(dirname "$0")/lib.sh"

stamp="$VENV_DIR/.installed"
if [ ! -x "$VENV_DIR/bin/python" ]; then
  log "creating virtualenv in $VENV_DIR"
  "$PYTHON_BIN" -m venv "$VENV_DIR"
fi
# Reinstall only when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ "$ROOT_DIR/pyproject.toml" -nt "$stamp" ]; then
  log "installing Python dependencies"
  "$VENV_DIR/bin/pip" install -q --upgrade pip
  extras="test,bench"
  "$VENV_DIR/bin/pip" install -q "$ROOT_DIR[$extras]"
  touch "$stamp"
fi
