"""Hyper-parameter files: strict keys and types, overrides, the published configurations."""

import glob
import os
import subprocess
import sys

import pytest

from tf_biggan.config import HPARAMS_DIR, HParamsError, load_hparams, parse_overrides, save_hparams

ROOT = os.path.dirname(HPARAMS_DIR)


def _write(tmp_path, text):
    path = tmp_path / "h.yaml"
    path.write_text(text)
    return str(path)


def test_every_published_config_loads():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HPARAMS_DIR, "*.yaml")))
    # The paper's configurations are all there (TPU-size and CAS protocol files come beside them).
    assert {"biggan_128.yaml", "biggan_256.yaml", "biggan_512.yaml", "biggan_cifar10.yaml", "biggan_deep_128.yaml",
            "biggan_deep_256.yaml", "biggan_deep_512.yaml", "digits.yaml"} <= set(names)
    for name in names:
        load_hparams(os.path.join(HPARAMS_DIR, name))


def test_paper_values_in_published_configs():
    hp = load_hparams("biggan_128")
    assert (hp.model.ch, hp.model.dim_z, hp.model.ortho_reg) == (96, 120, 1e-4)
    assert (hp.train.g_lr, hp.train.d_lr, hp.train.beta1, hp.train.beta2, hp.train.disc_steps) == (5e-5, 2e-4, 0.0, 0.999, 2)
    assert hp.train.ema_decay == 0.9999 and hp.model.bn_epsilon == 1e-4 and hp.model.sn_epsilon == 1e-4
    assert [load_hparams(f"biggan_{r}").model.dim_z for r in (128, 256, 512)] == [120, 140, 160]
    deep = load_hparams("biggan_deep_256")
    assert (deep.model.ch, deep.model.dim_z, deep.train.g_lr, deep.train.d_lr) == (128, 128, 2.5e-5, 2.5e-5)


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "model:\n  chh: 64\n")
    with pytest.raises(HParamsError) as err:
        load_hparams(path)
    message = str(err.value)
    assert path in message and "model.chh" in message and "did you mean 'model.ch'" in message


def test_unknown_section(tmp_path):
    with pytest.raises(HParamsError, match="unknown section 'modle'.*did you mean 'model'"):
        load_hparams(_write(tmp_path, "modle:\n  ch: 64\n"))


@pytest.mark.parametrize("text,key", [
    ("model:\n  ch: sixty\n", "model.ch must be int"),
    ("model:\n  ch: 64.5\n", "model.ch must be int"),
    ("model:\n  skip_z: 1\n", "model.skip_z must be bool"),
    ("model:\n  family: biggan_wide\n", "model.family must be 'biggan' | 'biggan_deep'"),
    ("train:\n  g_lr: fast\n", "train.g_lr must be float"),
    ("model:\n  resolution: 100\n", "model.resolution: must be one of"),
    ("model:\n  dim_z: 121\n", "model.dim_z: must split into 6 equal chunks"),
    ("train:\n  ema_decay: 1.5\n", "train.ema_decay must be in"),
    ("train:\n  sample_stats_passes: -1\n", "train.sample_stats_passes must be >= 0"),
    ("train:\n  sample_stats_batch: 0\n", "train.sample_stats_batch must be >= 1"),
])
def test_ill_typed_or_invalid_values(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(HParamsError) as err:
        load_hparams(path)
    assert key in str(err.value) and path in str(err.value)


def test_ints_widen_to_float_and_overrides_apply(tmp_path):
    hp = load_hparams(_write(tmp_path, "train:\n  g_lr: 1\n"), "model.ch=64,model.skip_z=false,eval.truncations=[0.5,1.0]")
    assert hp.train.g_lr == 1.0 and isinstance(hp.train.g_lr, float)
    assert hp.model.ch == 64 and hp.model.skip_z is False and hp.eval.truncations == (0.5, 1.0)


def test_exponent_floats_without_a_dot_are_floats():
    """YAML 1.1 (PyYAML) reads 1e-4 as a string; a float field takes it as 1e-4, a string stays an error."""
    hp = load_hparams(None, "model.ortho_reg=1e-4,train.g_lr=2E-4")
    assert hp.model.ortho_reg == 1e-4 and hp.train.g_lr == 2e-4 and isinstance(hp.model.ortho_reg, float)
    with pytest.raises(HParamsError, match="train.g_lr must be float"):
        load_hparams(None, "train.g_lr=1e-4x")


def test_bad_override_is_clear():
    with pytest.raises(HParamsError, match="--hparams_overrides: 'ch64' is not of the form section.key=value"):
        parse_overrides("ch64")
    with pytest.raises(HParamsError, match="--hparams_overrides: unknown key 'model.chh'"):
        load_hparams("digits", "model.chh=3")


def test_resolved_config_round_trips(tmp_path):
    hp = load_hparams("biggan_deep_128", "model.ch=32")
    save_hparams(hp, str(tmp_path / "hparams.yaml"))
    again = load_hparams(str(tmp_path / "hparams.yaml"))
    assert again.to_dict() == hp.to_dict()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_cli_error_is_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=summary", "--hparams=digits",
                           "--hparams_overrides=model.chh=3"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "tf-biggan: error: --hparams_overrides: unknown key 'model.chh'" in proc.stderr


def test_validation_imports_no_tensorflow():
    """Every published file, with each augment kind, validates without importing TensorFlow (or Keras):
    the CLI checks hparams before TF starts, so a bad key or value fails in about a second, and the
    strategy is still made before the runtime initialises (tf_biggan/main.py)."""
    code = ("import glob, sys\n"
            "from tf_biggan.config import HPARAMS_DIR, load_hparams\n"
            "for path in sorted(glob.glob(HPARAMS_DIR + '/*.yaml')):\n"
            "    for kind in ('none', 'ada', 'fixed', 'diffaugment'):\n"
            "        load_hparams(path, f'augment.kind={kind},augment.p=0.3')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_width_the_attention_block_cannot_split_is_a_config_error():
    # SelfAttention projects to channels / 8 (layers/attention.py): BigGAN-128's D attention at 64 px
    # sees 1 x ch channels (Table 4), G's at 64 px 2 x ch.
    with pytest.raises(HParamsError, match=r"model.ch: the attention block at 64 px \(model.d_attention_resolution\) "
                                           r"sees 4 channels"):
        load_hparams("biggan_128", "model.ch=4")
    with pytest.raises(HParamsError, match=r"attention block at 64 px \(model.g_attention_resolution\) sees 12"):
        load_hparams("biggan_128", "model.ch=6,model.d_attention_resolution=0")
    assert load_hparams("biggan_128", "model.ch=4,model.g_attention_resolution=0,model.d_attention_resolution=0")
    assert load_hparams("biggan_128", "model.ch=8").model.ch == 8
