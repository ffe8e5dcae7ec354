"""Typed requests (tf_biggan/requests.py): every mode's request is built once from the command line.

Through the real CLI, one bad value per mode (a missing required flag, a number out of range, flags
that exclude each other, two fields that disagree) gives exit status 2 and one `tf-biggan: error:`
line naming the flag, BEFORE TensorFlow starts: the processes run with a `tensorflow` package that
refuses to import, so any TensorFlow import would end in a traceback instead. In this process: each
mode's request takes the flags of its fields' names, its defaults are the flags' defaults, and the
bounds the flags declare are the ones a request built in Python enforces.
"""

import dataclasses
import os
import subprocess
import sys

import pytest

from tf_biggan.errors import UserError
from tf_biggan.requests import (CHOICES, RANGES, AllRequest, CasRequest, Launch, PrepareDataRequest,
                                SynthesizeRequest, TrainRequest, from_values, launch_of)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# mode -> (arguments with one bad value, what the one error line must contain). {dir} is a fresh
# directory path (never created), {file} an existing file.
BAD = {
    "summary": (["--tpu=t", "--cpu_replicas=2"], "--tpu and --cpu_replicas exclude each other"),
    "train": (["--model_dir={dir}", "--checkpoint={dir}/ckpt-2"], "--checkpoint=... resumes from an older"),
    "inspect_data": ([], "--mode=inspect_data needs --model_dir"),
    "eval": (["--model_dir={dir}", "--truncation=-1"], "--truncation=-1"),
    "sweep": (["--inception_path=x"], "--mode=sweep needs --model_dir"),
    "interpolate": (["--model_dir={dir}", "--seed=abc"], "--seed=abc"),
    "neighbors": (["--truncation=0.5"], "--mode=neighbors needs --model_dir"),
    "memorization": (["--model_dir={file}"], "--model_dir={file} is a file, not a directory"),
    "export": (["--model_dir={dir}", "--export_dir={file}"], "--export_dir={file} is a file"),
    "import_hub": (["--model_dir={dir}"], "--mode=import_hub needs --module"),
    "synthesize": (["--model_dir={dir}", "--output_dir={dir}/s", "--num_workers=2", "--worker_index=2"],
                   "--worker_index=2 must be in [0, --num_workers=2)"),
    "cas": (["--model_dir={dir}", "--train_data=digits:train"], "--mode=cas needs --eval_data"),
    "cas_sweep": (["--eval_data=digits:test"], "--mode=cas_sweep needs --model_dir"),
    "prepare_data": (["--image_dir={dir}", "--output_dir={dir}/o", "--validation_fraction=1.5"],
                     "--validation_fraction=1.5"),
    "real_stats": (["--inception_path=x"], "--mode=real_stats needs --model_dir"),
    "all": (["--model_dir={dir}", "--num_workers=2", "--worker_index=5"], "--worker_index=5 must be in"),
}


