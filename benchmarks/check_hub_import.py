"""The official TF-Hub BigGAN importer checked against the PyTorch references' own converters and models.

For each of the six official modules (`biggan-{128,256,512}/2`, `biggan-deep-{128,256,512}/1`) this
  1. writes a random-weight module in the official layout (tests/official_hub_layout.py: exact names,
     shapes, dtypes; every SN kernel's u0 at its converged top singular vector, so each reading of
     spectral norm at inference gives the same sigma and any difference left is a mapping error);
  2. dumps what the references' converters read from it, in this (TensorFlow) python: every checkpoint
     variable (`tf.train.load_checkpoint`) and every `stack_N` graph tensor of saved_model.pb (the deep
     modules' 51 truncation-indexed BN statistics; sub-graph extracted and run in a TF1 Session);
  3. in a separate python with torch (`--torch_python`, no TensorFlow there), converts the dump with the
     reference's OWN mapping code and runs the reference's OWN model for the same z, y, truncation:
       biggan-deep-*/1: pytorch-pretrained-BigGAN `convert_tf_to_pytorch.load_tf_weights_in_biggan`
                        (its variable map, transposes, SN buffer preparation and its stack_N indexing in
                        `extract_batch_norm_stats`) into `model.BigGAN(BigGANConfig)`;
       biggan-*/2:      BigGAN-PyTorch `TFHub/converter.convert_biggan` (the `TFHub2Pytorch` map into the
                        `biggan_v1` shell, `convert_from_v1`, `BigGAN.Generator(**get_config(res))`), and
                        also the `biggan_v1.Generator{R}` shell itself run with the converted weights;
     The references' TF1 hub calls (hub.Module, tf.Session, tf.train.load_variable, ...) do not exist in
     TF 2.x; they are replaced by small fakes that serve the dump (see `_fake_tf_for_hf`,
     `_drive_biggan_pytorch`); everything else is the references' code, imported from --refs_dir at
     run time (nothing of theirs is copied here);
  4. imports the module with `python -m tf_biggan.main --mode=import_hub` (wall time and the
     subprocess's peak RSS recorded), loads the run's EMA generator with `runs.load_run` and
     samples it in inference mode with the module's statistics (deep: the 51 sets interpolated at t,
     `apply_standing_stats(..., convention="hub_notebook")`; /2: the stored set);
  5. prints the max abs pixel difference (images in [-1, 1]) per kind, reference and truncation, and
     writes them to --out (JSON).

The BigGAN-PyTorch readings are not all the module's arithmetic, so three are compared:
  BigGAN-PyTorch                     the converter's product as shipped: its G builds the output BN as
                                     `layers.bn(...)` without `eps=BN_eps`, i.e. eps 1e-5 where the module
                                     (and every other BN of that G) uses 1e-4: ~1e-5 off by that constant;
  BigGAN-PyTorch[output-BN eps 1e-4] the same converted G with only that epsilon set to 1e-4: the mapping
                                     alone (float32 agreement expected);
  biggan_v1-shell                    the converter's loading shell run with TFHub2Pytorch's state dict: its
                                     SN normalises by |x| + 1e-4 (not max(|x|, 1e-4)), and Generator512's
                                     output BN keeps torch's eps 1e-5: ~1e-6 .. 1e-5 off by those.

z = t * truncnorm(-2, 2) (the modules' sampling notebook), y one-hot, t in {0.2, 0.5, 1.0}: exact grid
points of the 51 statistic sets where pytorch-pretrained-BigGAN's interpolation (which weights the two
neighbouring rows the other way round, and picks the wrong row at some grid points through float64
rounding, e.g. t = 0.14) coincides with the linear one. A second module per deep kind with all 51 rows
identical (`--identical_truncations`, default including such points) compares where no reading of the
interpolation can differ; `--disagree_truncations 0.14,0.305` shows where they do (0.14: float64 rounding
makes pytorch-pretrained-BigGAN use row 8; 0.305: its swapped weights 0.75/0.25), not counted in the max.

Peak memory of the import is the ru_maxrss of the import process, taken through a small launcher
process (Linux carries the forking process's peak RSS into a child's ru_maxrss across exec).

Setup (once):
  python3 -m venv /work/torchenv && /work/torchenv/bin/pip install torch numpy parse   (parse: BigGAN-PyTorch's converter)
  the references as work trees (e.g. from `git archive` of their repositories) under --refs_dir:
    REFS/pytorch-pretrained-BigGAN   (huggingface/pytorch-pretrained-BigGAN)
    REFS/BigGAN-PyTorch              (ajbrock/BigGAN-PyTorch)
Run:
  nice python benchmarks/check_hub_import.py --ch 8 --out /tmp/hub_check_ch8.json      # reduced width
  nice python benchmarks/check_hub_import.py --out /tmp/hub_check.json                  # official widths
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KINDS = ("biggan-128/2", "biggan-256/2", "biggan-512/2",
         "biggan-deep-128/1", "biggan-deep-256/1", "biggan-deep-512/1")


def _parse_kind(kind):
    return kind.startswith("biggan-deep"), int(kind.split("-")[-1].split("/")[0])


def _slug(kind):
    return kind.replace("/", "_")


# ----------------------------------------------------------------------------------------------------
# TensorFlow side
# ----------------------------------------------------------------------------------------------------

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
    names = [n.name for n in graph_def.node if re.fullmatch(r"stack(_\d+)?", n.name)]
    # Only the constant ones: a Pack fed by the signature's inputs (e.g. an output shape) is no statistic,
    # and a session run without feeds (the converters') could not evaluate it either.
    names = [n for n in names if not any(node.op == "Placeholder" for node in
                                         tf.compat.v1.graph_util.extract_sub_graph(graph_def, [n]).node)]
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


def run_reference(args, kind, ch, module_dir, dump_path, inputs_path, out_path, truncations) -> dict:
    spec = {"kind": kind, "ch": ch, "module_dir": module_dir, "dump": dump_path, "inputs": inputs_path,
            "out": out_path, "refs_dir": args.refs_dir, "truncations": list(truncations),
            "work_dir": os.path.dirname(out_path)}
    spec_path = out_path + ".spec.json"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    start = time.perf_counter()
    proc = subprocess.run([args.torch_python, os.path.abspath(__file__), "--torch_side", spec_path],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"torch side failed for {kind}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    with open(out_path + ".json") as f:
        info = json.load(f)
    info["wall_s"] = round(time.perf_counter() - start, 1)
    return info


def check_kind(args, kind, identical, truncations, results, counted=None):
    """One module: write, dump, convert + run the reference, import + sample ours, compare.
    `counted`: the truncations whose differences count in the overall max (default: all)."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from official_hub_layout import default_ch, dim_z, write_official_module

    ch_used = args.ch or default_ch(kind)
    label = kind + (" identical-stats" if identical else "")
    work = os.path.join(args.work_dir, _slug(kind) + ("_identical" if identical else ""))
    os.makedirs(work, exist_ok=True)
    module_dir = os.path.join(work, "module")
    entry = {"kind": kind, "identical_stats": identical, "ch": ch_used, "truncations": list(truncations),
             "counted_truncations": list(truncations if counted is None else counted)}
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(module_dir, "saved_model.pb")):  # (reused with --keep --work_dir)
        if os.path.exists(module_dir):
            import shutil
            shutil.rmtree(module_dir)
        write_official_module(kind, module_dir, ch=ch_used, seed=args.seed, identical_stats=identical)
    entry["fixture_s"] = round(time.perf_counter() - t0, 1)
    dump_path = os.path.join(work, "dump.npz")
    entry["dump"] = dump_module(module_dir, dump_path)
    inputs = make_inputs(dim_z(kind), truncations, args.batch, args.seed)
    inputs_path = os.path.join(work, "inputs.npz")
    np.savez(inputs_path, **inputs)
    ref_out = os.path.join(work, "reference.npz")
    entry["reference"] = run_reference(args, kind, ch_used, module_dir, dump_path, inputs_path, ref_out,
                                       truncations)
    refs = np.load(ref_out)
    ref_names = sorted({k.split("@")[0] for k in refs.files})
    diffs = {}
    # Reference against reference (BigGAN-PyTorch: its converted G and its biggan_v1 shell).
    for a, b in zip(ref_names[:1] * len(ref_names), ref_names[1:]):
        diffs[f"{a} vs {b}"] = {repr(t): float(np.max(np.abs(refs[f"{a}@{t!r}"] - refs[f"{b}@{t!r}"])))
                                for t in truncations}
    run_dir = os.path.join(work, "run")
    if args.skip_import:
        entry["import"] = "skipped (--skip_import)"
    else:
        if os.path.exists(run_dir):
            import shutil
            shutil.rmtree(run_dir)
        imp = run_import(module_dir, run_dir)
        entry["import"] = imp
        if imp["rc"]:
            print(f"[{label}] import failed (rc {imp['rc']}):\n{imp['log_tail']}", flush=True)
        else:
            ours, info = sample_imported(run_dir, inputs, truncations)
            entry["imported_generator"] = info
            for name in ref_names:
                diffs[f"tf_biggan vs {name}"] = {
                    repr(t): float(np.max(np.abs(ours[t] - refs[f"{name}@{t!r}"]))) for t in truncations}
            entry["image_range"] = [float(min(v.min() for v in ours.values())),
                                    float(max(v.max() for v in ours.values()))]
            entry["image_std"] = float(np.mean([v.std() for v in ours.values()]))
    first = refs[refs.files[0]]
    entry["reference_image_std"] = float(np.mean([refs[k].std() for k in refs.files]))
    entry["reference_saturated_fraction"] = float(np.mean([np.mean(np.abs(refs[k]) > 0.99) for k in refs.files]))
    entry["image_shape"] = list(first.shape)
    entry["max_abs_diff"] = diffs
    for pair, per_t in diffs.items():
        row = "  ".join(f"t={t}: {d:.3g}" for t, d in per_t.items())
        print(f"[{label} ch={ch_used}] {pair}: {row}", flush=True)
    if not args.keep:
        for p in (dump_path, inputs_path):
            os.remove(p)
    results.append(entry)
    with open(args.out + ".partial", "w") as f:
        json.dump(results, f, indent=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated official module names")
    p.add_argument("--ch", type=int, default=None,
                   help="channel multiplier (default: the official 96 for biggan-*/2, 128 for deep)")
    p.add_argument("--refs_dir", default="/work/refs",
                   help="folder holding the work trees pytorch-pretrained-BigGAN/ and BigGAN-PyTorch/")
    p.add_argument("--torch_python", default="/work/torchenv/bin/python",
                   help="python of a virtualenv with torch (and parse), without TensorFlow")
    p.add_argument("--truncations", default="0.2,0.5,1.0")
    p.add_argument("--identical_truncations", default="0.14,0.305,0.58,1.0",
                   help="truncations for the deep modules with 51 identical statistic rows ('' = skip)")
    p.add_argument("--identical_kinds", default=None,
                   help="deep kinds to check again with identical statistic rows (default: the deep ones of "
                        "--kinds; '' = none); they need not be in --kinds")
    p.add_argument("--disagree_truncations", default="",
                   help="deep modules: extra truncations off the exact grid points (e.g. 0.14,0.305) where "
                        "pytorch-pretrained-BigGAN's interpolation differs from the linear one; reported, "
                        "not counted in the max")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work_dir", default=None, help="default: a temporary folder (deleted unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep modules, runs and dumps")
    p.add_argument("--skip_import", action="store_true",
                   help="references only (no tf_biggan import): reference-vs-reference differences")
    p.add_argument("--out", default="check_hub_import.json")
    p.add_argument("--torch_side", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_side:
        return torch_side(args.torch_side)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            p.error(f"--kinds: {k!r} is not one of {', '.join(KINDS)}")
    for name in ("pytorch-pretrained-BigGAN", "BigGAN-PyTorch"):
        if not os.path.isdir(os.path.join(args.refs_dir, name)):
            p.error(f"--refs_dir={args.refs_dir} has no {name}/: unpack that repository's work tree there")
    if not os.path.exists(args.torch_python):
        p.error(f"--torch_python={args.torch_python} does not exist: make a virtualenv with torch and parse")
    truncations = [float(t) for t in args.truncations.split(",") if t]
    identical_ts = [float(t) for t in args.identical_truncations.split(",") if t]
    disagree_ts = [float(t) for t in args.disagree_truncations.split(",") if t]
    cleanup = None
    if args.work_dir is None:
        cleanup = tempfile.TemporaryDirectory(prefix="check_hub_import_")
        args.work_dir = cleanup.name
    results = []
    start = time.perf_counter()
    for kind in kinds:
        extra = disagree_ts if _parse_kind(kind)[0] else []
        check_kind(args, kind, False, truncations + [t for t in extra if t not in truncations], results,
                   counted=truncations)
    identical_kinds = (kinds if args.identical_kinds is None else
                       [k for k in args.identical_kinds.split(",") if k])
    for kind in identical_kinds:
        if kind not in KINDS:
            p.error(f"--identical_kinds: {kind!r} is not one of {', '.join(KINDS)}")
        if _parse_kind(kind)[0] and identical_ts:
            check_kind(args, kind, True, identical_ts, results)
    summary = {"ch": args.ch or "official", "batch": args.batch, "seed": args.seed,
               "total_s": round(time.perf_counter() - start, 1), "results": results}
    deep512 = [r for r in results if r["kind"] == "biggan-deep-512/1" and not r["identical_stats"]
               and isinstance(r.get("import"), dict)]
    if deep512:
        imp = deep512[0]["import"]
        summary["import_biggan_deep_512"] = {"ch": deep512[0]["ch"], "wall_s": imp["wall_s"],
                                             "peak_rss_mib": imp["peak_rss_mib"]}
        print(f"import biggan-deep-512/1 (ch={deep512[0]['ch']}): {imp['wall_s']} s, peak RSS "
              f"{imp['peak_rss_mib']} MiB", flush=True)
    worst = max((d for r in results for pair, per_t in r["max_abs_diff"].items() if pair.startswith("tf_biggan")
                 for t, d in per_t.items() if float(t) in r["counted_truncations"]), default=None)
    summary["max_abs_diff_tf_biggan_vs_references"] = worst
    print(f"max |tf_biggan - reference| over everything: {worst}", flush=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    if os.path.exists(args.out + ".partial"):
        os.remove(args.out + ".partial")
    if cleanup is not None and not args.keep:
        cleanup.cleanup()
    return 0


# ----------------------------------------------------------------------------------------------------
# Torch side (runs in --torch_python; no TensorFlow here)
# ----------------------------------------------------------------------------------------------------

def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class _FakeTensorInfo:
    def __init__(self, dtype, shape):
        self.dtype, self._shape = dtype, shape

    def get_shape(self):
        return types.SimpleNamespace(as_list=lambda: list(self._shape))


def _fake_tf_for_hf(module_dir, variables, stacks, dim_z, calls):
    """`tensorflow` and `tensorflow_hub` as pytorch-pretrained-BigGAN's converter uses them (TF1 API):
    tf.train.list_variables / load_variable on MODULE/variables/variables serve the dumped checkpoint;
    hub.Module + tf.Session + get_tensor_by_name('module_apply_default/stack_N:0') serve the dumped graph
    tensors (hub.Module puts the applied signature's ops under the scope module_apply_default/)."""
    ckpt = os.path.join(module_dir, "variables", "variables")

    def check(path):
        if path != ckpt:
            raise AssertionError(f"the converter read {path}, not the module's checkpoint {ckpt}")

    def list_variables(path):
        check(path)
        calls.append("tf.train.list_variables")
        return [(name, list(value.shape)) for name, value in sorted(variables.items())]

    def load_variable(path, name):
        check(path)
        return variables[name]  # KeyError names the variable, as TF's NotFoundError would

    class Graph:
        def get_tensor_by_name(self, name):
            prefix, suffix = "module_apply_default/", ":0"
            if not (name.startswith(prefix) and name.endswith(suffix)):
                raise KeyError(name)
            node = name[len(prefix):-len(suffix)]
            if node not in stacks:
                raise KeyError(name)
            calls.append(node)
            return stacks[node]

    graph = Graph()

    class Session:
        def run(self, fetch):
            return np.array(fetch)

    class Module:
        def __init__(self, path):
            if os.path.abspath(path) != os.path.abspath(module_dir):
                raise AssertionError(path)

        def get_input_info_dict(self):
            return {"z": _FakeTensorInfo("float32", [None, dim_z]), "y": _FakeTensorInfo("float32", [None, 1000]),
                    "truncation": _FakeTensorInfo("float32", [])}

        def __call__(self, inputs):
            return None

    tf = _module("tensorflow", train=types.SimpleNamespace(list_variables=list_variables,
                                                              load_variable=load_variable),
                 reset_default_graph=lambda: None, placeholder=lambda dtype, shape, name=None: name,
                 global_variables_initializer=lambda: None, Session=Session, get_default_graph=lambda: graph)
    hub = _module("tensorflow_hub", Module=Module)
    return tf, hub


def _drive_hf(spec, variables, stacks, inputs):
    """pytorch-pretrained-BigGAN: its converter's load_tf_weights_in_biggan into its BigGAN model."""
    import copy

    import torch

    root = os.path.join(spec["refs_dir"], "pytorch-pretrained-BigGAN", "pytorch_pretrained_biggan")
    # The package's __init__ imports file_utils (boto3, requests, tqdm: pretrained-weight downloads,
    # unused here); the package is entered without it and file_utils replaced by a stub.
    pkg = _module("pytorch_pretrained_biggan")
    pkg.__path__ = [root]
    sys.modules["pytorch_pretrained_biggan"] = pkg

    def no_download(*a, **k):
        raise AssertionError("no downloads")

    sys.modules["pytorch_pretrained_biggan.file_utils"] = _module("pytorch_pretrained_biggan.file_utils",
                                                                  cached_path=no_download)
    calls = []
    deep, res = _parse_kind(spec["kind"])
    fake_tf, fake_hub = _fake_tf_for_hf(spec["module_dir"], variables, stacks, 128, calls)
    sys.modules["tensorflow"] = fake_tf
    sys.modules["tensorflow_hub"] = fake_hub
    import pytorch_pretrained_biggan.convert_tf_to_pytorch as conv
    import pytorch_pretrained_biggan.model as hf_model

    mapped = set()
    build_map = conv.build_tf_to_pytorch_map

    def record_map(model, config):  # its own map, recorded to list the module variables it leaves unread
        tf_to_pt = build_map(model, config)
        mapped.update(tf_to_pt)
        return tf_to_pt

    conv.build_tf_to_pytorch_map = record_map
    config = copy.deepcopy(getattr(conv, f"BigGAN{res}"))
    config.channel_width = spec["ch"]
    model = hf_model.BigGAN(config)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    conv.logger.addHandler(handler)
    conv.logger.setLevel(logging.INFO)
    with contextlib.redirect_stdout(io.StringIO()):  # it pprints the variable list
        model = conv.load_tf_weights_in_biggan(model, config, spec["module_dir"], batch_norm_stats_path=None)
    conv.logger.removeHandler(handler)
    text = log.getvalue()
    remaining = re.search(r"Remanining parameters/buffers from PyTorch model: (.*) -", text)
    model.eval()
    out = {}
    y = torch.from_numpy(inputs["y"])
    with torch.no_grad():
        for t in spec["truncations"]:
            img = model(torch.from_numpy(inputs[f"z/{t!r}"]), y, t)
            out[f"pytorch-pretrained-BigGAN@{t!r}"] = img.permute(0, 2, 3, 1).numpy()
    stacks_read = [c for c in calls if c.startswith("stack")]
    info = {"pytorch-pretrained-BigGAN": {
        "driven": "convert_tf_to_pytorch.load_tf_weights_in_biggan (incl. extract_batch_norm_stats) -> "
                  f"model.BigGAN(BigGAN{res} config, channel_width={spec['ch']}); fakes: tensorflow "
                  "(train.list_variables/load_variable, Session, get_default_graph), tensorflow_hub.Module, "
                  "package file_utils (downloads)",
        "stack_tensors_read": len(stacks_read),
        "stack_range": [stacks_read[0], stacks_read[-1]] if stacks_read else None,
        "module_variables_not_read": sorted(set(variables) - mapped),
        "torch_tensors_not_loaded": sorted(v for v in (remaining.group(1).split(", ") if remaining else []) if v),
    }}
    return out, info


def _drive_biggan_pytorch(spec, variables, inputs):
    """BigGAN-PyTorch: TFHub/converter.convert_biggan (TFHub2Pytorch -> biggan_v1 shell state dict ->
    convert_from_v1 -> BigGAN.Generator(**get_config(res))), and the biggan_v1 shell itself."""
    import inspect

    import torch

    root = os.path.join(spec["refs_dir"], "BigGAN-PyTorch")
    deep, res = _parse_kind(spec["kind"])
    ch = spec["ch"]
    sys.path[:0] = [os.path.join(root, "TFHub"), root]
    # Imported at the converter's top but used only by code this check replaces or never calls: the TF1
    # hub dump, the hdf5 cache, sample saving, and biggan_v1's truncated_z_sample.
    sys.modules["tensorflow"] = _module("tensorflow")
    sys.modules["tensorflow_hub"] = _module("tensorflow_hub")
    sys.modules["h5py"] = _module("h5py")
    tv_utils = _module("torchvision.utils", save_image=None)
    sys.modules["torchvision"] = _module("torchvision", utils=tv_utils)
    sys.modules["torchvision.utils"] = tv_utils
    if "scipy" not in sys.modules:
        try:
            import scipy.stats  # noqa: F401
        except ImportError:
            stats = _module("scipy.stats", truncnorm=None)
            sys.modules["scipy"] = _module("scipy", stats=stats)
            sys.modules["scipy.stats"] = stats
    import converter
    import biggan_v1

    # dump_tfhub_to_hdf5 loads hub.Module(path) in TF1 and returns {var.name: value} of
    # tf.global_variables(): names 'module/<checkpoint name>:0' (hub.Module's default scope "module").
    class Recording(dict):
        read = set()

        def __getitem__(self, key):
            self.read.add(key)
            return dict.__getitem__(self, key)

    tf_weights = Recording({f"module/{name}:0": value for name, value in variables.items()})
    converter.dump_tfhub_to_hdf5 = lambda module_path, hdf5_path, redownload=False: tf_weights
    substituted = []
    if ch != 96:
        # Reduced width only: convert_from_v1 and get_config hard-code the official ch = 96.
        source = inspect.getsource(converter.convert_from_v1)
        new, count = re.subn(r"96 +\* 16", f"{ch} * 16", source)
        if count != 3:
            raise AssertionError(f"convert_from_v1: expected 3 literal '96 * 16', found {count}")
        exec(compile(new, converter.__file__, "exec"), converter.__dict__)
        get_config = converter.get_config

        def get_config_ch(resolution):
            cfg = get_config(resolution)
            cfg["G_ch"] = cfg["D_ch"] = ch
            return cfg

        converter.get_config = get_config_ch
        substituted.append(f"convert_from_v1: literal 96 -> {ch} (3 places); get_config: G_ch=D_ch={ch}; "
                           f"biggan_v1.Generator{res}(chn={ch})")
    shells = []
    shell_cls = getattr(biggan_v1, f"Generator{res}")

    def make_shell(*a, **k):
        k.setdefault("chn", ch)
        shells.append(shell_cls(*a, **k))
        return shells[-1]

    converter.biggan_for_conversion = types.SimpleNamespace(**{f"Generator{res}": make_shell})
    v1_dicts = []
    from_v1 = converter.convert_from_v1

    def record_from_v1(hub_dict, resolution=128):
        v1_dicts.append(dict(hub_dict))
        return from_v1(hub_dict, resolution)

    converter.convert_from_v1 = record_from_v1
    weight_dir = os.path.join(spec["work_dir"], "biggan_pytorch_weights")
    os.makedirs(weight_dir, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        G = converter.convert_biggan(res, weight_dir)
    saved = torch.load(os.path.join(weight_dir, converter.PTH_TMPL.format(res)), weights_only=True)
    result = G.load_state_dict(saved, strict=False)  # what convert_biggan's own call left out
    missing = [k for k in result.missing_keys if not re.search(r"(^|\.)sv\d+$", k)]
    G.eval()
    shell = shells[0]
    shell_load = shell.load_state_dict(v1_dicts[0], strict=True)
    shell.eval()
    out = {}
    y = torch.from_numpy(inputs["y"])
    classes = torch.from_numpy(inputs["classes"])
    with torch.no_grad():
        for t in spec["truncations"]:
            z = torch.from_numpy(inputs[f"z/{t!r}"])
            out[f"BigGAN-PyTorch@{t!r}"] = G(z, G.shared(classes)).permute(0, 2, 3, 1).numpy()
            out[f"biggan_v1-shell@{t!r}"] = shell(z, y).permute(0, 2, 3, 1).numpy()
        # BigGAN.Generator builds its output BN as layers.bn(...) without eps=BN_eps, i.e. torch's 1e-5,
        # where the module (and every other BN of the same model) uses 1e-4: the same converted G again
        # with only that epsilon set to the module's, to separate the mapping from that constant.
        out_bn = G.output_layer[0]
        eps_as_built = out_bn.eps
        out_bn.eps = 1e-4
        for t in spec["truncations"]:
            z = torch.from_numpy(inputs[f"z/{t!r}"])
            out[f"BigGAN-PyTorch[output-BN eps 1e-4]@{t!r}"] = G(z, G.shared(classes)).permute(0, 2, 3, 1).numpy()
    info = {"BigGAN-PyTorch": {
        "driven": "TFHub/converter.convert_biggan -> BigGAN.Generator(**get_config(res)); "
                  "biggan_v1 shell run with TFHub2Pytorch's state dict; fakes: dump_tfhub_to_hdf5 returns the "
                  "dumped variables as {'module/NAME:0': value}; tensorflow, tensorflow_hub, h5py, torchvision "
                  "stub modules (imported, unused)",
        "substituted_for_reduced_width": substituted,
        "generator_keys_not_loaded": missing,
        "unexpected_keys": list(result.unexpected_keys),
        "shell_strict_load": str(shell_load),
        "output_bn_eps_as_built": eps_as_built,
        "shell_output_bn_eps": shell.ScaledCrossReplicaBN.eps,
        "module_variables_not_read": sorted(k[len("module/"):-2] for k in set(tf_weights) - tf_weights.read),
    }}
    return out, info


def torch_side(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    dump = np.load(spec["dump"])
    variables = {k[4:]: dump[k] for k in dump.files if k.startswith("var/")}
    stacks = {k[6:]: dump[k] for k in dump.files if k.startswith("stack/")}
    inputs = dict(np.load(spec["inputs"]))
    deep, _ = _parse_kind(spec["kind"])
    if deep:
        out, info = _drive_hf(spec, variables, stacks, inputs)
    else:
        out, info = _drive_biggan_pytorch(spec, variables, inputs)
    np.savez(spec["out"], **out)
    with open(spec["out"] + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
