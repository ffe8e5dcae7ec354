"""Every shell block of README.md (and tpu_scripts/README.md) runs, as written, on small fixtures (slow).

Each ```bash block is run by bash, in a scratch directory that links the repository's top-level files
(so `requirements.txt`, `hparams/...` and `tests` resolve and `runs/...` lands in the scratch). Before
that its text is made runnable, by tables that are easy to extend:

  * placeholders (PLACEHOLDERS, by README section; a section not listed takes the defaults): RUN, DIR,
    OUT, VAL, INCEPTION, N, T, OVERRIDES, ... become small fixtures: a tiny trained digits run (with a
    best-FID checkpoint), a small image folder and its prepared shards, a tiny Inception SavedModel;
    COMPOSITES first (e.g. `RUN/best_fid/ckpt-N`), and `--module=biggan[-deep]-RES` becomes a
    reduced-width module in the official layout (tests/official_hub_layout.py);
  * a run an earlier block makes (MADE_EARLIER, e.g. the imported `runs/deep256` a fine-tuning block
    trains) is copied into the scratch of a block that reads it without making it;
  * optional groups `[--flag=value]` are run with the flag (a value `a|b|c` as its first choice, a
    trailing `,...` dropped); a group whose value is only `...` is left out;
  * REWRITES: the fresh-machine `pip install` becomes `pip show tf_biggan` (installed already; nothing
    is reinstalled), the test-suite command collects the tests instead of running them;
  * every `tf-biggan` call goes through a shim first on PATH that adds tiny settings (TINY, by mode and
    hparams file: few steps, few samples, small widths) and runs `python3 -m tf_biggan.main`.

A block that cannot run here carries a marker on the line before it: `<!-- readme-test: skip: REASON -->`
(skipped, the reason printed), or `<!-- readme-test: dry-run -->` (run with DRY_RUN=1, as tpu_scripts
allow). A block fails the test when any command in it exits non-zero (bash -e), naming the block's line.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|dry-run)\s*(?::\s*(.*?))?\s*-->")


# ------------------------------------------------------------------------------------ the blocks


def bash_blocks(path):
    """[(line, section, marker, reason, code)] of every ```bash block of a Markdown file."""
    blocks, section, marker, reason = [], "", None, None
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        found = MARKER.search(line)
        if found:
            marker, reason = found.group(1), found.group(2)
        elif line.strip() == "```bash":
            end = lines.index("```", i + 1)
            blocks.append((i + 1, section, marker, reason, "\n".join(lines[i + 1:end])))
            marker = reason = None
            i = end
        elif line.strip():
            marker = reason = None  # a marker applies to the block right after it
        i += 1
    return blocks


README_BLOCKS = [("README.md", *b) for b in bash_blocks(os.path.join(ROOT, "README.md"))]
TPU_BLOCKS = [("tpu_scripts/README.md", *b) for b in bash_blocks(os.path.join(ROOT, "tpu_scripts", "README.md"))]


# ------------------------------------------------------------------------------------ the tables

# Settings that make each command tiny, merged into its --hparams_overrides (after the README's own):
# by the hparams file a fresh run starts from, and by mode for the modes that read a run.
_EVAL = ("eval.num_samples=60,eval.batch_size=30,eval.truncations=[0.5,1.0],eval.standing_stats_passes=2,"
         "eval.standing_stats_batch=20,eval.classifier_epochs=1,eval.classifier_max_examples=300,"
         "eval.export_truncations=[0.5,1.0]")
