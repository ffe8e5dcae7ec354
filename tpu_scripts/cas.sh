#!/usr/bin/env bash
# Classification Accuracy Score (`--mode=cas`, seed 000 Appendix B steps 6-10): a ResNet-50
# trained on TRAIN_DIR (your synthetic data, as in the appendix) and tested on EVAL_DIR (the real
# validation data), checkpoints and reports in MODEL_DIR. Rerunning resumes.
#
#   TPU_NAME=cas ZONE=us-central1-a TPU_SIZE=v2-8 TRAIN_DIR=gs://b/biggan_128/synthetic \
#   EVAL_DIR=gs://b/imagenet MODEL_DIR=gs://b/cas_biggan_128 tpu_scripts/cas.sh
#
# HPARAMS: default hparams/cas_imagenet_$TPU_SIZE.yaml (v2-8: batch 1,024, about 10 hours;
# v2-128: batch 8,192, about 45 minutes, Appendix A.1).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
require_env TRAIN_DIR EVAL_DIR
init_hparams "cas_imagenet_${TPU_SIZE}"
init_model_dir
app cas --tpu="$TPU_ARG" --hparams="$HPARAMS_PATH" --model_dir="$MODEL_DIR" \
  --train_data="$TRAIN_DIR" --eval_data="$EVAL_DIR" ${HPARAMS_OVERRIDES:+"--hparams_overrides=$HPARAMS_OVERRIDES"} "$@"
