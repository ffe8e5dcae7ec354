# shellcheck shell=bash
# shellcheck disable=SC2034  # the globals set here (TOOL, TPU_ARG, ...) are read by the scripts
#
# Sourced by every tpu_scripts/*.sh: settings from the environment (the names of the CAS paper's
# Appendix B, seed 000: TPU_NAME, ZONE, BUCKET, MODEL_DIR, TRAIN_DIR, EVAL_DIR, TPU_SIZE,
# PREEMPTIBLE, TF_VERSION), clear errors for missing ones, and `run`, which honours DRY_RUN=1.
#
# Where commands run. `gcloud compute tpus tpu-vm` (today's Cloud TPU VMs): the TPU host IS a VM,
# so every stage runs there, on worker 0, through `gcloud compute tpus tpu-vm ssh --command`, in
# REMOTE_DIR (the copy up.sh made). A single host (v2-8, v3-8) uses --tpu=local; a pod slice
# (v3-32 and up) runs TensorFlow on worker 0 with --tpu=$TPU_NAME and TPU_LOAD_LIBRARY=0, as
# Google's TensorFlow pod tutorials do. `ctpu` (retired; the appendix's tool, TPU nodes): the
# scripts run ON the VM ctpu made, so stages run locally with --tpu=$TPU_NAME.
#
# No logic of the app lives here: the scripts only assemble `python3 -m tf_biggan.main` command
# lines; resuming, validation and defaults are the app's. The init_* functions set globals rather
# than print values, so that `die` inside them stops the script (not just a $(...) subshell).

set -euo pipefail

TPU_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TPU_SCRIPTS_DIR/.." && pwd)"
SCRIPT_NAME="$(basename "$0")"

die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 2
}

# Why each variable is needed and an example, for the error message of a missing one.
_hint() {
  case "$1" in
    TPU_NAME) echo "the Cloud TPU's name, e.g. export TPU_NAME=biggan-tpu" ;;
    ZONE) echo "the TPU's zone, e.g. export ZONE=us-central1-a (keep BUCKET in the same region)" ;;
    TPU_SIZE) echo "the accelerator type, e.g. export TPU_SIZE=v3-8 (also v2-8, v2-128, v3-128)" ;;
    TF_VERSION) echo "the TensorFlow of the TPU VM image, e.g. export TF_VERSION=2.16.1 (list them with" \
                     "'gcloud compute tpus tpu-vm versions list --zone=\$ZONE'), or a full runtime" \
                     "version such as tpu-vm-tf-2.16.1-pod-pjrt" ;;
    MODEL_DIR) echo "where checkpoints and reports go, e.g. export MODEL_DIR=gs://\$BUCKET/biggan_128" \
                    "(or set BUCKET: MODEL_DIR then defaults to gs://\$BUCKET/tf_biggan/<hparams name>)" ;;
    TRAIN_DIR) echo "the training TFRecords (ImageNet layout, train-*), e.g." \
                    "export TRAIN_DIR=gs://\$BUCKET/imagenet (for cas.sh: your synthetic data)" ;;
    EVAL_DIR) echo "the real validation TFRecords (validation-*), e.g. export EVAL_DIR=gs://\$BUCKET/imagenet" ;;
    *) echo "see tpu_scripts/README.md" ;;
  esac
}

# require_env NAME...: exit 2 naming the first unset (or empty) variable and how to set it.
require_env() {
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      die "$name is not set: $(_hint "$name")"
    fi
  done
}

case "${DRY_RUN:-0}" in
  0 | 1) ;;
  *) die "DRY_RUN=${DRY_RUN} must be 0 or 1" ;;
esac

# shquote ARG...: the arguments as one POSIX shell string (single quotes where needed): readable
# in DRY_RUN output, and safe as an ssh --command.
shquote() {
  local out="" arg q="'"
  for arg in "$@"; do
    if [[ -z "$arg" || ! "$arg" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      arg="$q${arg//$q/$q\\$q$q}$q"
    fi
    out="${out:+$out }$arg"
  done
  printf '%s' "$out"
}

# run CMD...: runs it, or with DRY_RUN=1 prints it after '+ ' instead.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '+ %s\n' "$(shquote "$@")"
  else
    "$@"
  fi
}

# PREEMPTIBLE: 1/true/yes or 0/false/no/unset.
is_preemptible() {
  case "${PREEMPTIBLE:-0}" in
    1 | true | yes) return 0 ;;
    0 | false | no | "") return 1 ;;
    *) die "PREEMPTIBLE=${PREEMPTIBLE} must be 1 or 0 (true/false, yes/no)" ;;
  esac
}

