#!/usr/bin/env bash
# Installs a GPU build of ONNX Runtime (1.29, linux x64, CUDA 13 and
# TensorRT execution providers) into .ort-gpu/ from the npm packages
# com.github.asus4.onnxruntime and com.github.asus4.onnxruntime.linux-x64-gpu,
# without running any npm install script. Idempotent. Use it with
#   SRQ_ORT_LIB=.ort-gpu/libonnxruntime.so bin/srq verify --ep cuda ...
# The machine needs the NVIDIA driver, CUDA 13 (libcudart, libcublas) and
# cuDNN 9 on its library path; TensorRT 10 for --ep tensorrt.
set -euo pipefail
version=0.4.9
dest=${1:-.ort-gpu}
if [ -s "$dest/libonnxruntime.so" ] && [ -s "$dest/libonnxruntime_providers_cuda.so" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "setup-ort-gpu: only linux x86_64 is supported by this script" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "setup-ort-gpu: npm is needed to fetch the ONNX Runtime GPU packages" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "com.github.asus4.onnxruntime@$version" "com.github.asus4.onnxruntime.linux-x64-gpu@$version" >/dev/null)
mkdir -p "$tmp/core" "$tmp/gpu"
tar -xzf "$tmp/com.github.asus4.onnxruntime-$version.tgz" -C "$tmp/core" package/Plugins/Linux/x64
tar -xzf "$tmp/com.github.asus4.onnxruntime.linux-x64-gpu-$version.tgz" -C "$tmp/gpu"
mkdir -p "$dest"
find "$tmp/core/package/Plugins/Linux/x64" "$tmp/gpu" -name 'libonnxruntime*.so*' ! -name '*.meta' -exec cp {} "$dest/" \;
for f in libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
  [ -s "$dest/$f" ] || { echo "setup-ort-gpu: $f missing from the packages" >&2; exit 1; }
done
echo "$version" > "$dest/VERSION"
echo "setup-ort-gpu: installed ONNX Runtime (GPU, npm $version) in $dest: $(cd "$dest" && ls lib*.so | tr '\n' ' ')"
