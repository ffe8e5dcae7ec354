#!/usr/bin/env bash
# The whole pipeline in one app call (`--mode=all`): train -> truncation sweep -> TF-Hub export
# -> synthesize -> CAS, each stage skipped when its outputs in MODEL_DIR are complete, so a rerun
# (after a preemption: up.sh, then all.sh) resumes where it stopped. RETRY_PREEMPTED=N does that
# itself, up to N times, when the app exits 143 (stopped by SIGTERM after saving its step) or the ssh
# session drops (255): see `app` in common.sh.
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-128 TRAIN_DIR=gs://b/imagenet EVAL_DIR=gs://b/imagenet \
#   MODEL_DIR=gs://b/biggan_128 tpu_scripts/all.sh
#
# The GAN's configuration: HPARAMS, else hparams/biggan_128_$TPU_SIZE.yaml, else (no such file, e.g.
# on the CAS appendix's v2-8) the run's own MODEL_DIR/hparams.yaml: a run trained earlier whose
# remaining stages run here. CAS uses CAS_HPARAMS (default: as cas.sh, the v2-8 protocol on one host, the pod one on a slice)
# and EVAL_DIR's validation-* shards as the real held-out images.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
require_env TRAIN_DIR EVAL_DIR
init_job_hparams "biggan_128_${TPU_SIZE}"
join_overrides "data.pattern=${TRAIN_DIR%/}/train-*" "eval.validation_pattern=${EVAL_DIR%/}/validation-*"
init_cas_hparams
app all --tpu="$TPU_ARG" --hparams="$HPARAMS_PATH" --model_dir="$MODEL_DIR" --hparams_overrides="$OVERRIDES" \
  --cas_hparams="$CAS_HPARAMS_PATH" --eval_data="${EVAL_DATA:-${EVAL_DIR%/}/validation-*}" \
  ${INCEPTION_PATH:+"--inception_path=$INCEPTION_PATH"} "$@"
