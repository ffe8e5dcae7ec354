"""check_hub_import.py's TensorFlow side: what the references' converters read from a module, and ours.

`dump_module` saves what the references' TF1 converters read through hub.Module (every checkpoint
variable and every constant stack_N graph tensor), so their own code can run in a python without
TensorFlow; `run_import` imports the module through the real CLI and records its peak memory;
`sample_imported` samples the imported run as the check compares it. TensorFlow and tf_biggan are
imported inside the functions (check_hub_import.py's torch side imports this module's neighbours
in a python without them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _constant_stacks(graph_def, tf) -> list:
    """Names of the graph's stack_N nodes that no Placeholder feeds."""
    names = [n.name for n in graph_def.node if re.fullmatch(r"stack(_\d+)?", n.name)]
    # Only the constant ones: a Pack fed by the signature's inputs (e.g. an output shape) is no statistic,
    # and a session run without feeds (the converters') could not evaluate it either.
    return [n for n in names if not any(node.op == "Placeholder" for node in
                                        tf.compat.v1.graph_util.extract_sub_graph(graph_def, [n]).node)]


def dump_module(module_dir: str, path: str) -> dict:
    """Every checkpoint variable ('var/NAME') and every stack_N graph tensor ('stack/NODE') of a module
    directory to an .npz: what the references' converters read through hub.Module."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    reader = tf.train.load_checkpoint(os.path.join(module_dir, "variables", "variables"))
    arrays = {"var/" + name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())}
    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(module_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    graph_def = sm.meta_graphs[0].graph_def
    names = _constant_stacks(graph_def, tf)
    if names:
        sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, names)
        with tf.Graph().as_default() as g:
            tf.graph_util.import_graph_def(sub, name="")
            with tf.compat.v1.Session(graph=g) as sess:
                for name, value in zip(names, sess.run([f"{n}:0" for n in names])):
                    arrays["stack/" + name] = value
    np.savez(path, **arrays)
    return {"variables": sum(k.startswith("var/") for k in arrays), "stacks": len(names)}


def make_inputs(dim_z: int, truncations, batch: int, seed: int) -> dict:
    """z_t = t * truncnorm(-2, 2) (one base draw for every t), y one-hot of random classes."""
    from scipy.stats import truncnorm

    rng = np.random.RandomState(seed)
    base = truncnorm.rvs(-2, 2, size=(batch, dim_z), random_state=rng)
    classes = rng.randint(0, 1000, size=batch)
    y = np.eye(1000, dtype=np.float32)[classes]
    out = {"y": y, "classes": classes.astype(np.int64)}
    for t in truncations:
        out[f"z/{t!r}"] = (t * base).astype(np.float32)
    return out


# Linux carries a process's peak RSS across exec into its child's ru_maxrss, so a child forked from this
# (large) process would report at least our own peak: a small launcher process runs the import instead.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - start,
               "maxrss_kib": usage.ru_maxrss}, f)
"""


def run_import(module_dir: str, run_dir: str) -> dict:
    """`python -m tf_biggan.main --mode=import_hub`: wall seconds and the subprocess's peak RSS."""
    cmd = [sys.executable, "-m", "tf_biggan.main", "--mode=import_hub", f"--module={module_dir}",
           f"--model_dir={run_dir}"]
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "usage.json")
        proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, report] + cmd, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(report) as f:
            usage = json.load(f)
    return {"rc": usage["rc"], "wall_s": round(usage["wall_s"], 2),
            "peak_rss_mib": round(usage["maxrss_kib"] / 1024.0, 1), "log_tail": proc.stdout[-1500:]}


def sample_imported(run_dir: str, inputs: dict, truncations) -> dict:
    """The imported run's EMA generator in inference mode at each truncation, NHWC images."""
    import tensorflow as tf
    from tf_biggan.runs import load_run
    from tf_biggan.sampling.standing_stats import apply_standing_stats

    run = load_run(run_dir)
    gen = run.ema_generator
    y = tf.constant(inputs["y"])
    images = {}
    for t in truncations:
        if gen.cfg.truncation_stats:  # deep: the module's 51 sets at t (no passes are run)
            apply_standing_stats(gen, t, 1, 1, convention="hub_notebook")
        images[t] = gen((tf.constant(inputs[f"z/{t!r}"]), y), training=False).numpy()
    info = {"truncation_stats": int(gen.cfg.truncation_stats), "ch": int(gen.cfg.ch),
            "dim_z": int(gen.cfg.dim_z)}
    del run, gen
    tf.keras.backend.clear_session()
    return images, info
