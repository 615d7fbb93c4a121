#!/usr/bin/env bash
# GPU check: the train step across precision and layout, the training-throughput benchmark
# (project path against the plain loop, with augmentation in the loader workers and on the
# GPU), batched against per-image augmentation, two short training epochs through fit(), and
# last the step under torch.compile, on a GPU machine, using only what it has installed (its
# python3 with torch and torchvision; no DVC). Each step writes its report before the next.
# Run from the repository root: bash benchmarks/gpu_check.sh [OUT_DIR]   (about 5 minutes)
set -euo pipefail
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "cpus", __import__("os").cpu_count())' | tee -a "$out/gpu.txt"
python3 -m benchmarks.model_step --size 224 --batches 32 128 --out "$out/model_step.json"
python3 -m benchmarks.train_throughput --images 1024 --size 224 --batch 32 --steps 40 --out "$out/train_throughput.json"
python3 -m benchmarks.train_throughput --images 1024 --size 224 --batch 128 --steps 20 --out "$out/train_throughput_b128.json"
python3 -m benchmarks.train_throughput --images 1024 --size 224 --batch 32 --steps 40 --augment-on device --workers 4 --out "$out/train_throughput_augment_on_device.json"
python3 -m benchmarks.augment --size 224 --images 1024 --batch 32 --out "$out/augment.json"
python3 -m benchmarks.gpu_epoch --images 2048 --val-images 256 --size 224 --epochs 2 --out "$out/gpu_epoch.json"
python3 -m benchmarks.model_step --size 224 --batches 32 --compile reduce-overhead --out "$out/model_step_compiled.json"
