#!/usr/bin/env bash
# Installs everything the benchmark needs on a fresh machine (CPU is enough for the tiny profile).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first: the pinned builds lie on local disk here; elsewhere pip fetches them.
$PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
$PY -m pip install -q -e ".[test]"
# facenet-pytorch (MTCNN, weights inside the wheel) pins torch<2.3 in its metadata but runs on
# current torch; --no-deps keeps pip from downgrading torch.
$PY -m pip install -q --no-deps "facenet-pytorch==2.6.0"
