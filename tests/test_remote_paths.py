"""Remote model dirs (gs:// on Cloud TPU): every file goes through tf.io.gfile or tf_biggan.atomic.

TensorFlow's in-memory file system (`ram://`) stands in for Cloud Storage: a Python built-in that
bypasses gfile writes a LOCAL folder named `ram:` instead (on a TPU VM, a folder `gs:` lost on
preemption). Three checks: a static scan of tf_biggan/ for bare file calls (CI), the path helpers
and the atomic directory writer on ram:// (CI), and the whole main job (train on 2 replicas, sweep,
export, synthesize, CAS) into ram:// in one process (slow).
"""

import ast
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tf_biggan import atomic, paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tf_biggan")

# os.* calls that touch the file system (string operations such as os.path.join are fine on URLs).
OS_FILE_CALLS = {
    "makedirs", "mkdir", "listdir", "scandir", "walk", "remove", "unlink", "rmdir", "removedirs", "rename",
    "renames", "replace", "stat", "lstat", "chmod", "open", "fdopen", "link", "symlink", "truncate",
    "path.exists", "path.isdir", "path.isfile", "path.getsize", "path.getmtime", "path.abspath",
    "path.realpath", "path.relpath", "path.lexists", "path.islink",
}
# Modules whose every call touches local files.
LOCAL_MODULES = {"shutil", "glob", "tempfile", "pathlib"}
NUMPY_FILE_CALLS = {"load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "fromfile"}

# (file, call) -> why it must stay local. Everything else in tf_biggan/ reads and writes through
# tf.io.gfile or tf_biggan.atomic.
ALLOWED = {
    ("atomic.py", "*"): "the atomic writer's LOCAL branch: mkstemp + os.replace is POSIX's atomic rename, "
                        "with no TensorFlow import; remote paths take its tf.io.gfile branch",
    ("paths.py", "*"): "answers local paths without importing TensorFlow (hparams and directory flags are "
                       "checked before TF starts); remote paths go to tf.io.gfile",
    ("host/malloc.py", "*"): "the allocator library on this machine (site-packages, /usr/lib) and /proc/self/maps: "
                        "local by nature, and read before TensorFlow starts",
    ("config.py", "os.path.exists"): "hparams/ inside the installed package (a bare name such as biggan_128)",
    ("config.py", "os.listdir"): "lists the package's own hparams/ for the error message",
    ("config.py", "os.path.isdir"): "the package's own hparams/",
    ("config.py", "os.path.abspath"): "PACKAGE_DIR = the installed package's own directory (__file__)",
    ("hub/export.py", "tempfile.TemporaryDirectory"): "local scratch for the metadata asset's SOURCE; "
                                                      "tf.saved_model.save copies it into the (remote) module",
    ("training/preemption.py", "tempfile.mkdtemp"): "local scratch for PreemptionCheckpointHandler's own empty "
                                                    "checkpoint, never written; the run's checkpoints go through "
                                                    "the save action (tf.io.gfile)",
}


def _call_name(node: ast.Call) -> str:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _bare_file_calls(path: str):
    """(line, call) of every call in `path` that would touch local files, not through gfile."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    numpy_names = {"np", "numpy"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        head, _, rest = name.partition(".")
        if name in ("open", "io.open"):
            yield node.lineno, name
        elif head == "os" and rest in OS_FILE_CALLS:
            yield node.lineno, name
        elif head in LOCAL_MODULES and rest:
            yield node.lineno, name
        elif head in numpy_names and rest in NUMPY_FILE_CALLS:
            # np.load / np.save on a BytesIO are fine; on a path they bypass gfile.
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Call) and _call_name(arg) in ("io.BytesIO", "BytesIO")) and \
                    not (isinstance(arg, ast.Name) and arg.id in ("buffer", "buf")):
                yield node.lineno, name
        elif rest == "savefig" or name.endswith(".savefig"):
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Name) and arg.id in ("buffer", "buf")):
                yield node.lineno, name


def test_no_bare_file_calls_outside_the_allow_list():
    """A new `open(...)`, `os.makedirs(...)`, `shutil.*`, `np.load(path)` ... in tf_biggan/ fails here:
    use tf.io.gfile (or tf_biggan.atomic / tf_biggan.paths), or add it to ALLOWED with the reason."""
    found = []
    for root, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
            for line, call in _bare_file_calls(path):
                if (rel, "*") in ALLOWED or (rel, call) in ALLOWED:
                    continue
                found.append(f"tf_biggan/{rel}:{line}: {call}(...)")
    assert not found, ("file calls that bypass tf.io.gfile (a gs:// model dir would be written to a local "
                       "folder 'gs:'):\n  " + "\n  ".join(found))


def test_the_static_check_sees_bare_calls(tmp_path):
    """The scan itself: it flags what it should and passes gfile / BytesIO / string operations."""
    source = tmp_path / "m.py"
    source.write_text(
        "import os, shutil, io\nimport numpy as np\nimport tensorflow as tf\n"
        "open('x')\nos.makedirs('d')\nos.path.exists('d')\nshutil.rmtree('d')\nnp.load('a.npz')\n"
        "os.path.join('a', 'b')\ntf.io.gfile.makedirs('d')\nnp.load(io.BytesIO(b''))\nfig.savefig(buffer)\n")
    assert [c for _, c in _bare_file_calls(str(source))] == [
        "open", "os.makedirs", "os.path.exists", "shutil.rmtree", "np.load"]


# ------------------------------------------------------------------------------------------------
# The helpers on ram:// (cheap).


def test_paths_helpers_leave_urls_alone():
    assert paths.is_remote("gs://b/run") and paths.is_remote("ram://run") and not paths.is_remote("/tmp/x")
    assert paths.absolute("gs://b/run") == "gs://b/run"
    assert paths.absolute("run") == os.path.join(os.getcwd(), "run")
    assert paths.relative("gs://b/run/samples/s.png", "gs://b/run") == "samples/s.png"
    assert paths.relative("gs://b/run/samples/s.png", "gs://b/run/") == "samples/s.png"
    assert paths.relative("/a/b/c.png", "/a") == "b/c.png"


def test_atomic_writers_and_readers_on_ram(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = "ram://test_atomic_writers"
    atomic.write_json(f"{base}/deep/report.json", {"a": 1.5, "b": float("nan")})
    assert paths.read_json(f"{base}/deep/report.json") == {"a": 1.5, "b": None}
    assert paths.read_json_or_none(f"{base}/missing.json") is None
    assert paths.exists(f"{base}/deep/report.json") and not paths.exists(f"{base}/missing.json")
    assert paths.existing_file(f"{base}/deep/report.json") and not paths.existing_file(f"{base}/deep")
    import numpy as np

    atomic.save_npz(f"{base}/cache.npz", x=np.arange(5.0))
    np.testing.assert_array_equal(paths.load_npz(f"{base}/cache.npz")["x"], np.arange(5.0))
    # A whole directory, replaced: the old content goes, no temporary is left beside it.
    for version in ("old", "new"):
        with atomic.directory(f"{base}/module") as tmp:
            atomic.write_text(os.path.join(tmp, "variables", f"{version}.txt"), version)
            atomic.write_text(os.path.join(tmp, "saved_model.pb"), version)
    assert sorted(tf.io.gfile.listdir(f"{base}/module/variables")) == ["new.txt"]
    assert paths.read_text(f"{base}/module/saved_model.pb") == "new"
    assert [n for n in tf.io.gfile.listdir(base) if atomic.TEMP_MARK in n] == []
    # A failed writer leaves the previous directory whole.
    with pytest.raises(RuntimeError):
        with atomic.directory(f"{base}/module") as tmp:
            atomic.write_text(os.path.join(tmp, "saved_model.pb"), "broken")
            raise RuntimeError("killed")
    assert paths.read_text(f"{base}/module/saved_model.pb") == "new"
    assert not os.path.exists(tmp_path / "ram:")


# ------------------------------------------------------------------------------------------------
# A directory flag naming a file: one line, before TensorFlow starts.


@pytest.mark.parametrize("args, name", [
    (["--mode=train"], "model_dir"), (["--mode=inspect_data"], "model_dir"), (["--mode=sweep"], "model_dir"),
    (["--mode=eval"], "model_dir"), (["--mode=all"], "model_dir"), (["--mode=cas_sweep"], "model_dir"),
    (["--mode=synthesize", "--model_dir=somewhere"], "output_dir"),
    (["--mode=export", "--model_dir=somewhere"], "export_dir"),
])
def test_directory_flag_naming_a_file_is_one_line(tmp_path, args, name):
    existing = tmp_path / "a_file"
    existing.write_text("not a directory")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    if name != "model_dir":
        args = args + [f"--{name}={existing}"]
    else:
        args = args + [f"--model_dir={existing}"]
    proc = subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"tf-biggan: error: --{name}={existing} is a file, not a directory: pass a directory "
                     f"(a new path or an existing one{', e.g. a training run' if name == 'model_dir' else ''})"]
    assert existing.read_text() == "not a directory"


def test_a_remote_file_as_model_dir_is_a_user_error():
    """The same check (main.py's, the one for every mode) on a remote path, in this process: ram://
    lives in the process's memory."""
    from tf_biggan import main
    from tf_biggan.errors import UserError

    atomic.write_text("ram://file_as_model_dir/run", "x")
    main.FLAGS(["tf-biggan", "--mode=train", "--model_dir=ram://file_as_model_dir/run"])
    try:
        with pytest.raises(UserError, match=r"--model_dir=ram://file_as_model_dir/run is a file"):
            main.build_request("train")
    finally:
        main.FLAGS.unparse_flags()


# ------------------------------------------------------------------------------------------------
# The main job into ram:// (slow: the whole pipeline).

# The embedded default made tiny (as tests/test_main_job.py).
TINY = ",".join([
    "train.train_steps=6", "train.steps_per_loop=3", "train.save_every=3", "train.log_every=3",
    "train.sv_every=6", "train.sample_every=6", "eval.num_samples=100", "eval.truncations=[0.5,0]",
    "eval.standing_stats_passes=2", "eval.export_truncations=[0.5,1.0]", "eval.classifier_epochs=1",
    "eval.classifier_max_examples=500", "cas.epochs=1",
])
RUN = "ram://main_job/run"
# What the main job documents (job/stages.py's docstring, README): each must be readable through gfile.
DOCUMENTED = [
    "hparams.yaml", "train_report.json", "train/scalars.jsonl", "checkpoint", "sweep_report.json",
    "sweep_is_fid.png", "export/saved_model.pb", "export/assets/metadata.json", "synthetic/manifest.json",
    "synthetic/train-00000-of-00004", "cas_real/cas_report.json", "cas_synthetic/cas_report.json",
    "report.json", "report.md", "cas_top1.png", "eval_cache", "eval_classifier/classifier.json",
]

# One process: ram:// lives in the process's memory. The CLI's own flag parsing and main().
_SCRIPT = r"""
import json, os, sys
from tf_biggan import main
main.FLAGS(["tf-biggan"] + sys.argv[1:])
rc = main.main([])
import tensorflow as tf
run = main.FLAGS.model_dir
files, unreadable = {}, []
for root, _, names in tf.io.gfile.walk(run):
    for name in names:
        path = root.rstrip("/") + "/" + name
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                files[path[len(run) + 1:]] = len(f.read())
        except tf.errors.NotFoundError:
            # ram://'s listing matches by prefix: ram://run/train_report.json also appears as
            # train/_report.json. A real file of that name is what must not be missing.
            if not tf.io.gfile.exists(root.rstrip("/") + name):
                unreadable.append(path)
module = tf.saved_model.load(run + "/export")
with tf.io.gfile.GFile(run + "/report.json") as f:
    report = json.load(f)
print("RESULT " + json.dumps({"rc": rc, "files": files, "unreadable": unreadable, "report": report,
                               "signatures": sorted(module.signatures)}))
"""


@pytest.mark.slow
def test_main_job_into_ram_writes_nothing_local(tmp_path):
    """train (--cpu_replicas=2) -> sweep -> export -> synthesize -> CAS with MODEL_DIR=ram://...: no local
    `ram:` folder appears (in the working directory or the temp dir) and every documented output is
    there, readable through tf.io.gfile, and the report names ram:// paths (not ./ram:/...)."""
    tmp_before = set(os.listdir("/tmp"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, "--mode=all", f"--model_dir={RUN}", "--cpu_replicas=2",
                           f"--hparams_overrides={TINY}", "--images_per_class=30"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["rc"] == 0
    assert not result["unreadable"], result["unreadable"]
    files = result["files"]
    for name in DOCUMENTED:
        assert name in files or any(f.startswith(name + "/") for f in files), f"{RUN}/{name} missing"
    assert any(f.startswith("samples/") and f.endswith(".png") for f in files)
    assert all(size > 0 for name, size in files.items() if not name.endswith(".done")), files
    assert "default" in result["signatures"]
    # Nothing local: no folder named ram: (the built-ins' reading of ram://x) anywhere we looked.
    for root, dirs, _ in os.walk(tmp_path):
        assert not [d for d in dirs if d.startswith("ram:")], root
    assert not [n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith("ram:")]
    assert not os.path.exists(os.path.join(ROOT, "ram:"))
    # The report's paths are the remote ones (paths.absolute), not ./ram:/... made absolute.
    report = result["report"]
    assert report["model_dir"] == RUN
    assert all(v.startswith(RUN + "/") for v in report["outputs"].values() if v), report["outputs"]
