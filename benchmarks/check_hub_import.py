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
     TF 2.x; they are replaced by small fakes that serve the dump (hub_check_pretrained_biggan.py,
     hub_check_biggan_pytorch.py); everything else is the references' code, imported from --refs_dir
     at run time (nothing of theirs is copied here);
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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from hub_check_tensorflow import REPO, dump_module, make_inputs, run_import, sample_imported
from hub_kinds import KINDS, parse_kind, slug


# ----------------------------------------------------------------------------------------------------
# One module: write, dump, the references' images, ours, the differences
# ----------------------------------------------------------------------------------------------------

def official_layout():
    """tests/official_hub_layout.py: a test helper, not part of the package, imported from tests/."""
    tests = os.path.join(REPO, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import official_hub_layout

    return official_hub_layout


def write_module(args, kind: str, identical: bool, module_dir: str, ch: int) -> float:
    """The random-weight module in the official layout (reused with --keep --work_dir); its seconds."""
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(module_dir, "saved_model.pb")):
        if os.path.exists(module_dir):
            shutil.rmtree(module_dir)
        official_layout().write_official_module(kind, module_dir, ch=ch, seed=args.seed, identical_stats=identical)
    return round(time.perf_counter() - t0, 1)


def run_reference(args, kind, ch, module_dir, dump_path, inputs_path, out_path, truncations) -> dict:
    """The torch side (`--torch_side SPEC` in --torch_python) on the dump: its images to `out_path`."""
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


def max_abs(a, b) -> float:
    return float(np.max(np.abs(a - b)))


def compare_ours(args, label, module_dir, work, inputs, refs, truncations, entry, diffs) -> None:
    """Imports the module through the CLI, samples the run and adds 'tf_biggan vs REF' to `diffs`."""
    run_dir = os.path.join(work, "run")
    if args.skip_import:
        entry["import"] = "skipped (--skip_import)"
        return
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    imp = run_import(module_dir, run_dir)
    entry["import"] = imp
    if imp["rc"]:
        print(f"[{label}] import failed (rc {imp['rc']}):\n{imp['log_tail']}", flush=True)
        return
    ours, info = sample_imported(run_dir, inputs, truncations)
    entry["imported_generator"] = info
    for name in sorted({k.split("@")[0] for k in refs.files}):
        diffs[f"tf_biggan vs {name}"] = {repr(t): max_abs(ours[t], refs[f"{name}@{t!r}"]) for t in truncations}
    entry["image_range"] = [float(min(v.min() for v in ours.values())),
                            float(max(v.max() for v in ours.values()))]
    entry["image_std"] = float(np.mean([v.std() for v in ours.values()]))


def check_kind(args, kind, identical, truncations, results, counted=None):
    """One module: write, dump, convert + run the reference, import + sample ours, compare.
    `counted`: the truncations whose differences count in the overall max (default: all)."""
    layout = official_layout()
    ch_used = args.ch or layout.default_ch(kind)
    label = kind + (" identical-stats" if identical else "")
    work = os.path.join(args.work_dir, slug(kind) + ("_identical" if identical else ""))
    os.makedirs(work, exist_ok=True)
    module_dir = os.path.join(work, "module")
    entry = {"kind": kind, "identical_stats": identical, "ch": ch_used, "truncations": list(truncations),
             "counted_truncations": list(truncations if counted is None else counted)}
    entry["fixture_s"] = write_module(args, kind, identical, module_dir, ch_used)
    dump_path, inputs_path = os.path.join(work, "dump.npz"), os.path.join(work, "inputs.npz")
    entry["dump"] = dump_module(module_dir, dump_path)
    inputs = make_inputs(layout.dim_z(kind), truncations, args.batch, args.seed)
    np.savez(inputs_path, **inputs)
    ref_out = os.path.join(work, "reference.npz")
    entry["reference"] = run_reference(args, kind, ch_used, module_dir, dump_path, inputs_path, ref_out,
                                       truncations)
    refs = np.load(ref_out)
    ref_names = sorted({k.split("@")[0] for k in refs.files})
    diffs = {}
    # Reference against reference (BigGAN-PyTorch: its converted G and its biggan_v1 shell).
    for a, b in zip(ref_names[:1] * len(ref_names), ref_names[1:]):
        diffs[f"{a} vs {b}"] = {repr(t): max_abs(refs[f"{a}@{t!r}"], refs[f"{b}@{t!r}"]) for t in truncations}
    compare_ours(args, label, module_dir, work, inputs, refs, truncations, entry, diffs)
    record(args, entry, refs, diffs, label, [dump_path, inputs_path])
    results.append(entry)
    with open(args.out + ".partial", "w") as f:
        json.dump(results, f, indent=1)


