"""Preemption (tf_biggan/training/preemption.py): SIGTERM / SIGINT end a loop at a step boundary after
the checkpoint of that step, and the process with 128 + the signal's number.

Fast, in-process: the loop's stop (the step the graph call ended at, the save run once), the signal
outside a loop and a second signal, the multi-worker all-reduce agreement on two replicas, synthesis
abandoning the shard in hand. Slow, through the real CLI in subprocesses: `kill -TERM` / `kill -INT`
during training on 2 CPU replicas and a rerun that ends with the uninterrupted run's report and logs
each step once; a two-process multi-worker run (TensorFlow's PreemptionCheckpointHandler: both save
the same step); CAS (the final weights of an uninterrupted run); `--mode=all` (the same report.json);
tpu_scripts' retry on the preemption exit code.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from test_main_job import _figures  # every figure of a report but times and rates
from tf_biggan.training import loop, preemption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------ in-process


def _loop(target, steps_per_loop, signal_at_call, signum=signal.SIGTERM, save_every=0):
    """run_loop over fake steps; `signal_at_call`: the graph call during which the process signals itself."""
    calls, saves = [], []

    def train_steps(n):
        calls.append(n)
        if len(calls) == signal_at_call:
            os.kill(os.getpid(), signum)  # arrives while "the graph call" runs
        return {"loss": 1.0}

    state = loop.LoopState(0, target, 0, {}, 0.0, None, 0.0)
    actions = [loop.Action("save", save_every, lambda s: saves.append(s.step), at_stop=True),
               loop.Action("log", 50, lambda s: None)]
    with preemption.graceful("the test loop"):
        loop.run_loop(state, train_steps, actions, steps_per_loop, 8, None, stop=preemption.StepBoundary())
    return state, calls, saves


def test_a_signal_stops_the_loop_after_the_call_in_progress_and_saves_that_step():
    state, calls, saves = _loop(target=100, steps_per_loop=1, signal_at_call=5)
    assert state.step == 5 and calls == [1] * 5 and saves == [5] and state.stopped_by == "SIGTERM"
    # steps_per_loop > 1: the call in progress runs to its end (7 steps), the checkpoint is of step 14.
    state, calls, saves = _loop(target=100, steps_per_loop=7, signal_at_call=2, signum=signal.SIGINT)
    assert state.step == 14 and calls == [7, 7] and saves == [14] and state.stopped_by == "SIGINT"
    # On a step the save action was due anyway, it runs once, not twice.
    state, calls, saves = _loop(target=100, steps_per_loop=1, signal_at_call=4, save_every=2)
    assert state.step == 4 and saves == [2, 4]
    assert preemption.stop_exit_code("SIGTERM") == 143 and preemption.stop_exit_code("SIGINT") == 130
    assert preemption.stop_exit_code(preemption.PEER) == 143


def test_without_a_signal_the_loop_runs_to_its_target_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    state, calls, saves = _loop(target=6, steps_per_loop=4, signal_at_call=0)
    assert state.step == 6 and calls == [4, 2] and saves == [] and state.stopped_by is None
    assert signal.getsignal(signal.SIGTERM) is before and preemption.requested() is None


def test_outside_a_loop_a_signal_stops_at_once_as_does_a_second_one():
    with pytest.raises(preemption.Preempted) as info:
        with preemption.watching():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler's exception
    assert info.value.exit_code == 143 and "SIGTERM" in info.value.message
    with pytest.raises(preemption.Preempted) as info:
        with preemption.graceful():
            os.kill(os.getpid(), signal.SIGINT)
            assert preemption.requested() == signal.SIGINT  # the first one is only recorded
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert info.value.exit_code == 130 and "second signal" in info.value.message
    # A signal recorded while a section finishes its last work stops the process when it ends.
    with pytest.raises(preemption.Preempted, match="after the test section finished"):
        with preemption.graceful("the test section"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.requested() is None


def test_all_reduce_agreement_gives_every_replica_the_same_answer():
    """The multi-worker agreement where TensorFlow's handler is inert: the sum of the signalled flags."""
    from conftest import mirrored_strategy

    agreement = preemption._AllReduceAgreement(mirrored_strategy(2))
    saved = []
    assert agreement(lambda: saved.append(1)) is None and saved == []
    with preemption.graceful():
        os.kill(os.getpid(), signal.SIGTERM)
        assert agreement(lambda: saved.append(1)) == "SIGTERM" and saved == [1]
        preemption._STATE.act("SIGTERM")  # (the loop would raise Preempted)


