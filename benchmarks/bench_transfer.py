"""Benchmark: transfer to a small dataset. Does a warm start (train.init_from) and ADA beat training from
scratch at equal steps and seeds? (Seed 003, ADA: transfer from a trained network is its limited-data
headline setting; its Figure 9 compares transfer with and without ADA.)

Source: a run on digit classes 0-4, all their training images (data.classes=[0,1,2,3,4]).
Target: digit classes 5-9 with k training images per class (data.classes=[5,6,7,8,9], data.max_per_class=k),
k = 10 and 50; the same 5 class ids, so the class tables are copied (target class j starts from source
class j's rows: no digit of 5-9 has a neighbour among 0-4 that a class map could name).
Arms, each `tf-biggan --mode=train` in a fresh process (the CLI, with --init_from for the warm arms):

    scratch            fresh weights
    scratch_ada        + ADA (augment.kind=ada, pipeline bgc, r_t target 0.6, speed_kimg --speed_kimg)
    warm               --init_from=SOURCE (G, EMA-G and D of the source's last checkpoint)
    warm_ada           warm + ADA
    warm_diffaugment   warm + DiffAugment (color,translation,cutout)

Scores of 100 EMA-G samples per class (standing statistics first, Appendix C.1) at every --eval_steps
checkpoint, with a digit classifier trained on ALL real training digits (10 classes): FID on its features
against ALL held-out digits of classes 5-9 (the test split, 182 images), IS of its 10-way softmax (5 at
most: 5 classes), the share of samples read as the asked digit, and CAS at --cas_steps (the same small
classifier trained only on 100 samples per class, tested on the 182 held-out real digits; the project's
convnet, not cas_digits.yaml's ResNet-8, to keep it to seconds). Warm arms' step 0 is the source itself.

Everything goes to --out incrementally: the source run, one run directory per (k, arm, seed), one
results/k{K}_{ARM}_s{SEED}.json as each finishes (a rerun skips what is there and resumes a killed
training with the same command), then transfer.md (table) and fid_vs_steps.png (FID against steps, one
line per arm, the seeds' min-max shaded).

Run:  nice -n 19 python3 benchmarks/bench_transfer.py --out DIR   (the full run; --smoke: a tiny one)
Results with machine and date: docs/results.md ("Transfer to a small dataset").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import numpy as np  # noqa: E402

ARMS = ("scratch", "scratch_ada", "warm", "warm_ada", "warm_diffaugment")
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
PER_CLASS_SAMPLES = 100


def _classes(classes) -> str:
    return f"data.classes=[{','.join(map(str, classes))}],data.num_classes={len(classes)}"


def common_overrides(args, steps: int, seed: int) -> str:
    """hparams/digits.yaml (16 px, ch 8, batch 32, lr 2e-4 / 4e-4, EMA 0.99) with the benchmark's cadences."""
    return (f"train.train_steps={steps},train.seed={seed},data.seed={seed},train.save_every={args.save_every},"
            f"train.keep_checkpoints=1000,train.steps_per_loop={args.save_every},train.log_every={args.save_every},"
            f"train.sv_every={steps},train.sample_every={steps}")


def arm_overrides(args, arm: str, k: int, seed: int) -> str:
    extra = f"{_classes(TARGET_CLASSES)},data.max_per_class={k}"
    if arm.endswith("_ada"):
        extra += f",augment.kind=ada,augment.pipeline=bgc,augment.speed_kimg={args.speed_kimg}"
    if arm.endswith("_diffaugment"):
        extra += ",augment.kind=diffaugment"
    return f"{common_overrides(args, args.steps, seed)},{extra}"


