#!/usr/bin/env bash
# Creates the Cloud TPU and puts this checkout on it (seed 000, Appendix B step 2, `ctpu up`).
#
#   TPU_NAME=biggan ZONE=us-central1-a TPU_SIZE=v3-8 TF_VERSION=2.16.1 PREEMPTIBLE=1 tpu_scripts/up.sh
#
# gcloud: `gcloud compute tpus tpu-vm create` (skipped when the TPU is READY; a PREEMPTED one is
# deleted and created again, so rerunning up.sh after a preemption is the recovery), then the
# package, hparams/ and requirements.txt are copied to REMOTE_DIR on every host and the
# requirements installed there, without the tensorflow / tf-keras / tensorboard pins: the TPU VM
# image brings the TensorFlow built for its TPU runtime. Rerun it after changing the code.
# ctpu (when it is the tool): `ctpu up` as in the appendix; you then work on the VM it opens.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_tool
require_env TPU_NAME ZONE TPU_SIZE TF_VERSION
init_runtime_version
preemptible=()
if is_preemptible; then
  preemptible=(--preemptible)
fi

if [[ "$TOOL" == ctpu ]]; then
  run ctpu up --name="$TPU_NAME" --zone="$ZONE" --tpu-size="$TPU_SIZE" --tf-version="$TF_VERSION" \
    --machine-type="${MACHINE_TYPE:-n1-standard-8}" "${preemptible[@]}" --noconf
  exit 0
fi

state=""
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  echo "# dry run: assuming TPU $TPU_NAME does not exist yet"
else
  state="$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" --format='value(state)' 2>/dev/null || true)"
fi
case "$state" in
  READY | CREATING | STARTING | RESTARTING)
    echo "$SCRIPT_NAME: TPU $TPU_NAME exists ($state): not creating it again" ;;
  "")
    run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" --accelerator-type="$TPU_SIZE" \
      --version="$RUNTIME_VERSION" "${preemptible[@]}" ;;
  *)
    echo "$SCRIPT_NAME: TPU $TPU_NAME is $state: deleting and creating it again (checkpoints in MODEL_DIR are kept)"
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
    run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" --accelerator-type="$TPU_SIZE" \
      --version="$RUNTIME_VERSION" "${preemptible[@]}" ;;
esac

remote_dir="${REMOTE_DIR:-tf_biggan}"
q_remote_dir="$(shquote "$remote_dir")"
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="mkdir -p $q_remote_dir"
run gcloud compute tpus tpu-vm scp --recurse "$REPO_ROOT/tf_biggan" "$REPO_ROOT/hparams" \
  "$REPO_ROOT/requirements.txt" "$TPU_NAME:$remote_dir/" --zone="$ZONE" --worker=all
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="cd $q_remote_dir && grep -vE '^(tensorflow|tf-keras|tensorboard)==' requirements.txt > requirements-tpu.txt && python3 -m pip install -q -r requirements-tpu.txt"
