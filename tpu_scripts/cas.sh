#!/usr/bin/env bash
# Classification Accuracy Score (`--mode=cas`, seed 000 Appendix B steps 6-10): a ResNet-50
# trained on TRAIN_DIR's train-* shards (your synthetic data, as in the appendix) and tested on
# EVAL_DIR's validation-* shards (the real validation data); checkpoints and cas_report.json in
# MODEL_DIR. Rerunning resumes.
#
#   TPU_NAME=cas ZONE=us-central1-a TPU_SIZE=v2-8 TRAIN_DIR=gs://b/biggan_128/synthetic \
#   EVAL_DIR=gs://b/imagenet MODEL_DIR=gs://b/cas_biggan_128 tpu_scripts/cas.sh
#
# CAS_HPARAMS: default hparams/cas_resnet50_v2-8.yaml on one host (batch 1,024, "10 hours" on a v2-8)
# and hparams/cas_resnet50_pod.yaml on a pod slice (batch 8,192, "45 minutes" on v2-128 / 128
# chips, Appendix A.1). TRAIN_DATA / EVAL_DATA replace the globs (e.g. a real + synthetic mixture:
# TRAIN_DATA=real:gs://b/imagenet/train-*,synthetic:gs://b/synthetic/train-*).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
require_env TRAIN_DIR EVAL_DIR
init_cas_hparams
HPARAMS_PATH="$CAS_HPARAMS_PATH"  # the classifier's run: MODEL_DIR defaults from its name
init_model_dir
app cas --tpu="$TPU_ARG" --hparams="$HPARAMS_PATH" --model_dir="$MODEL_DIR" \
  --train_data="${TRAIN_DATA:-${TRAIN_DIR%/}/train-*}" --eval_data="${EVAL_DATA:-${EVAL_DIR%/}/validation-*}" \
  ${HPARAMS_OVERRIDES:+"--hparams_overrides=$HPARAMS_OVERRIDES"} "$@"