def cli_train(model_dir: str, overrides: str, init_from: str = None) -> dict:
    """One `tf-biggan --mode=train` process (rerun: it resumes); its wall and CPU seconds."""
    cmd = [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={model_dir}",
           f"--hparams_overrides={overrides}"] + ([f"--init_from={init_from}"] if init_from else [])
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return {"wall_s": time.time() - t0, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


class Judge:
    """The digit classifier trained on ALL real training digits (saved in OUT/judge); the held-out
    digits of classes 5-9 as the FID reference and the CAS test set."""

    def __init__(self, out: str):
        from bench_train import digits_images
        from tf_biggan.evaluation.classifier import load_classifier, train_classifier

        x_train, y_train = digits_images("train", 16)
        x_test, y_test = digits_images("test", 16)
        path = os.path.join(out, "judge")
        if os.path.exists(os.path.join(path, "classifier.json")):
            self.classifier = load_classifier(path)
        else:
            self.classifier = train_classifier(x_train, y_train, 10, seed=0)
            self.classifier.save(path)
        target = np.isin(y_test, TARGET_CLASSES)
        self.real, self.real_labels = x_test[target], y_test[target] - TARGET_CLASSES[0]
        self.real_acts = self.classifier.activations(self.real)
        self.train_images, self.train_labels = x_train, y_train
        self.heldout_accuracy = self.classifier.accuracy(x_test, y_test)

    def score(self, images, labels) -> dict:
        """FID / IS / sample class accuracy of samples of target classes `labels` (0..4)."""
        from tf_biggan.evaluation.metrics import classification_accuracy, frechet_distance, inception_score

        acts, logits = self.classifier.activations_and_logits(images)
        mixed = np.random.default_rng(0).permutation(len(logits))  # the samples come class by class: every
        # split of the Inception Score must see all classes, else its p(y) is one class and IS is 1
        return {"fid": frechet_distance(acts, self.real_acts), "is": inception_score(logits[mixed], splits=5)[0],
                "accuracy": classification_accuracy(logits, labels + TARGET_CLASSES[0])}

    def cas(self, images, labels) -> float:
        """Classification Accuracy Score: trained on `images` only, tested on the held-out real 5-9."""
        from tf_biggan.evaluation.classifier import train_classifier

        return train_classifier(images, labels, len(TARGET_CLASSES), seed=0).accuracy(self.real, self.real_labels)

    def references(self, ks) -> dict:
        """The floor FID (real training digits 5-9 vs the held-out ones) and real-data CAS with k per class."""
        from tf_biggan.data.digits import first_per_class

        target = np.isin(self.train_labels, TARGET_CLASSES)
        x, y = self.train_images[target], self.train_labels[target] - TARGET_CLASSES[0]
        refs = {"real_train_5_9": self.score(x, y), "classifier_heldout_accuracy": self.heldout_accuracy}
        for k in ks:
            keep = first_per_class(y, k)
            refs[f"cas_real_k{k}"] = self.cas(x[keep], y[keep])
        return refs


def samples(model_dir: str, checkpoint: str):
    """100 EMA-G samples per class of `checkpoint` (z ~ N(0, I), fixed), after standing statistics."""
    import tensorflow as tf

    from tf_biggan.runs import load_run
    from tf_biggan.sampling.standing_stats import accumulate_standing_stats

    run = load_run(model_dir, checkpoint)
    g, ev = run.ema_generator, run.hp.eval
    accumulate_standing_stats(g, num_passes=ev.standing_stats_passes, batch_size=ev.standing_stats_batch, seed=12345)
    labels = np.repeat(np.arange(run.hp.data.num_classes, dtype=np.int32), PER_CLASS_SAMPLES)
    z = tf.random.stateless_normal((len(labels), run.hp.model.dim_z), seed=(2024, 1))
    images = np.concatenate([g((z[i:i + 250], labels[i:i + 250]), training=False).numpy()
                             for i in range(0, len(labels), 250)])
    return images, labels


def evaluate_run(judge: Judge, model_dir: str, eval_steps, cas_steps) -> dict:
    rows = {}
    for step in eval_steps:
        images, labels = samples(model_dir, os.path.join(model_dir, f"ckpt-{step}"))
        rows[step] = judge.score(images, labels)
        if step in cas_steps:
            rows[step]["cas"] = judge.cas(images, labels)
    return rows


def rescore_is(args, judge: Judge) -> None:
    """IS of every result at its last step again (results written before the split fix above: their IS
    saw one class per split); the other steps' IS are dropped."""
    folder = os.path.join(args.out, "results")
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("k") and name.endswith(".json")):
            continue
        path = os.path.join(folder, name)
        with open(path) as f:
            result = json.load(f)
        if result.get("is_rescored"):
            continue
        model_dir = os.path.join(args.out, "runs", f"k{result['k']}", result["arm"], f"s{result['seed']}")
        last = max(result["scores"], key=int)
        images, labels = samples(model_dir, os.path.join(model_dir, f"ckpt-{last}"))
        for step, row in result["scores"].items():
            row.pop("is", None)
        result["scores"][last]["is"] = judge.score(images, labels)["is"]
        result["is_rescored"] = f"step {last} only"
        write_json(path, result)


