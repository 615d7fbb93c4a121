#!/usr/bin/env bash
# GPU check, on a GPU machine, using only what it has installed (its python3 with torch and
# torchvision; no DVC). The training-throughput benchmark (the train stage's epoch loop against
# the plain loop) with augmentation on the GPU, eager and under torch.compile with CUDA graphs,
# then with augmentation in the loader workers; batched against per-image augmentation; two
# short training epochs through fit(); the train step alone across precision and layout.
# Each step writes its report before the next, so a run cut short keeps what it measured.
# Run from the repository root: bash benchmarks/gpu_check.sh [OUT_DIR]   (about 5 minutes)
set -euo pipefail
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "cpus", __import__("os").cpu_count())' | tee -a "$out/gpu.txt"
throughput="python3 -m benchmarks.train_throughput --images 1024 --size 224 --batch 32 --steps 40"
$throughput --augment-on device --workers 4 --out "$out/train_throughput_augment_on_device.json"
$throughput --augment-on device --workers 4 --compile reduce-overhead --out "$out/train_throughput_augment_on_device_compiled.json"
$throughput --augment-on loader --workers 8 --out "$out/train_throughput_augment_on_loader.json"
python3 -m benchmarks.augment --size 224 --images 1024 --batch 32 --out "$out/augment.json"
python3 -m benchmarks.gpu_epoch --images 2048 --val-images 256 --size 224 --epochs 2 --out "$out/gpu_epoch.json"
python3 -m benchmarks.model_step --size 224 --batches 32 --compile reduce-overhead --out "$out/model_step.json"