class _FakeSource:
    """A deterministic stand-in generator: images are a fixed function of z and the label."""

    dim_z, num_classes, resolution, batch_size = 4, 3, 8, 5
    description = {"kind": "fake"}
    standing_stats = None

    def __init__(self, signal_at_batch=None):
        self.batches, self.signal_at_batch = 0, signal_at_batch

    def prepare(self):
        pass

    def generate(self, z, labels):
        self.batches += 1
        if self.batches == self.signal_at_batch:
            os.kill(os.getpid(), signal.SIGTERM)
        z = np.asarray(z, np.float32)
        base = np.tanh(z[:, :3, None, None] + np.asarray(labels, np.float32)[:, None, None, None])
        return np.broadcast_to(np.transpose(base, (0, 2, 3, 1)), (len(z), 8, 8, 3)).copy()


def test_synthesis_abandons_the_shard_in_hand_and_the_rerun_is_byte_identical(tmp_path):
    from tf_biggan.synthesis.synthesize import synthesize

    kwargs = dict(num_shards=3, truncation=0.5, seed=1, jpeg_quality=90)
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    synthesize(_FakeSource(), straight, [10, 10, 10], log=lambda m: None, **kwargs)
    # 10 images a shard in batches of 5: the signal comes while batch 3 (shard 1's first) is made, so
    # shard 1 is dropped before its second batch. (One during batch 4, its last, would let it finish.)
    with pytest.raises(preemption.Preempted) as info:
        with preemption.watching():
            synthesize(_FakeSource(signal_at_batch=3), stopped, [10, 10, 10], log=lambda m: None, **kwargs)
    assert info.value.exit_code == 143 and "abandoned train-00001-of-00003" in info.value.message
    # Shard 0 complete with its marker; shard 1 neither there nor half-written; no manifest yet.
    names = sorted(os.listdir(stopped))
    assert "train-00000-of-00003" in names and ".train-00000-of-00003.done" in names
    assert not any(n.startswith(("train-00001", ".train-00001", "manifest")) for n in names), names
    synthesize(_FakeSource(), stopped, [10, 10, 10], log=lambda m: None, **kwargs)
    for i in range(3):
        name = f"train-0000{i}-of-00003"
        with open(os.path.join(straight, name), "rb") as a, open(os.path.join(stopped, name), "rb") as b:
            assert a.read() == b.read(), name
    assert os.path.exists(os.path.join(stopped, "manifest.json"))


# ------------------------------------------------------------------------------------ through the CLI


def test_help_documents_the_exit_codes():
    """`tf-biggan --help` (the console script, whose own module has no docstring) says what 143 / 130 mean."""
    import shutil

    command = [shutil.which("tf-biggan") or "", "--help"]
    if not command[0]:
        command = [sys.executable, "-m", "tf_biggan.main", "--help"]
    out = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    text = " ".join((out.stdout + out.stderr).split())
    assert "143 stopped by SIGTERM" in text and "130 stopped by SIGINT" in text, text[:2000]
    assert "the command that resumes" in text

TRAIN = ("model.ch=4,train.batch_size=8,train.disc_steps=1,train.steps_per_loop=1,train.log_every=1,"
         "train.save_every=10,train.sv_every=100,train.sample_every=1000,train.sample_columns=2")
TRAIN_STEPS = 24
LOSSES = ("losses/", "d_output/")  # what a resumed run must reproduce (images/s is a measurement)


def _env(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra)


def _train_command(model_dir, *extra):
    return [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={model_dir}",
            f"--hparams_overrides={TRAIN}", f"--train_steps={TRAIN_STEPS}", *extra]


