#!/usr/bin/env bash
# Deletes the Cloud TPU (seed 000, Appendix B step 12, `ctpu delete`): billing stops; MODEL_DIR,
# TRAIN_DIR and EVAL_DIR in the bucket are kept.
#
#   TPU_NAME=biggan ZONE=us-central1-a tpu_scripts/down.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_tool
require_env TPU_NAME ZONE
if [[ "$TOOL" == ctpu ]]; then
  run ctpu delete --name="$TPU_NAME" --zone="$ZONE" --noconf
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
fi