_TRAIN = "train.train_steps=2,train.steps_per_loop=1,train.log_every=1,train.save_every=2,train.sample_every=2,train.sv_every=2"
TINY = {
    "digits": f"{_TRAIN},{_EVAL}",
    "biggan_128": f"model.ch=8,train.batch_size=2,{_TRAIN},{_EVAL},eval.standing_stats_batch=4,eval.batch_size=4",
    "finetune_biggan_deep_128": f"train.batch_size=2,{_TRAIN},{_EVAL},eval.batch_size=4,eval.best_fid_samples=20",
    "cas_digits": "cas.epochs=1,cas.batch_size=16,cas.steps_per_loop=10,cas.save_every=20,cas.log_every=20",
    # The paper's ResNet-50 protocol, still ResNet-50 (cas.arch kept), on 32 px crops for one epoch in float32.
    "cas_resnet50_v2-8": ("cas.image_size=32,cas.batch_size=16,cas.epochs=1,"
                          "cas.steps_per_loop=8,cas.save_every=16,cas.log_every=16,cas.dtype=float32,"
                          "cas.shuffle_buffer=64,cas.eval_batch_size=8"),
    # Resuming a run (or intervening in it): only what a resume may change (training/checkpoints.py).
    "resume": "train.train_steps=4,train.steps_per_loop=2,train.log_every=2,train.save_every=2,train.sample_every=4,train.sv_every=4",
    "all": ("train.train_steps=4,train.steps_per_loop=2,train.save_every=2,train.log_every=2,train.sv_every=4,"
            f"train.sample_every=4,{_EVAL},cas.epochs=1,cas.save_every=10,cas.steps_per_loop=10"),
    "sweep": _EVAL, "eval": _EVAL, "export": _EVAL, "synthesize": _EVAL,
    # For a configuration file without its own entry (e.g. a new recipe in the README):
    "train": f"train.batch_size=2,{_TRAIN},{_EVAL}", "cas": "cas.epochs=1,cas.batch_size=16,cas.steps_per_loop=10",
}
# Flags added when the command has none: a few images per class, few shards.
EXTRA_FLAGS = {
    "all": {"images_per_class": "20"},
    "synthesize": {"images_per_class": "1", "num_shards": "2"},
}
# Flag values replaced (a README value that is right for ImageNet, too big here).
FLAG_VALUES = {"num_shards": lambda value: "2"}


def _shell_overrides(out_dir):
    """OVERRIDES as prepare_data's manifest gives them, read when the line runs (after prepare_data)."""
    return f"\"$(python3 -c 'import json; print(json.load(open(\"{out_dir}/manifest.json\"))[\"hparams_overrides\"])')\""


# Placeholder -> value(fixtures, scratch), by README section; None: every section without its own entry.
PLACEHOLDERS = {
    None: {"RUN": lambda f, s: s.copy_of(f.run), "DIR": lambda f, s: s.path("dir"),
           "OUT": lambda f, s: f.prepared, "VAL": lambda f, s: f.prepared, "INCEPTION": lambda f, s: f.inception,
           "N": lambda f, s: "2", "T": lambda f, s: "0.5"},
    "Train on your own images": {"DIR": lambda f, s: f.images, "OUT": lambda f, s: s.path("out"),
                                 "RUN": lambda f, s: s.path("run"),
                                 "OVERRIDES": lambda f, s: _shell_overrides(s.path("out"))},
    "Synthesize and CAS": {"N": lambda f, s: "3"},
    "Stability": {"DIR": lambda f, s: s.copy_of(f.default_run, name="collapsed")},
    # VAL: prepared shards, ImageNet-layout labels 1..2 (a 1,000-class module's range); N = 1 image per class
    # keeps the synthesis of 1,000 classes small; map.txt maps the first class of OUT/labels.txt to 162.
    "Start from the published weights": {"VAL": lambda f, s: f.prepared, "OUT": lambda f, s: f.prepared,
                                         "N": lambda f, s: "1", "K": lambda f, s: str(len(f.prepared_labels)),
                                         "map.txt": lambda f, s: f.class_map},
}
# Longer patterns, replaced before the placeholders they contain.
COMPOSITES = {
    "RUN/best_fid/ckpt-N": lambda f, s: s.copy_of(f.run) + "/best_fid/" + f.best_fid_checkpoint,
    "RUN/ckpt-N": lambda f, s: s.copy_of(f.run) + "/" + f.first_checkpoint,
    "DIR/pre_collapse/ckpt-4000": lambda f, s: s.pre_collapse(f.default_run, "ckpt-2"),
    # The user's class count (N elsewhere in the same line's section is images per class).
    "data.num_classes=N": lambda f, s: f"data.num_classes={len(f.prepared_labels)}",
}
# Runs an earlier block makes: a block that reads one without making it (no line matching the regex)
# finds a copy of the fixture at that path of its scratch.
MADE_EARLIER = {
    "runs/deep256": (r"--mode=import_hub\b.*--model_dir=runs/deep256(?![\w/-])", lambda f: f.imported("biggan-deep-256")),
}
REWRITES = [  # (regex, replacement) on the block's text
    (r"python3 -m pip install [^&;\n]*", "python3 -m pip show tf_biggan >/dev/null"),
    (r"(python3 -m pytest [^&;\n]*)", r"\1 --collect-only"),
]
_MODULE = re.compile(r"--module=(biggan(?:-deep)?-(?:128|256|512))(?![\w/-])")


# ------------------------------------------------------------------------------------ the shim


