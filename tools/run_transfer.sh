#!/usr/bin/env bash
# Fine-tune and evaluate a pretrained backbone with a published protocol, or run the whole demo.
#   tools/run_transfer.sh TASK [--weights CKPT] [--data DIR] [--work-dir DIR]    (TASK: transfer/tasks.py)
#       [--gpus N] [--trials N] [--seed N] [--max-iters N] [--input-size S] [--backend NAME]
#       [--config FILE] [--no-resume] [--force] [key=value ...]
#   tools/run_transfer.sh demo [--work-dir DIR] [--gpus N] [--seed N] [--force] [key=value ...]
# `tools/run_transfer.sh TASK --help` lists every flag. Uses the project's .venv
# (made by `make venv` when missing) unless PYTHON is set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    echo "no .venv yet: running 'make venv' first (the first install takes a while)" >&2
    make -C "$ROOT" venv >&2
  fi
  PYTHON="$ROOT/.venv/bin/python"
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$ROOT/tools/run_transfer.py" "$@"