def _scalars(model_dir):
    path = os.path.join(model_dir, "train", "scalars.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _signal_at_step(procs, model_dir, step, signum, target=0, timeout=600):
    """Sends `signum` to procs[target] once scalars.jsonl shows `step`: the signal then arrives while the
    step after it (or the one after that) is being trained. Returns the last step logged before the signal."""
    deadline = time.time() + timeout
    while time.time() < deadline and all(p.poll() is None for p in procs):
        logged = [row["step"] for row in _scalars(model_dir)]
        if logged and max(logged) >= step:
            procs[target].send_signal(signum)
            return max(logged)
        time.sleep(0.005)
    raise AssertionError(f"never reached step {step}: " + "".join(p.communicate()[1][-2000:] for p in procs))


def _finish(procs, timeout=900):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        outs.append((p.returncode, out, err))
    return outs


def _run(command, env=None, timeout=900):
    proc = subprocess.run(command, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _same_report(resumed_dir, straight_dir):
    """train_report.json of the resumed run equals the uninterrupted run's but for times and rates, and
    scalars.jsonl holds every (step, tag) once, the same ones, with the same losses."""
    reports = []
    for d in (resumed_dir, straight_dir):
        with open(os.path.join(d, "train_report.json")) as f:
            report = json.load(f)
        report["checkpoint"] = os.path.basename(report["checkpoint"])
        reports.append({k: v for k, v in report.items() if k not in ("seconds", "images_per_sec")})
    assert reports[0] == reports[1] and reports[0]["step"] == TRAIN_STEPS
    rows = [_scalars(d) for d in (resumed_dir, straight_dir)]
    keys = [[(r["step"], r["tag"]) for r in rs] for rs in rows]
    assert len(keys[0]) == len(set(keys[0])), "a step was logged twice"
    assert set(keys[0]) == set(keys[1]) and {s for s, _ in keys[0]} == set(range(1, TRAIN_STEPS + 1))
    losses = [{(r["step"], r["tag"]): r["value"] for r in rs if r["tag"].startswith(LOSSES)} for rs in rows]
    assert losses[0] == losses[1] and len(losses[0]) >= 5 * TRAIN_STEPS


def _stopped_line(err):
    lines = [line for line in err.splitlines() if line.startswith("tf-biggan: stopped by")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("straight") / "run")
    _run(_train_command(model_dir, "--cpu_replicas=2"))
    return model_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_during_training_saves_the_step_and_the_rerun_ends_as_an_uninterrupted_run(
        straight_run, tmp_path, signum, code):
    import tensorflow as tf

    model_dir = str(tmp_path / "run")
    proc = subprocess.Popen(_train_command(model_dir, "--cpu_replicas=2"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = _signal_at_step([proc], model_dir, 6, signum)
    ((rc, out, err),) = _finish([proc])
    assert rc == code, err[-3000:]
    # Stopped within the step in progress (or the next, had the log lagged): its checkpoint, its report.
    with open(os.path.join(model_dir, "train_report.json")) as f:
        report = json.load(f)
    stopped = report["step"]
    assert seen <= stopped <= seen + 2 and stopped < TRAIN_STEPS, (seen, stopped)
    assert report["stopped_by"] == signal.Signals(signum).name
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, f"ckpt-{stopped}")
    assert max(row["step"] for row in _scalars(model_dir)) == stopped  # nothing trained past it
    line = _stopped_line(err)
    assert f"saved step {stopped} of {TRAIN_STEPS}" in line and f"ckpt-{stopped}" in line
    assert f"exit code {code}" in line and f"rerun the same command: tf-biggan --mode=train --model_dir={model_dir}" in line
    rerun = _run(_train_command(model_dir, "--cpu_replicas=2"))
    assert f"resumed from {os.path.join(model_dir, f'ckpt-{stopped}')} at step {stopped}" in rerun.stdout
    _same_report(model_dir, straight_run)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(model_dir):
    """Two local worker processes of one MultiWorkerMirroredStrategy job (TF_CONFIG on 127.0.0.1)."""
    hosts = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    return [subprocess.Popen(_train_command(model_dir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(TF_CONFIG=json.dumps(
                                 {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})))
            for i in range(2)]


@pytest.mark.slow
def test_multi_worker_sigterm_on_one_worker_makes_both_save_the_same_step(tmp_path):
    """SIGTERM to worker 1: TensorFlow's PreemptionCheckpointHandler agrees on a step, both workers save
    it (the chief's ckpt-STEP) and exit 143; the rerun of both ends as an uninterrupted two-worker run."""
    import tensorflow as tf

    straight, model_dir = str(tmp_path / "straight"), str(tmp_path / "run")
    assert all(rc == 0 for rc, _, _ in _finish(_workers(straight)))
    procs = _workers(model_dir)
    seen = _signal_at_step(procs, model_dir, 4, signal.SIGTERM, target=1)
    (rc0, _, err0), (rc1, _, err1) = _finish(procs)
    assert (rc0, rc1) == (143, 143), err0[-2000:] + err1[-2000:]
    stopped = int(tf.train.latest_checkpoint(model_dir).rsplit("-", 1)[1])
    assert seen < stopped < TRAIN_STEPS
    assert "stopped by the preemption of another worker" in _stopped_line(err0)  # the chief
    assert "stopped by SIGTERM" in _stopped_line(err1)
    for err in (err0, err1):
        assert f"saved step {stopped} of {TRAIN_STEPS}" in _stopped_line(err)
    assert not [n for n in os.listdir(model_dir) if n.startswith((".worker", "workertemp"))]
    assert all(rc == 0 for rc, _, _ in _finish(_workers(model_dir)))
    _same_report(model_dir, straight)


CAS = "cas.epochs=1,cas.batch_size=16,cas.steps_per_loop=1,cas.log_every=1,cas.save_every=50"


def _cas_command(model_dir):
    return [sys.executable, "-m", "tf_biggan.main", "--mode=cas", "--hparams=hparams/cas_digits.yaml",
            f"--hparams_overrides={CAS}", f"--model_dir={model_dir}", "--train_data=digits:train",
            "--eval_data=digits:test"]


@pytest.mark.slow
def test_sigterm_during_cas_saves_the_step_and_the_rerun_ends_with_the_uninterrupted_weights(tmp_path):
    import tensorflow as tf

    straight, model_dir = str(tmp_path / "straight"), str(tmp_path / "cas")
    _run(_cas_command(straight))
    proc = subprocess.Popen(_cas_command(model_dir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = _signal_at_step([proc], model_dir, 12, signal.SIGTERM)
    ((rc, _, err),) = _finish([proc])
    assert rc == 143, err[-3000:]
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    stopped = int(latest.rsplit("-", 1)[1])
    assert seen <= stopped <= seen + 2 and stopped % 50 != 0  # the stop's own save, not a periodic one
    assert f"CAS training saved step {stopped} of 89" in _stopped_line(err)  # 1,433 digits // 16
    assert not os.path.exists(os.path.join(model_dir, "cas_report.json"))
    assert "resuming at step" in _run(_cas_command(model_dir)).stdout
    ours, theirs = (tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(d, "checkpoints")))
                    for d in (model_dir, straight))
    names = [n for n, _ in tf.train.list_variables(latest) if n.startswith(("model/", "optimizer/"))]
    assert len(names) > 20
    for name in names:
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name), err_msg=name)
    reports = []
    for d in (model_dir, straight):
        with open(os.path.join(d, "cas_report.json")) as f:
            reports.append(json.load(f))
    assert reports[0]["top1"] == reports[1]["top1"] and reports[0]["resumed_from_step"] == stopped


# The main job made tiny (tests/test_main_job.py's settings).
ALL = ",".join([
    "train.train_steps=6", "train.steps_per_loop=1", "train.save_every=3", "train.log_every=1",
    "train.sv_every=6", "train.sample_every=6", "eval.num_samples=100", "eval.truncations=[0.5,0]",
    "eval.standing_stats_passes=2", "eval.export_truncations=[0.5,1.0]", "eval.classifier_epochs=1",
    "eval.classifier_max_examples=500", "cas.epochs=1", "cas.save_every=3", "cas.steps_per_loop=3",
])


def _all_command(model_dir):
    return [sys.executable, "-m", "tf_biggan.main", "--mode=all", f"--model_dir={model_dir}",
            f"--hparams_overrides={ALL}", "--images_per_class=30"]


def _signal_at_line(proc, log_path, text, signum, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        with open(log_path) as f:
            if text in f.read():
                proc.send_signal(signum)
                return
        time.sleep(0.01)
    raise AssertionError(f"never printed {text!r}")


@pytest.mark.slow
def test_mode_all_stopped_in_training_and_in_the_sweep_reruns_to_the_uninterrupted_report(tmp_path):
    """SIGTERM while the GAN trains (a loop: saves its step, 143), then SIGINT in the sweep (no loop:
    stops at once, 130), then a rerun: report.json has the uninterrupted run's every figure."""
    straight, model_dir = str(tmp_path / "straight"), str(tmp_path / "run")
    _run(_all_command(straight))
    log = str(tmp_path / "out.txt")
    for signum, code, wait in ((signal.SIGTERM, 143, None), (signal.SIGINT, 130, "[all] sweep: running")):
        with open(log, "w") as out:
            proc = subprocess.Popen(_all_command(model_dir), cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.PIPE,
                                    text=True)
            if wait is None:
                _signal_at_step([proc], model_dir, 2, signum)
            else:
                _signal_at_line(proc, log, wait, signum)
            ((rc, _, err),) = _finish([proc])
        assert rc == code, err[-3000:]
        assert f"tf-biggan: stopped by {signal.Signals(signum).name}" in err and "--mode=all" in err
        assert not os.path.exists(os.path.join(model_dir, "report.json"))
    with open(os.path.join(model_dir, "train_report.json")) as f:
        assert json.load(f)["step"] == 6  # the second invocation finished training before the sweep
    out = _run(_all_command(model_dir)).stdout
    assert "[all] train: complete, skipped" in out and "[all] sweep: running" in out
    reports = []
    for d in (model_dir, straight):
        with open(os.path.join(d, "report.json")) as f:
            reports.append(dict(_figures(json.load(f))))
    assert {"/cas_top1", "/real_top1", "/fid", "/is", "/step"} <= set(reports[0]) and reports[0] == reports[1]


# ------------------------------------------------------------------------------------ tpu_scripts

FAKE_GCLOUD = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:5] == ["compute", "tpus", "tpu-vm", "describe"]:
    print("PREEMPTED")
if any("tf_biggan.main" in a for a in sys.argv):  # the app: the next exit code of FAKE_APP_EXITS
    with open(os.environ["FAKE_APP_EXITS"]) as f:
        codes = f.read().split()
    with open(os.environ["FAKE_APP_EXITS"], "w") as f:
        f.write(" ".join(codes[1:]))
    sys.exit(int(codes[0]))
"""


def _tpu_script(tmp_path, script, exits, **settings):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    (tmp_path / "exits").write_text(" ".join(map(str, exits)))
    log = tmp_path / "calls.jsonl"
    if log.exists():
        log.unlink()
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log), FAKE_APP_EXITS=str(tmp_path / "exits"),
               TPU_NAME="biggan-tpu", ZONE="us-central1-f", TPU_SIZE="v3-8", TF_VERSION="2.16.1",
               TRAIN_DIR="gs://b/imagenet", EVAL_DIR="gs://b/imagenet", MODEL_DIR="gs://b/run", **settings)
    proc = subprocess.run(["bash", os.path.join(ROOT, "tpu_scripts", script)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # Each call by what it is: the app, or the gcloud verb (describe, delete, create, scp, ssh).
    return proc, ["app" if any("tf_biggan.main" in a for a in c) else c[3] for c in calls]


def test_tpu_scripts_rerun_after_a_preemption_when_asked(tmp_path):
    """RETRY_PREEMPTED=N: exit 143 (the app saved its step) or 255 (ssh lost) -> up.sh re-creates the
    preempted TPU and copies the code, then the same command runs again; other exits are final."""
    up = ["describe", "delete", "create", "ssh", "scp", "ssh"]
    proc, calls = _tpu_script(tmp_path, "all.sh", [143, 255, 0], RETRY_PREEMPTED="2")
    assert proc.returncode == 0 and calls == ["app", *up, "app", *up, "app"], (calls, proc.stderr)
    assert "exit 143 (preempted): re-creating the TPU and rerunning (1 of 2)" in proc.stderr
    proc, calls = _tpu_script(tmp_path, "train.sh", [143, 143], RETRY_PREEMPTED="1")
    assert proc.returncode == 143 and calls == ["app", *up, "app"]  # retries used up
    proc, calls = _tpu_script(tmp_path, "all.sh", [130], RETRY_PREEMPTED="3")
    assert proc.returncode == 130 and calls == ["app"]  # Ctrl-C is not a preemption
    proc, calls = _tpu_script(tmp_path, "all.sh", [143])
    assert proc.returncode == 143 and calls == ["app"]  # the default: no retry
    proc, calls = _tpu_script(tmp_path, "all.sh", [0], RETRY_PREEMPTED="2", DRY_RUN="1")
    assert proc.returncode == 0 and calls == [] and "# on exit 143 (preempted) or 255 (ssh lost)" in proc.stdout
    proc, _ = _tpu_script(tmp_path, "all.sh", [0], RETRY_PREEMPTED="yes", DRY_RUN="1")
    assert proc.returncode == 2 and "RETRY_PREEMPTED=yes must be a whole number" in proc.stderr