def shrink(argv):
    """The tiny form of a `tf-biggan` argv (TINY, EXTRA_FLAGS, FLAG_VALUES): what the shim runs."""
    flags, rest = {}, []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            flags[name] = FLAG_VALUES[name](value) if name in FLAG_VALUES else value
        else:
            rest.append(arg)
    tiny = TINY.get(_tiny_key(flags), "")
    if tiny:
        flags["hparams_overrides"] = ",".join(x for x in (flags.get("hparams_overrides"), tiny) if x)
    for name, value in EXTRA_FLAGS.get(flags.get("mode", "train"), {}).items():
        flags.setdefault(name, value)
    return [f"--{k}={v}" for k, v in flags.items()] + rest


def _tiny_key(flags):
    """Which TINY entry a command takes: its hparams file's for a run it starts (or a CAS protocol's, or
    an imported run's recipe), "resume" for a run it resumes, its mode's for a run it reads; a file
    without an entry falls back to its mode's generic entry."""
    mode, model_dir = flags.get("mode", "train"), flags.get("model_dir")
    stem = os.path.splitext(os.path.basename(flags.get("hparams") or "digits"))[0]
    if mode == "train" and _is_imported(model_dir):
        return stem if stem in TINY else "train"
    if mode == "train" and _is_existing_run(model_dir):
        return "resume"
    if mode in ("train", "real_stats", "cas", "cas_sweep"):
        return stem if stem in TINY else {"real_stats": "train"}.get(mode, mode)
    return mode


def _is_existing_run(model_dir):
    return bool(model_dir) and os.path.exists(os.path.join(model_dir, "hparams.yaml")) and any(
        n.startswith("ckpt-") for n in os.listdir(model_dir))


def _is_imported(model_dir):
    return bool(model_dir) and os.path.exists(os.path.join(model_dir, "import.json"))


SHIM = """#!{python}
import json, os, sys
sys.path.insert(0, {tests!r})
from test_readme import shrink
argv = shrink(sys.argv[1:])
with open(os.environ["README_TEST_LOG"], "a") as f:
    f.write(json.dumps({{"given": sys.argv[1:], "ran": argv}}) + "\\n")
os.execv(sys.executable, [sys.executable, "-m", "tf_biggan.main", *argv])
"""


# ------------------------------------------------------------------------------------ fixtures


class Fixtures:
    """The small things the placeholders stand for, each made once per session when first asked for."""

    def __init__(self, base):
        self.base = base
        self.modules = {}

    @functools.cached_property
    def _run(self):
        return _trained_run(os.path.join(self.base, "run"))

    run = property(lambda self: self._run[0])
    best_fid_checkpoint = property(lambda self: self._run[1])
    first_checkpoint = property(lambda self: self._run[2])

    @functools.cached_property
    def default_run(self):
        """A run of the default configuration (hparams/digits.yaml), made short only by keys a resume may
        change: a README command without --hparams resumes it as written."""
        import evaluation_run
        from tf_biggan.config import load_hparams

        path = os.path.join(self.base, "default_run")
        evaluation_run.run("train", load_hparams(None, TINY["resume"]), path)
        return path

    @functools.cached_property
    def images(self):
        return _image_folder(os.path.join(self.base, "images"))

    @functools.cached_property
    def prepared(self):
        return _prepared(self.images, os.path.join(self.base, "prepared"))

    @functools.cached_property
    def inception(self):
        return _tiny_inception(os.path.join(self.base, "inception"))

    @functools.cached_property
    def prepared_labels(self):
        return open(os.path.join(self.prepared, "labels.txt")).read().splitlines()

    @functools.cached_property
    def class_map(self):
        """A `CLASS IMAGENET_INDEX` map written against the prepared shards' labels.txt: the first class -> 162."""
        path = os.path.join(self.base, "map.txt")
        with open(path, "w") as f:
            f.write(f"{self.prepared_labels[0]} 162\n")
        return path

    def imported(self, name):
        """`--mode=import_hub` of module(name), through the CLI, as the README's import line makes it."""
        path = os.path.join(self.base, "imported", name)
        if not os.path.exists(path):
            subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=import_hub", f"--module={self.module(name)}",
                            f"--model_dir={path}"], check=True, capture_output=True, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
        return path

    def module(self, name):
        """A reduced-width module in the official layout for `biggan-128`, `biggan-deep-256`, ..."""
        if name not in self.modules:
            import official_hub_layout

            kind = name + ("/1" if "deep" in name else "/2")
            path = os.path.join(self.base, "modules", name)
            official_hub_layout.write_official_module(kind, path, ch=4)
            self.modules[name] = path
        return self.modules[name]


