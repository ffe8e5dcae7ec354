"""`tf-biggan --mode=cas` end to end through the real CLI: a real + synthetic mixture, killed with
SIGKILL mid-epoch, rerun, finishes at the same step count with the weights of an uninterrupted run
(the input replays), writes its report; a third call skips."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.data import digits, tfrecord
from tf_biggan.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = ("cas.epochs=2,cas.batch_size=16,cas.save_every=10,cas.steps_per_loop=5,cas.log_every=20,"
             "cas.synthetic_images=100")


def _write_synthetic(directory):
    """Two shards of 200 JPEG digits (10 classes x 20) + a manifest, as --mode=synthesize leaves them."""
    images, labels = digits.load_digits_split("train")
    picks = np.concatenate([np.nonzero(labels == c)[0][:20] for c in range(10)])
    examples = []
    for i in picks:
        grey = np.repeat(np.round(images[i] * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)[..., None], 3, -1)
        examples.append(tfrecord.make_example(tf.io.encode_jpeg(grey).numpy(), int(labels[i])))
    os.makedirs(directory)
    tfrecord.write_shard(os.path.join(directory, "train-00000-of-00002"), examples[::2])
    tfrecord.write_shard(os.path.join(directory, "train-00001-of-00002"), examples[1::2])
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump({"format": "imagenet_tfrecord"}, f)


def _command(model_dir, synthetic):
    return [sys.executable, "-m", "tf_biggan.main", "--mode=cas", "--hparams=hparams/cas_digits.yaml",
            f"--hparams_overrides={OVERRIDES}", f"--model_dir={model_dir}",
            f"--train_data=digits:train,{synthetic}/train-*", "--eval_data=digits:test"]


@pytest.mark.slow  # a CAS run killed and restarted through the CLI (~30 s); the loop's kill-and-resume is tested
# fast for the GAN (test_train.py), which runs under the same run_loop and checkpoint manager
def test_cas_cli_resumes_after_kill_and_reports(tmp_path):
    synthetic = str(tmp_path / "synthetic")
    _write_synthetic(synthetic)
    model_dir = str(tmp_path / "cas")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(_command(model_dir, synthetic), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tf.train.latest_checkpoint(ckpt_dir):
            break
        time.sleep(0.02)
    killed_at = tf.train.latest_checkpoint(ckpt_dir)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0].decode()
    assert killed_at, out[-2000:]
    assert not os.path.exists(os.path.join(model_dir, "cas_report.json")), "finished before the kill"

    done = subprocess.run(_command(model_dir, synthetic), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "resuming at step" in done.stdout and "img/s" in done.stdout and "ETA" in done.stdout
    with open(os.path.join(model_dir, "cas_report.json")) as f:
        report = json.load(f)
    spe = (1433 + 100) // 16
    assert report["steps"] == 2 * spe and report["steps_per_epoch"] == spe
    assert 0 < report["resumed_from_step"] < report["steps"]
    assert tf.train.latest_checkpoint(ckpt_dir).endswith(f"ckpt-{2 * spe}")
    assert report["train_images"] == 1533 and report["real_images"] == 1433 and report["synthetic_images"] == 100
    assert report["sources"][1]["per_class"] == [10] * 10  # class-balanced draw of the 100
    assert report["synthetic_fraction"] == 100 / 1533 and report["epochs"] == 2
    # Two epochs learn the digits well above chance (0.1); how far above depends on the data order, so
    # the bound is twice chance, not what one order happened to reach.
    assert report["eval_images"] == 364 and 0.2 < report["top1"] <= report["top5"] <= 1.0
    assert set(report["per_class_top1"]) == {str(c) for c in range(10)} and report["images_per_sec"] > 0
    assert os.listdir(os.path.join(model_dir, "train"))  # TensorBoard events

    # The killed + resumed run ends with exactly the weights (and optimizer slots, BN statistics) of an
    # uninterrupted one: it saw the same batches, crops and flips (killed mid-epoch: 95 steps per epoch).
    assert report["resumed_from_step"] % spe != 0
    straight = str(tmp_path / "straight")
    once = subprocess.run(_command(straight, synthetic), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert once.returncode == 0, once.stdout[-2000:] + once.stderr[-2000:]
    ours, theirs = (tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(d, "checkpoints")))
                    for d in (model_dir, straight))
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(ckpt_dir)) if not n.startswith(
        ("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    assert len([n for n in names if n.startswith("model/")]) > 20 and any("optimizer" in n for n in names)
    for name in names:
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name), err_msg=name)
    with open(os.path.join(straight, "cas_report.json")) as f:
        straight_report = json.load(f)
    for key in ("top1", "top5", "per_class_top1", "train_images", "steps"):
        assert straight_report[key] == report[key], key

    # A third call (in-process, as --mode=all would make it) finds the report complete and skips.
    from tf_biggan.cas import run_cas
    from tf_biggan.config import load_hparams

    hp = load_hparams(os.path.join(ROOT, "hparams/cas_digits.yaml"), OVERRIDES)
    lines = []
    assert run_cas(hp, model_dir, f"digits:train,{synthetic}/train-*", "digits:test", log=lines.append) == report
    assert "is complete" in lines[0]
    # Another protocol in the same directory is refused, naming what differs.
    other = load_hparams(os.path.join(ROOT, "hparams/cas_digits.yaml"), OVERRIDES + ",cas.epochs=3")
    with pytest.raises(UserError, match="holds a CAS run with other cas"):
        run_cas(other, model_dir, f"digits:train,{synthetic}/train-*", "digits:test", log=lines.append)
