#!/usr/bin/env bash
# The truncation sweep (`--mode=sweep`, paper Section 3.1 and Table 2): FID / IS at every
# eval.truncations threshold of the run in MODEL_DIR -> MODEL_DIR/sweep_report.json, .csv and the
# IS-vs-FID plot. EVAL_DIR's validation shards give the "IS of validation data" column.
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-128 EVAL_DIR=gs://b/imagenet MODEL_DIR=gs://b/biggan_128 \
#   INCEPTION_PATH=/path/on/the/vm/inception tpu_scripts/eval.sh [--checkpoint=... --seed=...]
#
# The run's own MODEL_DIR/hparams.yaml is used (HPARAMS, when set, replaces its eval section).
# INCEPTION_PATH (optional): a LOCAL Inception file on the TPU VM for paper-comparable FID/IS;
# without it the app scores with its own classifier trained on the run's real data.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
require_env EVAL_DIR
init_run "biggan_128_${TPU_SIZE}"
join_overrides "eval.validation_pattern=${EVAL_DIR%/}/validation-*"
app sweep --tpu="$TPU_ARG" ${HPARAMS_PATH:+"--hparams=$HPARAMS_PATH"} --model_dir="$MODEL_DIR" \
  --hparams_overrides="$OVERRIDES" \
  ${INCEPTION_PATH:+"--inception_path=$INCEPTION_PATH"} "$@"