class Scratch:
    """One block's working directory and the fresh paths / run copies its placeholders need."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory)
        for name in os.listdir(ROOT):  # so requirements.txt, hparams/, tests resolve; outputs stay here
            if not name.startswith("."):
                os.symlink(os.path.join(ROOT, name), os.path.join(directory, name))
        self._copies = {}

    def place(self, run, relative):
        """A copy of `run` at `relative` (a path the README's commands use) in this scratch."""
        shutil.copytree(run, os.path.join(self.dir, relative))

    def path(self, name):
        return os.path.join(self.dir, "work", name)

    def copy_of(self, run, name="run"):
        if name not in self._copies:
            shutil.copytree(run, self.path(name))
            self._copies[name] = self.path(name)
        return self._copies[name]

    def pre_collapse(self, run, checkpoint):
        """A copy of `run` whose `checkpoint` was kept in pre_collapse/ (as collapse detection does)."""
        run = self.copy_of(run, name="collapsed")
        os.makedirs(os.path.join(run, "pre_collapse"), exist_ok=True)
        for name in os.listdir(run):
            if name.startswith(checkpoint + "."):
                shutil.copy(os.path.join(run, name), os.path.join(run, "pre_collapse", name))
        return os.path.join(run, "pre_collapse", checkpoint)


def _trained_run(model_dir):
    """tests/evaluation_run's tiny digits run, with a best-FID checkpoint kept apart."""
    import evaluation_run

    evaluation_run.train(model_dir, "eval.best_fid_every=30,eval.best_fid_samples=100")
    best = sorted(n[:-len(".index")] for n in os.listdir(os.path.join(model_dir, "best_fid")) if n.endswith(".index"))
    return model_dir, best[-1], f"ckpt-{evaluation_run.STEPS // 2}"


def _image_folder(directory):
    """DIR/<class>/<image>: two classes of ten small PNGs (ten, so that --validation_fraction=0.1 keeps one)."""
    from PIL import Image

    import numpy as np

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cats", "dogs")):
        os.makedirs(os.path.join(directory, name))
        for i in range(10):
            pixels = (rng.uniform(0, 1, (24, 24, 3)) * 127 + 128 * c).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(directory, name, f"{i}.png"))
    return directory


def _prepared(images, out):
    import evaluation_run

    evaluation_run.run("prepare_data", None, image_dir=images, output_dir=out, validation_fraction=0.2, num_shards=2)
    return out


