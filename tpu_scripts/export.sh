#!/usr/bin/env bash
# Exports the run's EMA generator as a TF-Hub module (`--mode=export`) to EXPORT_DIR (default
# MODEL_DIR/export, the app's default), with the run's own MODEL_DIR/hparams.yaml.
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-128 MODEL_DIR=gs://b/biggan_128 tpu_scripts/export.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
init_run "biggan_128_${TPU_SIZE}"
app export --tpu="$TPU_ARG" ${HPARAMS_PATH:+"--hparams=$HPARAMS_PATH"} --model_dir="$MODEL_DIR" \
  ${EXPORT_DIR:+"--export_dir=$EXPORT_DIR"} "$@"
