#!/usr/bin/env bash
# What the leaderboard and its browser test need: Streamlit (the page), playwright (the
# Python driver only: it never downloads a browser here) and Debian's chromium, which the
# test launches as /usr/bin/chromium. Idempotent: skips apt when chromium is already there.
set -euo pipefail
PY=${PYTHON:-python3}
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
$PY -m pip install -q "streamlit>=1.50" "playwright>=1.40"
/usr/bin/chromium --version 2>/dev/null