def _tiny_inception(path):
    """A SavedModel with Inception's interface (299 x 299 in, pool_3 and logits out) and tiny weights."""
    import tensorflow as tf

    class TinyInception(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([3, 8], seed=[1, 2]))
            self.v = tf.Variable(tf.random.stateless_normal([8, 5], seed=[3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
        def __call__(self, images):
            pool = tf.nn.relu(tf.reduce_mean(images, axis=[1, 2]) @ self.w)
            return {"pool_3": tf.reshape(pool, [-1, 1, 1, 8]), "logits": pool @ self.v}

    tf.saved_model.save(TinyInception(), path)
    return path


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    return Fixtures(str(tmp_path_factory.mktemp("readme_fixtures")))


# ------------------------------------------------------------------------------------ running a block


def runnable(code, section, fixtures, scratch):
    """The block's text with placeholders, optional groups and rewrites resolved (module docstring)."""
    text = re.sub(r"\\\n\s*", "", code)  # continuation lines
    text = re.sub(r"\[(--[^\]\s=]+)(?:=([^\]\s]*))?\]", _optional, text)
    for path, (maker, run) in MADE_EARLIER.items():
        if re.search(rf"{re.escape(path)}(?![\w-])", text) and not re.search(maker, text):
            scratch.place(run(fixtures), path)
    text = _MODULE.sub(lambda m: f"--module={fixtures.module(m.group(1))}", text)
    table = dict(PLACEHOLDERS[None], **PLACEHOLDERS.get(section, {}))
    for pattern, value in COMPOSITES.items():
        if pattern in text:
            text = text.replace(pattern, value(fixtures, scratch))
    for name, value in table.items():
        word = rf"(?<![A-Za-z0-9_$]){re.escape(name)}(?![A-Za-z0-9_])"
        if re.search(word, text):
            text = re.sub(word, lambda m: value(fixtures, scratch), text)
    for pattern, replacement in REWRITES:
        text = re.sub(pattern, replacement, text)
    return text


def _optional(match):
    flag, value = match.group(1), match.group(2)
    if value is None:
        return flag
    if value == "...":
        return ""
    value = value.split("|")[0]
    return f"{flag}={value[:-4] if value.endswith(',...') else value}"


def run_block(code, section, marker, fixtures, tmp_path, log):
    scratch = Scratch(str(tmp_path / "scratch"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tf-biggan").write_text(SHIM.format(python=sys.executable, tests=TESTS))
    (bin_dir / "tf-biggan").chmod(0o755)
    env = dict(os.environ, USER=os.environ.get("USER", "me"), PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=f"{ROOT}:{TESTS}",
               README_TEST_LOG=str(log), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    if marker == "dry-run":
        env.update(DRY_RUN="1", TPU_TOOL="gcloud")
    text = runnable(code, section, fixtures, scratch)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=scratch.dir, env=env, capture_output=True,
                          text=True, timeout=1800)
    return text, proc


def _ids(blocks):
    return [f"{name}:{line}" for name, line, *_ in blocks]


@pytest.mark.parametrize("name,line,section,marker,reason,code", README_BLOCKS + TPU_BLOCKS,
                         ids=_ids(README_BLOCKS + TPU_BLOCKS))
def test_readme_block_runs(name, line, section, marker, reason, code, fixtures, tmp_path):
    if marker == "skip":
        pytest.skip(f"{name}:{line} is marked: {reason}")
    log = tmp_path / "calls.jsonl"
    text, proc = run_block(code, section, marker, fixtures, tmp_path, log)
    assert proc.returncode == 0, (f"{name} line {line} ({section}) failed:\n{text}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-4000:]}")
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    assert len(calls) == code.count("tf-biggan "), calls  # every tf-biggan command of the block ran
    if marker == "dry-run":
        assert "+ " in proc.stdout  # the scripts printed what they would run


def test_every_block_is_run_or_marked():
    """The tests above cover every block; a marked one says why. Something to run exists in both files."""
    for name, line, _, marker, reason, _ in README_BLOCKS + TPU_BLOCKS:
        assert marker in (None, "dry-run", "skip"), (name, line)
        assert marker != "skip" or reason, f"{name}:{line}: a skip marker needs a reason"
    assert len(README_BLOCKS) >= 8 and any("tf-biggan --mode=all" in b[-1] for b in README_BLOCKS)
    assert all(marker == "dry-run" for _, _, _, marker, _, _ in TPU_BLOCKS)  # they need a Cloud TPU


def test_shrink_and_placeholders():
    """The rewriting itself: tiny settings merged after the README's, placeholders as words only."""
    argv = shrink(["--mode=train", "--model_dir=/nonexistent", "--hparams_overrides=train.batch_size=64"])
    overrides = dict(a.split("=", 1) for a in argv)["--hparams_overrides"]
    assert overrides.startswith("train.batch_size=64,train.train_steps=2")
    argv = shrink(["--mode=cas", "--hparams=hparams/cas_some_new_protocol.yaml", "--model_dir=/nonexistent"])
    assert "--hparams_overrides=" + TINY["cas"] in argv
    argv = shrink(["--mode=synthesize", "--model_dir=/x", "--num_shards=1024"])
    assert "--num_shards=2" in argv and "--images_per_class=1" in argv
    assert _optional(re.match(r"\[(--[^\]\s=]+)(?:=([^\]\s]*))?\]", "[--latent_convention=a|b|c]")) == \
        "--latent_convention=a"
    assert _optional(re.match(r"\[(--[^\]\s=]+)(?:=([^\]\s]*))?\]", "[--inception_path=...]")) == ""


def test_runs_made_earlier_and_placeholders_with_dots(tmp_path):
    """A block reading runs/deep256 without importing it finds the fixture's copy there; one that imports
    it does not; `map.txt` is replaced as a whole word only (its dot is not a wildcard)."""
    run = tmp_path / "imported"
    run.mkdir()
    (run / "import.json").write_text("{}")
    fixtures = type("F", (), {"imported": lambda self, name: str(run), "class_map": "/fixtures/map.txt",
                              "prepared": "/fixtures/prepared", "prepared_labels": ["cats", "dogs"]})()
    section = "Start from the published weights"
    reader = Scratch(str(tmp_path / "reader"))
    text = runnable("tf-biggan --mode=train --model_dir=runs/deep256 \\\n  --hparams_overrides=data.num_classes=N,"
                    "data.class_map=map.txt,x=mapatxt", section, fixtures, reader)
    assert os.path.exists(os.path.join(reader.dir, "runs/deep256/import.json"))
    assert "data.num_classes=2,data.class_map=/fixtures/map.txt,x=mapatxt" in text
    maker = Scratch(str(tmp_path / "maker"))
    runnable("tf-biggan --mode=import_hub --module=M --model_dir=runs/deep256\ntf-biggan --mode=sweep "
             "--model_dir=runs/deep256", section, fixtures, maker)
    assert not os.path.exists(os.path.join(maker.dir, "runs"))
