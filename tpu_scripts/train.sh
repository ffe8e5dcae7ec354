#!/usr/bin/env bash
# Trains BigGAN on the TPU (`--mode=train`); rerunning resumes from the latest checkpoint in
# MODEL_DIR (the app resumes; after a preemption: up.sh, then train.sh again).
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-128 TRAIN_DIR=gs://b/imagenet EVAL_DIR=gs://b/imagenet \
#   MODEL_DIR=gs://b/biggan_128 tpu_scripts/train.sh [extra absl flags, e.g. --train_steps=150000]
#
# HPARAMS: default hparams/biggan_128_$TPU_SIZE.yaml. TRAIN_DIR holds the real training shards
# (train-*), EVAL_DIR the validation shards (validation-*, optional here: the evaluation stages
# use them). HPARAMS_OVERRIDES: more section.key=value pairs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
require_env TRAIN_DIR
init_hparams "biggan_128_${TPU_SIZE}"
init_model_dir
join_overrides "data.pattern=${TRAIN_DIR%/}/train-*" ${EVAL_DIR:+"eval.validation_pattern=${EVAL_DIR%/}/validation-*"}
app train --tpu="$TPU_ARG" --hparams="$HPARAMS_PATH" --model_dir="$MODEL_DIR" --hparams_overrides="$OVERRIDES" "$@"
