#!/usr/bin/env bash
# Installs the ONNX Runtime CPU library (1.24.1, linux x64) into .ort/ from the
# npm package onnxruntime-node, without running any npm install script, and
# links the unversioned name libonnxruntime.so to it, so that either name
# works for SRQ_ORT_LIB and --ort-lib.
# Idempotent: does nothing when the library is already there.
set -euo pipefail
version=1.24.1
dest=${1:-.ort}
lib="$dest/libonnxruntime.so.1"
link() { [ -e "$dest/libonnxruntime.so" ] || ln -sfn libonnxruntime.so.1 "$dest/libonnxruntime.so"; }
if [ -s "$lib" ] && [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$version" ]; then
  link
  exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "setup-ort: only linux x86_64 is supported by this script; set SRQ_ORT_LIB to your libonnxruntime.so" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "setup-ort: npm is needed to fetch onnxruntime-node@$version" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$tmp"/onnxruntime-node-"$version".tgz -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
mkdir -p "$dest"
mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$version" > "$dest/VERSION"
link
echo "setup-ort: installed ONNX Runtime $version at $lib"