def test_one_bad_value_per_mode_is_one_line_before_tensorflow(tmp_path):
    from tf_biggan.modes import MODES

    assert sorted(BAD) == sorted(MODES)
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('TensorFlow started before the flags were checked')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "stub"), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    existing = tmp_path / "a_file"
    existing.write_text("")
    procs = {}
    for mode, (args, _) in BAD.items():  # all at once: each is a Python start-up and no more
        fill = {"dir": str(tmp_path / mode), "file": str(existing)}
        argv = [sys.executable, "-m", "tf_biggan.main", f"--mode={mode}", *(a.format(**fill) for a in args)]
        procs[mode] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        expected = BAD[mode][1].format(dir=str(tmp_path / mode), file=str(existing))
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (mode, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("tf-biggan: error:") and expected in lines[0], (mode, err)
        assert not out and not (tmp_path / mode).exists(), mode  # nothing done, nothing written


def test_each_modes_request_takes_the_flags_of_its_fields():
    from tf_biggan import main
    from tf_biggan.modes import MODES

    assert sorted(main.REQUESTS) == sorted(MODES) and sorted(main.REQUIRED) == sorted(MODES)
    # One value of every flag, each unlike its default: a field gets the flag of its name, nothing else.
    typed = {"model_dir": "runs/a", "checkpoint": "runs/a/ckpt-3", "intervene": "g_lr=1e-4", "inception_path": "inc",
             "truncation": 0.5, "seed": 7, "output_dir": "out", "export_dir": "exp", "module": "mod",
             "images_per_class": 3, "num_shards": 4, "shard_prefix": "validation", "jpeg_quality": 80,
             "synsets_file": "syn.txt", "num_workers": 2, "worker_index": 1, "latent_convention": "cas_resample",
             "batch_size": 5, "cas_hparams": "cas_x", "train_data": "digits:train", "eval_data": "digits:test",
             "also_write_npz": True, "image_dir": "img", "validation_fraction": 0.25, "resolution": 16,
             "on_corrupt": "fail", "inspect_images": 9, "hparams": "h.yaml", "hparams_overrides": "eval.seed=1",
             "tpu": "tpu-1", "cpu_replicas": 2}
    assert set(typed) <= set(main.FLAGS)
    for mode, kind in main.REQUESTS.items():
        request = from_values(kind, typed)
        for field in dataclasses.fields(kind):
            value = getattr(request, field.name)
            expected = Launch(tpu="tpu-1", cpu_replicas=2) if field.name == "launch" else typed[field.name]
            assert value == expected, (mode, field.name)
        assert (launch_of(request) is not None) == (mode in ("train", "cas", "cas_sweep", "all")), mode
    # Two written out in full.
    assert from_values(main.REQUESTS["train"], dict(typed, checkpoint=None, intervene=None)) == TrainRequest(
        "runs/a", inception_path="inc", launch=Launch("tpu-1", 2))
    assert from_values(main.REQUESTS["cas"], typed) == CasRequest("runs/a", "digits:train", "digits:test",
                                                                  Launch("tpu-1", 2))


def test_defaults_are_the_flags_and_required_fields_are_required_flags():
    from tf_biggan import main

    for mode, kind in main.REQUESTS.items():
        for field in dataclasses.fields(kind):
            if field.name == "launch":
                continue
            if field.default is dataclasses.MISSING:  # a field without default: main.py requires its flag
                assert field.name in main.REQUIRED[mode], (mode, field.name)
            elif (mode, field.name) != ("prepare_data", "num_shards"):  # sized from the images unless typed
                assert field.default == main.FLAGS[field.name].default, (mode, field.name)
    assert Launch() == Launch(main.FLAGS["tpu"].default, main.FLAGS["cpu_replicas"].default)
    for name, (low, high) in RANGES.items():  # the flags' bounds are the requests'
        parser = main.FLAGS[name].parser
        assert (parser.lower_bound, parser.upper_bound) == (low, high), name
    for name, values in CHOICES.items():
        assert tuple(main.FLAGS[name].parser.enum_values) == values, name


def test_prepare_data_takes_num_shards_only_when_typed():
    """Through main.py's parser and builder: --num_shards's default (1024) is synthesize's."""
    from tf_biggan import main

    for extra, expected in (([], None), (["--num_shards=1024"], 1024)):
        main.FLAGS(["tf-biggan", "--mode=prepare_data", "--image_dir=img", "--output_dir=out", *extra])
        try:
            assert main.build_request("prepare_data") == PrepareDataRequest("img", "out", num_shards=expected)
        finally:
            main.FLAGS.unparse_flags()


@pytest.mark.parametrize("build, message", [
    (lambda: SynthesizeRequest("o", jpeg_quality=0), "--jpeg_quality=0: must be in [1, 100]"),
    (lambda: SynthesizeRequest("o", truncation=-0.5), "--truncation=-0.5: must be >= 0"),
    (lambda: SynthesizeRequest("o", shard_prefix="test"), "--shard_prefix=test: use one of train, validation"),
    (lambda: SynthesizeRequest("o", num_workers=3, worker_index=3), "--worker_index=3 must be in [0, --num_workers=3)"),
    (lambda: AllRequest(latent_convention="bogus"), "--latent_convention=bogus"),
    (lambda: PrepareDataRequest("i", "o", validation_fraction=1.0), "--validation_fraction=1: must be in [0, 0.99]"),
    (lambda: TrainRequest("r", checkpoint="r/ckpt-1"), "add --intervene="),
    (lambda: Launch(cpu_replicas=-1), "--cpu_replicas=-1: must be >= 0"),
])
def test_a_request_built_in_python_refuses_what_the_flags_refuse(build, message):
    with pytest.raises(UserError) as info:
        build()
    assert message in str(info.value)
