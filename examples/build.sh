#!/usr/bin/env bash
# Builds the example model archives into a model store with Ember's own archiver.
#   usage: examples/build.sh MODEL_STORE      (PYTHON=.venv/bin/python by default via make)
# ARCHIVER may name another torch-model-archiver-compatible command (e.g. the real one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
store="${1:?usage: examples/build.sh MODEL_STORE}"
PYTHON="${PYTHON:-python3}"
read -r -a archiver <<< "${ARCHIVER:-$PYTHON -m emberserve.archiver}"
mkdir -p "$store"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> Training the digits classifier (scikit-learn's bundled 8x8 digits, a few seconds)"
"$PYTHON" "$here/digits/train.py" "$work"

echo "==> Archiving digits.mar into $store"
"${archiver[@]}" --model-name digits --version 1.0 \
    --model-file "$here/digits/model.py" --serialized-file "$work/digits.pt" \
    --handler "$here/digits/handler.py" --extra-files "$work/index_to_name.json" \
    --export-path "$store" --force

echo "==> Archiving echo.mar into $store"
"${archiver[@]}" --model-name echo --version 1.0 --handler "$here/echo/echo_handler.py" \
    --export-path "$store" --force

echo "==> Done: $(cd "$store" && ls ./*.mar | tr '\n' ' ')"
