#!/usr/bin/env bash
# Writes a synthetic ImageNet-layout training set (`--mode=synthesize`): TFRecord shards of EMA-G
# samples to SYNTH_DIR (default MODEL_DIR/synthetic), the TRAIN_DIR of a CAS run (seed 000,
# Appendix B step 6), with the run's own MODEL_DIR/hparams.yaml (any TPU size, e.g. the appendix's
# v2-8). Rerunning writes only the missing shards.
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-128 MODEL_DIR=gs://b/biggan_128 TRUNCATION=1.0 \
#   tpu_scripts/synthesize.sh [--images_per_class=1300 --latent_convention=hub_notebook ...]
#
# TRUNCATION (optional): the threshold (e.g. the one eval.sh's sweep chose); unset = untruncated.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_stage
init_run "biggan_128_${TPU_SIZE}"
app synthesize --tpu="$TPU_ARG" ${HPARAMS_PATH:+"--hparams=$HPARAMS_PATH"} --model_dir="$MODEL_DIR" \
  --output_dir="${SYNTH_DIR:-$MODEL_DIR/synthetic}" ${TRUNCATION:+"--truncation=$TRUNCATION"} "$@"