# TOOL: TPU_TOOL, else gcloud when on PATH, else ctpu when on PATH (the appendix's retired tool).
init_tool() {
  TOOL="${TPU_TOOL:-}"
  if [[ -z "$TOOL" ]]; then
    if command -v gcloud >/dev/null 2>&1; then
      TOOL=gcloud
    elif command -v ctpu >/dev/null 2>&1; then
      TOOL=ctpu
    else
      die "neither gcloud nor ctpu is on PATH: install the Google Cloud SDK (or run from Cloud Shell)"
    fi
  fi
  case "$TOOL" in
    gcloud | ctpu) ;;
    *) die "TPU_TOOL=$TOOL must be gcloud or ctpu" ;;
  esac
  if [[ "${DRY_RUN:-0}" != 1 ]] && ! command -v "$TOOL" >/dev/null 2>&1; then
    die "TPU_TOOL=$TOOL but $TOOL is not on PATH"
  fi
}

# TPU_CORES (v3-128 -> 128) and TPU_IS_POD (1 when the slice spans hosts: more than 8 cores).
init_size() {
  require_env TPU_SIZE
  if [[ ! "$TPU_SIZE" =~ ^v[0-9]+[a-z]*-([0-9]+)$ ]]; then
    die "TPU_SIZE=$TPU_SIZE is not an accelerator type such as v2-8, v3-8 or v3-128"
  fi
  TPU_CORES="${BASH_REMATCH[1]}"
  TPU_IS_POD=0
  if ((TPU_CORES > 8)); then
    TPU_IS_POD=1
  fi
}

# RUNTIME_VERSION: TF_VERSION as given when it is a full name (tpu-vm-...), else the TensorFlow
# TPU VM image of TF_VERSION (pod slices have their own "-pod" images).
init_runtime_version() {
  require_env TF_VERSION
  init_size
  if [[ "$TF_VERSION" == tpu-vm-* ]]; then
    RUNTIME_VERSION="$TF_VERSION"
  elif ((TPU_IS_POD)); then
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pod-pjrt"
  else
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pjrt"
  fi
}