def record(args, entry, refs, diffs, label, scratch) -> None:
    """The references' image statistics and every difference into `entry`; one printed line a pair."""
    first = refs[refs.files[0]]
    entry["reference_image_std"] = float(np.mean([refs[k].std() for k in refs.files]))
    entry["reference_saturated_fraction"] = float(np.mean([np.mean(np.abs(refs[k]) > 0.99) for k in refs.files]))
    entry["image_shape"] = list(first.shape)
    entry["max_abs_diff"] = diffs
    for pair, per_t in diffs.items():
        row = "  ".join(f"t={t}: {d:.3g}" for t, d in per_t.items())
        print(f"[{label} ch={entry['ch']}] {pair}: {row}", flush=True)
    if not args.keep:
        for p in scratch:
            os.remove(p)


# ----------------------------------------------------------------------------------------------------
# The command line, the run over the kinds, the summary
# ----------------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
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
    return p


def kinds_checked(p: argparse.ArgumentParser, args) -> tuple:
    """(kinds, identical_kinds) of the flags, with the references and --torch_python checked first."""
    kinds = [k for k in args.kinds.split(",") if k]
    identical_kinds = kinds if args.identical_kinds is None else [k for k in args.identical_kinds.split(",") if k]
    for flag, names in (("--kinds", kinds), ("--identical_kinds", identical_kinds)):
        for k in names:
            if k not in KINDS:
                p.error(f"{flag}: {k!r} is not one of {', '.join(KINDS)}")
    for name in ("pytorch-pretrained-BigGAN", "BigGAN-PyTorch"):
        if not os.path.isdir(os.path.join(args.refs_dir, name)):
            p.error(f"--refs_dir={args.refs_dir} has no {name}/: unpack that repository's work tree there")
    if not os.path.exists(args.torch_python):
        p.error(f"--torch_python={args.torch_python} does not exist: make a virtualenv with torch and parse")
    return kinds, identical_kinds


def floats(text: str) -> list:
    return [float(t) for t in text.split(",") if t]


def run_checks(args, kinds, identical_kinds) -> list:
    """Every kind at --truncations (+ --disagree_truncations for the deep ones, not counted), then the
    deep identical-statistics modules at --identical_truncations."""
    truncations, identical_ts = floats(args.truncations), floats(args.identical_truncations)
    disagree_ts = floats(args.disagree_truncations)
    results = []
    for kind in kinds:
        extra = disagree_ts if parse_kind(kind)[0] else []
        check_kind(args, kind, False, truncations + [t for t in extra if t not in truncations], results,
                   counted=truncations)
    for kind in identical_kinds:
        if parse_kind(kind)[0] and identical_ts:
            check_kind(args, kind, True, identical_ts, results)
    return results


def summarise(args, results, seconds: float) -> dict:
    """The JSON summary: every result, the biggan-deep-512/1 import's cost, the worst counted difference."""
    summary = {"ch": args.ch or "official", "batch": args.batch, "seed": args.seed,
               "total_s": round(seconds, 1), "results": results}
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
    return summary


def torch_side(spec_path):
    """The reference's images for one module (in --torch_python: torch, no TensorFlow)."""
    with open(spec_path) as f:
        spec = json.load(f)
    dump = np.load(spec["dump"])
    variables = {k[4:]: dump[k] for k in dump.files if k.startswith("var/")}
    stacks = {k[6:]: dump[k] for k in dump.files if k.startswith("stack/")}
    inputs = dict(np.load(spec["inputs"]))
    deep, _ = parse_kind(spec["kind"])
    if deep:
        import hub_check_pretrained_biggan

        out, info = hub_check_pretrained_biggan.drive(spec, variables, stacks, inputs)
    else:
        import hub_check_biggan_pytorch

        out, info = hub_check_biggan_pytorch.drive(spec, variables, inputs)
    np.savez(spec["out"], **out)
    with open(spec["out"] + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return 0


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.torch_side:
        return torch_side(args.torch_side)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    kinds, identical_kinds = kinds_checked(p, args)
    cleanup = None
    if args.work_dir is None:
        cleanup = tempfile.TemporaryDirectory(prefix="check_hub_import_")
        args.work_dir = cleanup.name
    start = time.perf_counter()
    results = run_checks(args, kinds, identical_kinds)
    summary = summarise(args, results, time.perf_counter() - start)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    if os.path.exists(args.out + ".partial"):
        os.remove(args.out + ".partial")
    if cleanup is not None and not args.keep:
        cleanup.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