def write_json(path: str, value) -> None:
    from tf_biggan.atomic import write_json as atomic_write_json

    atomic_write_json(path, value)


def source_run(args, judge: Judge) -> str:
    """The source run (classes 0-4, all their images), trained once; its step-0 scores for the warm arms."""
    model_dir = os.path.join(args.out, "source")
    record = os.path.join(args.out, "results", "source.json")
    if not os.path.exists(record):
        cost = cli_train(model_dir, f"{common_overrides(args, args.source_steps, 0)},{_classes(SOURCE_CLASSES)}")
        images, labels = samples(model_dir, os.path.join(model_dir, f"ckpt-{args.source_steps}"))
        write_json(record, {"step0_as_target": judge.score(images, labels), "cas_step0": judge.cas(images, labels),
                            **cost})
    return model_dir


def one_arm(args, judge: Judge, source: str, k: int, arm: str, seed: int) -> dict:
    path = os.path.join(args.out, "results", f"k{k}_{arm}_s{seed}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    model_dir = os.path.join(args.out, "runs", f"k{k}", arm, f"s{seed}")
    if _trained_to(model_dir) >= args.steps:  # a longer run of the same arm and seed: its checkpoints are these
        cost = {"reused": f"trained to step {_trained_to(model_dir)} before"}
    else:
        cost = cli_train(model_dir, arm_overrides(args, arm, k, seed), source if arm.startswith("warm") else None)
    t0 = time.process_time()
    result = {"k": k, "arm": arm, "seed": seed, "train": cost,
              "scores": evaluate_run(judge, model_dir, args.eval_steps, args.cas_steps)}
    result["eval_cpu_s"] = time.process_time() - t0
    p = _augment_p(model_dir)
    if p is not None:
        result["augment_p_last"] = p
    write_json(path, result)
    print(f"k={k} {arm} seed {seed}: FID {[round(r['fid'], 2) for r in result['scores'].values()]} "
          f"({cost.get('cpu_s', 0):.0f} CPU-s training)", flush=True)
    return result


def _trained_to(model_dir: str) -> int:
    path = os.path.join(model_dir, "train_report.json")
    if not os.path.exists(path):
        return -1
    with open(path) as f:
        return int(json.load(f)["step"])


def _augment_p(model_dir: str):
    """The last logged augmentation probability p (train/scalars.jsonl), if the run augments."""
    path = os.path.join(model_dir, "train", "scalars.jsonl")
    if not os.path.exists(path):
        return None
    values = [json.loads(line) for line in open(path)]
    ps = [(row["step"], row["value"]) for row in values if row["tag"] == "augment/p"]
    return {"last": ps[-1][1], "max": max(v for _, v in ps)} if ps else None


# ------------------------------------------------------------------------------------------------ the report

def load_results(out: str):
    """({(k, arm): [result of each seed]}, source.json, references.json) of what is on disk."""
    results = {}
    folder = os.path.join(out, "results")
    for name in sorted(os.listdir(folder)):
        if name.startswith("k") and name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                r = json.load(f)
            results.setdefault((r["k"], r["arm"]), []).append(r)
    read = lambda name: json.load(open(os.path.join(folder, name))) if os.path.exists(os.path.join(folder, name)) else {}  # noqa: E731
    return results, read("source.json"), read("references.json")


def curve(runs, source: dict, metric: str = "fid"):
    """(steps, [seeds x steps] values) of one arm; a warm arm's step 0 is the source's score."""
    steps = sorted({int(s) for r in runs for s in r["scores"]}, key=int)
    values = np.array([[r["scores"][str(s)][metric] for s in steps] for r in runs], np.float64)
    if runs[0]["arm"].startswith("warm") and source and metric in source.get("step0_as_target", {}):
        steps = [0] + steps
        values = np.concatenate([np.full((len(runs), 1), source["step0_as_target"][metric]), values], axis=1)
    return steps, values


def steps_to(steps, values, target: float):
    """(the first scored step whose seed-mean FID is at or below `target`, the step where the seed-mean
    crosses it, log FID interpolated linearly from the scored step before); (None, None) if never."""
    mean = values.mean(axis=0)
    for i, (step, value) in enumerate(zip(steps, mean)):
        if value <= target:
            if i == 0:
                return step, float(step)
            t = np.log(mean[i - 1] / target) / np.log(mean[i - 1] / value)
            return step, float(steps[i - 1] + t * (step - steps[i - 1]))
    return None, None


def _cell(values) -> str:
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def _cpu(values) -> str:
    known = [v for v in values if v is not None]
    return f"{np.mean(known):.0f}" + (f" ({len(known)} of {len(values)})" if len(known) < len(values) else "") if known else "-"


def table(results, source, refs) -> str:
    ks = sorted({k for k, _ in results})
    steps = sorted({int(s) for runs in results.values() for r in runs for s in r["scores"]})
    cas_steps = sorted({int(s) for runs in results.values() for r in runs for s, v in r["scores"].items() if "cas" in v})
    head = (["k", "arm", "seeds"] + [f"FID @{s}" for s in steps] + [f"IS @{steps[-1]}", f"class acc. @{steps[-1]}",
            *[f"CAS @{s}" for s in cas_steps], "steps to scratch's final FID", "augment p at the end (max)", "train CPU-s"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in ks:
        scratch = results.get((k, "scratch"))
        target = curve(scratch, source)[1][:, -1].mean() if scratch else None
        for arm in ARMS:
            runs = results.get((k, arm))
            if not runs:
                continue
            s_all, fid = curve(runs, source)
            last = str(steps[-1])
            reached, crossing = steps_to(s_all, fid, target) if target is not None else (None, None)
            row = [str(k), arm, str(len(runs))]
            row += [_cell(np.array([r["scores"][str(s)]["fid"] for r in runs if str(s) in r["scores"]])) for s in steps]
            row += [_cell(np.array([r["scores"][last]["is"] for r in runs])),
                    _cell(100 * np.array([r["scores"][last]["accuracy"] for r in runs])) + "%"]
            row += [_cell(100 * np.array([r["scores"][str(s)]["cas"] for r in runs])) + "%" for s in cas_steps]
            ps = [r["augment_p_last"] for r in runs if r.get("augment_p_last")]
            row += ["not within the run" if reached is None else f"{reached} (≈{crossing:.0f})",
                    " ".join(f"{p['last']:.2f} ({p['max']:.2f})" for p in ps) or "-",
                    _cpu([r["train"].get("cpu_s") for r in runs])]
            lines.append("| " + " | ".join(row) + " |")
    notes = []
    notes.append("Steps to scratch's final FID: the first scored step at or below the seed-mean FID scratch ends "
                 "with (≈: where the seed-mean curve crosses it, log FID interpolated between scored steps). "
                 "augment p: ADA's p per seed (DiffAugment: its fixed cutout probability).")
    if source:
        notes.append(f"Source alone (step 0 of the warm arms: its G asked for classes 5-9 draws 0-4): FID "
                     f"{source['step0_as_target']['fid']:.2f}, class acc. {100 * source['step0_as_target']['accuracy']:.1f}%, "
                     f"CAS {100 * source['cas_step0']:.1f}%.")
    if refs:
        cas = ", ".join(f"k = {key[len('cas_real_k'):]}: {100 * v:.1f}%" for key, v in refs.items() if key.startswith("cas_real_k"))
        notes.append(f"Real data: training digits 5-9 against the held-out ones FID {refs['real_train_5_9']['fid']:.2f}, "
                     f"IS {refs['real_train_5_9']['is']:.2f}; CAS of the k real images per class ({cas}); the judge "
                     f"classifier reads {100 * refs['classifier_heldout_accuracy']:.1f}% of all held-out digits right.")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def plot(results, source, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({k for k, _ in results})
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 4.2), squeeze=False)
    for ax, k in zip(axes[0], ks):
        for arm in ARMS:
            runs = results.get((k, arm))
            if not runs:
                continue
            steps, fid = curve(runs, source)
            line, = ax.plot(steps, fid.mean(axis=0), marker="o", ms=3, label=f"{arm} ({len(runs)} seeds)")
            ax.fill_between(steps, fid.min(axis=0), fid.max(axis=0), color=line.get_color(), alpha=0.15)
            if arm == "scratch":
                ax.axhline(fid.mean(axis=0)[-1], color=line.get_color(), ls="--", lw=0.8,
                           label="scratch's final FID")
        ax.set_yscale("log")
        ax.set_title(f"digits 5-9, k = {k} images per class")
        ax.set_xlabel("training steps (batch 32)")
        ax.set_ylabel("FID (digit classifier features) vs held-out 5-9")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(out: str) -> None:
    results, source, refs = load_results(out)
    if not results:
        return
    with open(os.path.join(out, "transfer.md"), "w") as f:
        f.write(table(results, source, refs))
    plot(results, source, os.path.join(out, "fid_vs_steps.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="a tiny version: 1 seed, k=10, few steps")
    parser.add_argument("--report_only", action="store_true", help="rewrite transfer.md and the plot from results/")
    parser.add_argument("--rescore_is", action="store_true", help="recompute IS at the last step of every result")
    parser.add_argument("--source_steps", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--save_every", type=int, default=50)
    parser.add_argument("--eval_steps", default="50,100,150,200,300,400,500")
    parser.add_argument("--cas_steps", default="200,500")
    parser.add_argument("--ks", default="10,50")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--speed_kimg", type=float, default=2.0,
                        help="ADA's p can cross 0 -> 1 in this many kimg (a 500-step run sees 16 kimg)")
    args = parser.parse_args()
    if args.smoke:
        args.source_steps, args.steps, args.save_every = 20, 20, 10
        args.eval_steps, args.cas_steps, args.ks, args.seeds = "10,20", "20", "10", "0"
    args.eval_steps = [int(s) for s in args.eval_steps.split(",")]
    args.cas_steps = {int(s) for s in args.cas_steps.split(",")}
    ks, seeds = [int(k) for k in args.ks.split(",")], [int(s) for s in args.seeds.split(",")]
    os.makedirs(os.path.join(args.out, "results"), exist_ok=True)
    if args.report_only:
        write_report(args.out)
        return 0
    if args.rescore_is:
        rescore_is(args, Judge(args.out))
        write_report(args.out)
        return 0
    judge = Judge(args.out)
    refs_path = os.path.join(args.out, "results", "references.json")
    if not os.path.exists(refs_path):
        write_json(refs_path, judge.references(ks))
    source = source_run(args, judge)
    for seed in seeds:  # every arm of a seed before the next seed: a partial run is still a comparison
        for k in ks:
            for arm in args.arms.split(","):
                one_arm(args, judge, source, k, arm, seed)
                write_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