# find_hparams OUT NAME VAR: sets OUT to the hparams file NAME (a path in the repo, or a bare name
# of hparams/), relative to the repo root; it must exist in this checkout (up.sh copies hparams/
# to the TPU VM). VAR names the setting in the error.
find_hparams() {
  local out="$1" name="$2" var="$3" path file known=()
  for path in "$name" "hparams/$name" "hparams/$name.yaml"; do
    if [[ -f "$REPO_ROOT/$path" ]]; then
      printf -v "$out" '%s' "$path"
      return 0
    fi
  done
  for file in "$REPO_ROOT"/hparams/*.yaml; do
    known+=("$(basename "$file")")
  done
  die "$var=$name: no such file in $REPO_ROOT/hparams; set $var to one of: ${known[*]}"
}

# HPARAMS_PATH: HPARAMS, or the default given (the GAN's configuration).
init_hparams() {
  find_hparams HPARAMS_PATH "${HPARAMS:-$1}" HPARAMS
}

# CAS_HPARAMS_PATH: CAS_HPARAMS, or the CAS protocol for this TPU: the v2-8 one (batch 1,024) on a
# single host, the pod one (batch 8,192) on a slice (after init_size).
init_cas_hparams() {
  local default=cas_resnet50_v2-8
  if ((TPU_IS_POD)); then
    default=cas_resnet50_pod
  fi
  find_hparams CAS_HPARAMS_PATH "${CAS_HPARAMS:-$default}" CAS_HPARAMS
}

# MODEL_DIR, or gs://BUCKET/tf_biggan/<hparams name> when only BUCKET is set: the name of
# HPARAMS_PATH (after init_hparams), else the name given (init_model_dir NAME: the default file's).
init_model_dir() {
  if [[ -z "${MODEL_DIR:-}" ]]; then
    if [[ -z "${BUCKET:-}" ]]; then
      die "MODEL_DIR is not set: $(_hint MODEL_DIR)"
    fi
    local bucket="${BUCKET#gs://}"
    MODEL_DIR="gs://${bucket%%/*}/tf_biggan/$(basename "${HPARAMS_PATH:-${1:-}}" .yaml)"
  fi
  MODEL_DIR="${MODEL_DIR%/}"
}

# For the stages that read an existing run (eval, export, synthesize): HPARAMS_PATH is HPARAMS when
# it is set (the app then takes that file's eval section), else empty: no --hparams, and the app
# uses the run's own MODEL_DIR/hparams.yaml. No GAN configuration file is needed, so these stages
# run on any TPU size (e.g. the CAS appendix's v2-8). Sets MODEL_DIR too (DEFAULT names its default).
init_run() {
  HPARAMS_PATH=""
  if [[ -n "${HPARAMS:-}" ]]; then
    find_hparams HPARAMS_PATH "$HPARAMS" HPARAMS
  fi
  init_model_dir "$1"
}

# For the main job (all.sh), which trains before it reads the run: HPARAMS, else the default file
# DEFAULT when this checkout has one; else the run's own MODEL_DIR/hparams.yaml, for a run trained
# earlier (on another TPU size, with train.sh and HPARAMS) whose later stages run on this TPU.
init_job_hparams() {
  local default="$1"
  if [[ -n "${HPARAMS:-}" || -f "$REPO_ROOT/hparams/$default.yaml" ]]; then
    init_hparams "$default"
    init_model_dir
    return
  fi
  init_model_dir "$default"
  HPARAMS_PATH="$MODEL_DIR/hparams.yaml"
  echo "$SCRIPT_NAME: no hparams/$default.yaml: using the run's own $HPARAMS_PATH (train the run first," \
       "e.g. with train.sh and HPARAMS=biggan_128_v3-8, or set HPARAMS)" >&2
}

# What every stage needs: the tool, the TPU's size, and the --tpu value: the VM's own TPU on a
# single-host TPU VM ("local"), the slice's name on a pod or with ctpu (a TPU node).
init_stage() {
  init_tool
  require_env TPU_NAME
  if [[ "$TOOL" == gcloud ]]; then
    require_env ZONE
  fi
  init_size
  TPU_ARG=local
  if [[ "$TOOL" == ctpu ]] || ((TPU_IS_POD)); then
    TPU_ARG="$TPU_NAME"
  fi
}

# OVERRIDES: the non-empty arguments comma-joined, then HPARAMS_OVERRIDES (last: the user's win).
join_overrides() {
  OVERRIDES=""
  local part
  for part in "$@" "${HPARAMS_OVERRIDES:-}"; do
    if [[ -n "$part" ]]; then
      OVERRIDES="${OVERRIDES:+$OVERRIDES,}$part"
    fi
  done
}

# Exit codes that mean "preempted, rerun me": the app's after SIGTERM (it saved the step it was at,
# tf_biggan/training/preemption.py: 128 + 15), and gcloud ssh's when the connection dropped because
# the VM went first (255). Ctrl-C (130) and errors are not retried.
PREEMPTED_EXIT=143
SSH_LOST_EXIT=255

# app MODE [FLAG...]: app_once, and with RETRY_PREEMPTED=N (default 0) up to N reruns after a
# preemption: up.sh (re-creates a PREEMPTED TPU, copies the code), then the same command; every stage
# resumes from what MODEL_DIR holds. Needs up.sh's settings (TF_VERSION) when N > 0.
app() {
  local retries="${RETRY_PREEMPTED:-0}" attempt=0 status
  if [[ ! "$retries" =~ ^[0-9]+$ ]]; then
    die "RETRY_PREEMPTED=$retries must be a whole number of reruns (0: none)"
  fi
  if ((retries > 0)); then
    require_env TF_VERSION
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
      echo "# on exit $PREEMPTED_EXIT (preempted) or $SSH_LOST_EXIT (ssh lost): $TPU_SCRIPTS_DIR/up.sh, then the" \
           "command again, up to $retries time(s)"
    fi
  fi
  while true; do
    status=0
    app_once "$@" || status=$?
    if ((status == 0 || attempt >= retries)) || [[ "$status" != "$PREEMPTED_EXIT" && "$status" != "$SSH_LOST_EXIT" ]]; then
      return "$status"
    fi
    attempt=$((attempt + 1))
    echo "$SCRIPT_NAME: exit $status (preempted): re-creating the TPU and rerunning ($attempt of $retries)" >&2
    "$TPU_SCRIPTS_DIR/up.sh"
  done
}

# app_once MODE [FLAG...]: `python3 -m tf_biggan.main --mode=MODE FLAG...` where the TPU is: locally
# with ctpu (or RUN_LOCALLY=1), else on worker 0 of the TPU VM through ssh, in REMOTE_DIR
# (default tf_biggan, in the home directory). Call init_stage first.
app_once() {
  local mode="$1"
  shift
  local cmd=(python3 -m tf_biggan.main "--mode=$mode" "$@")
  if [[ "$TOOL" == ctpu || "${RUN_LOCALLY:-0}" == 1 ]]; then
    (cd "$REPO_ROOT" && run "${cmd[@]}")
    return
  fi
  local remote prefix=""
  if ((TPU_IS_POD)); then
    prefix="TPU_LOAD_LIBRARY=0 "
  fi
  remote="cd $(shquote "${REMOTE_DIR:-tf_biggan}") && ${prefix}$(shquote "${cmd[@]}")"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=0 --command="$remote"
}
