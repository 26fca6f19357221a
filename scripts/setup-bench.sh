#!/usr/bin/env bash
# Installs what the benchmark's CPython baselines need beyond python3 itself:
# numpy, for the broadcast row's `shared_memory` + numpy figure
# (scripts/bench_cpython.py --broadcast). Without it that figure reads n/a.
set -euo pipefail
if python3 -c 'import numpy' 2>/dev/null; then
  echo "setup-bench: numpy is already importable"
  exit 0
fi
python3 -m pip install --quiet numpy || python3 -m pip install --quiet --break-system-packages numpy
python3 -c 'import numpy; print("setup-bench: numpy", numpy.__version__)'
