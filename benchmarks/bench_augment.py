"""Benchmark of tf_biggan.augment: ADA on limited data, leaks, and the augmentation's cost.

1. Limited data: the embedded digits with at most `--per_class` training images per class
   (data.max_per_class), trained with the same steps and seeds as augment.kind=none, augment.kind=ada
   (pipeline bgc; speed_kimg 10 instead of 500: a run here is ~130-380 kimg, not 25,000: p can cross
   0 -> 1 in ~3-8% of the run, as 500 of 25,000 kimg is 2% in the paper), ada_rv (the same with the
   validation heuristic, augment.heuristic=rv; held-out: the training digits beyond --per_class) and,
   as a control, augment.kind=fixed (p = --p), one after the other; every --save_every checkpoint is scored.
   Diagnosis at each checkpoint: D on its training digits vs unseen digits of the training split,
   r_t and the paper's validation heuristic r_v (seed 003, Section 3), and G's nearest-neighbour
   distances to seen vs unseen digits (memorisation); r_t and p over training from train/scalars.jsonl.
2. Scores of 1,000 EMA-G samples (100 per class, standing statistics first) with the project's
   classifier trained on ALL real training digits (tf_biggan.evaluation.features):
   FID on its features against the real training digits, and the share labelled as the asked class.
3. Leaks (seed 003, Appendix C.4), judged with real-data classifiers: an orientation classifier
   trained on the real training digits under the 8 flips / 90-degree rotations (D4) tells which
   share of samples reads as rotated or flipped, against the same share for real held-out digits;
   and the share of samples with an inverted (luma-flipped) background.
4. Cost: images/s of ada_augment (pipeline bgc, every transform applied: p = 1, and p = 0.2) at
   16 px (batch 64) and 128 px (batch 16), after compilation.

Results, with machine and date: docs/results.md ("Augmentation on limited digits").

Run:  python benchmarks/bench_augment.py --out DIR [--steps 4000] [--per_class 10] [--seed 0]
          [--extra train.disc_steps=2]
      Phases: --phase train --kind none|ada|ada_rv|fixed (one arm); --phase evaluate (last checkpoints);
      --phase diagnose [--kind K] (every checkpoint); --phase cost. Default: all arms one after the
      other, then diagnose and cost. The results' runs, per seed S: --phase train --kind none|ada_rv
      --seed S --steps 8000 --per_class 10 (and --steps 12000 --save_every 2000 --per_class 50), then
      --phase diagnose --kind none / ada_rv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_train import class_samples, digits_images  # noqa: E402  (one loader of the real digits, one sampler)
from tf_biggan.data.digits import first_per_class  # noqa: E402
from tf_biggan.atomic import write_json  # noqa: E402

# The two arms of the claim, ADA with the validation heuristic r_v (augment.heuristic=rv, held-out:
# the training digits beyond --per_class) and a fixed-p control (augment.p = --p).
KINDS = ("none", "ada", "ada_rv", "fixed")


def overrides(args, kind: str) -> str:
    save = args.save_every or args.steps
    common = (f"data.max_per_class={args.per_class},train.train_steps={args.steps},train.save_every={save},"
              f"train.sample_every={args.steps},train.sv_every={args.steps},train.log_every=100,"
              f"train.steps_per_loop=50,train.seed={args.seed},train.keep_checkpoints=20")
    if kind in ("ada", "ada_rv"):
        common += f",augment.kind=ada,augment.speed_kimg={args.speed_kimg},augment.pipeline={args.pipeline}"
        common += ",augment.heuristic=rv" if kind == "ada_rv" else ""
    if kind == "fixed":
        common += f",augment.kind=fixed,augment.p={args.p},augment.pipeline={args.pipeline}"
    return common + (f",{args.extra}" if args.extra else "")


def train(args, kind: str) -> dict:
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer, prepare_model_dir

    hp = load_hparams(None, overrides(args, kind))
    model_dir = os.path.join(args.out, kind)
    prepare_model_dir(hp, model_dir)
    trainer = GANTrainer(hp, model_dir=model_dir)
    trainer.restore()
    t0 = time.time()
    report = trainer.fit()
    report["train_minutes"] = (time.time() - t0) / 60
    return report


def d4(images: np.ndarray, element: int) -> np.ndarray:
    """Element 0..7 of the dihedral group: k = element % 4 quarter turns, then a flip if element >= 4."""
    out = np.rot90(images, k=element % 4, axes=(1, 2))
    return out[:, :, ::-1] if element >= 4 else out


class Judge:
    """Real-data judges: a digit classifier (FID features, class accuracy) and a D4-orientation classifier
    (leaks), both trained on ALL real training digits; the held-out digits for reference."""

    def __init__(self):
        from tf_biggan.evaluation.features import train_classifier

        self.x_train, self.y_train = digits_images("train", 16)
        self.x_test, self.y_test = digits_images("test", 16)
        self.classifier = train_classifier(self.x_train, self.y_train, 10, seed=0)
        orient_x = np.concatenate([d4(self.x_train, e) for e in range(8)])
        orient_y = np.repeat(np.arange(8, dtype=np.int32), len(self.x_train))
        self.orientation = train_classifier(orient_x, orient_y, 8, seed=1, epochs=8)
        self.real_acts = self.classifier.activations(self.x_train)

    def leaks(self, images) -> dict:
        pred = np.argmax(self.orientation.logits(images), axis=1)
        return {"share_read_rotated_or_flipped": float(np.mean(pred != 0)),
                "share_inverted_background": float(np.mean(images.mean(axis=(1, 2, 3)) > 0.0))}

    def reference(self) -> dict:
        return {"classifier_heldout_accuracy": self.classifier.accuracy(self.x_test, self.y_test),
                "orientation_heldout_accuracy": float(np.mean(np.concatenate(
                    [np.argmax(self.orientation.logits(d4(self.x_test, e)), 1) == e for e in range(8)]))),
                "real_heldout": self.leaks(self.x_test)}

    def score(self, images, labels) -> dict:
        from tf_biggan.evaluation.metrics import frechet_distance

        return {"fid_classifier_features": frechet_distance(self.classifier.activations(images), self.real_acts),
                "sample_class_accuracy": self.classifier.accuracy(images, labels), **self.leaks(images)}


def load_trainer(args, kind: str):
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(os.path.join(args.out, kind, "hparams.yaml"))
    return hp, GANTrainer(hp, model_dir=os.path.join(args.out, kind), verbose=False)


def nearest_distance(a, b) -> np.ndarray:
    """Per image of a: the pixel-space L2 distance to the nearest image of b, whatever its class."""
    from tf_biggan.evaluation.qualitative import nearest_neighbors

    any_class = lambda x: np.zeros(len(x), np.int32)  # noqa: E731  (one class: nearest of all)
    return nearest_neighbors(a, any_class(a), [(b, any_class(b))], k=1)["distances"][:, 0]


def overfitting(trainer, judge: Judge, per_class: int, images, labels) -> dict:
    """D on its training digits vs unseen training-split digits (same count per class) and on the samples:
    the paper's validation heuristic r_v = (E[D(seen)] - E[D(unseen)]) / (E[D(seen)] - E[D(G)]) beside
    r_t = E[sign(D(seen))] (seed 003, Section 3); and whether G copies its training digits: samples'
    nearest-neighbour distance to the seen vs to unseen digits."""
    seen = first_per_class(judge.y_train, per_class)  # the training subset, as data.max_per_class
    unseen = ~seen & first_per_class(judge.y_train, 2 * per_class)
    d = lambda x, y: trainer.d((tf.constant(x), tf.constant(y)), training=False).numpy().ravel()  # noqa: E731
    d_seen, d_unseen = d(judge.x_train[seen], judge.y_train[seen]), d(judge.x_train[unseen], judge.y_train[unseen])
    d_fake = d(images, labels)
    return {"d_seen_mean": float(d_seen.mean()), "d_unseen_mean": float(d_unseen.mean()),
            "d_fake_mean": float(d_fake.mean()),
            "r_v": float((d_seen.mean() - d_unseen.mean()) / (d_seen.mean() - d_fake.mean())),
            "d_seen_sign": float(np.sign(d_seen).mean()), "d_unseen_sign": float(np.sign(d_unseen).mean()),
            "nn_to_seen": float(nearest_distance(images, judge.x_train[seen]).mean()),
            "nn_to_unseen": float(nearest_distance(images, judge.x_train[unseen]).mean()),
            "nn_real_unseen_to_seen": float(nearest_distance(judge.x_train[unseen], judge.x_train[seen]).mean())}


def trajectory(model_dir: str, bucket: int = 500) -> dict:
    """From MODEL_DIR/train/scalars.jsonl: per `bucket` steps, the mean of the logged E[sign(D(real))]
    (ADA's r_t, logged every train.log_every steps) and p at the bucket's end."""
    rows = {}
    with open(os.path.join(model_dir, "train", "scalars.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["tag"] in ("losses/ada_sign_real", "augment/p", "augment/r_v"):
                rows.setdefault(r["tag"], {})[r["step"]] = r["value"]
    out = {}
    for tag, name in (("losses/ada_sign_real", "r_t"), ("augment/p", "p"), ("augment/r_v", "r_v_heuristic")):
        by = {}
        for step, v in sorted(rows.get(tag, {}).items()):
            by.setdefault((step - 1) // bucket, []).append(v)
        out[name] = {(b + 1) * bucket: round(float(v[-1] if name == "p" else np.mean(v)), 3)
                     for b, v in sorted(by.items())}
    return out


def evaluate(args, kinds=KINDS, every_checkpoint: bool = False) -> dict:
    """Scores the last checkpoint of each arm (every kept checkpoint with every_checkpoint)."""
    from tf_biggan.images import tile

    judge = Judge()
    out = judge.reference()
    for kind in kinds:
        hp, trainer = load_trainer(args, kind)
        paths = tf.train.get_checkpoint_state(os.path.join(args.out, kind)).all_model_checkpoint_paths
        rows = {}
        for path in (paths if every_checkpoint else paths[-1:]):
            trainer.run_checkpoint.restore(path)
            step = int(trainer.step.numpy())
            images, labels = class_samples(trainer)  # 1,000: 100 per digit
            rows[step] = {**judge.score(images, labels), **overfitting(trainer, judge, hp.data.max_per_class, images, labels),
                          "p": float(trainer.augment.p.numpy())}
            print(f"[bench] {kind} step {step}: " + " ".join(f"{k}={v:.3f}" for k, v in rows[step].items()), flush=True)
        last = rows[max(rows)]
        with open(os.path.join(args.out, kind, "train_report.json")) as f:
            report = json.load(f)
        out[kind] = {**last, "final_p": last["p"], "train_seconds": report["seconds"], "steps": report["step"],
                     **trajectory(os.path.join(args.out, kind))}
        if every_checkpoint:
            out[kind]["by_step"] = rows
        grid = tile(images.reshape(10, 100, 16, 16, 3)[:, :10])
        tf.io.write_file(os.path.join(args.out, f"samples_{kind}.png"), tf.io.encode_png(grid))
    return out


def cost(args) -> dict:
    from tf_biggan import seeds
    from tf_biggan.augment.draws import Draws
    from tf_biggan.augment.transforms import ada_augment

    out = {}
    for size, batch in ((16, 64), (128, 16)):
        x = tf.random.uniform((batch, size, size, 3), -1, 1)
        for p in (1.0, 0.2):
            fn = tf.function(lambda im, c, p=p: ada_augment(im, p, Draws(seeds.key("augment", 0, c), batch), "bgc"))
            fn(x, tf.constant(0, tf.int64)).numpy()
            reps = max(3, int(2048 // (batch * size / 16)))
            t0 = time.perf_counter()
            for i in range(reps):
                fn(x, tf.constant(i + 1, tf.int64)).numpy()
            out[f"{size}px_p{p}_images_per_sec"] = reps * batch / (time.perf_counter() - t0)
            print(f"[bench] ada_augment bgc {size}px p={p}: {out[f'{size}px_p{p}_images_per_sec']:.0f} img/s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--phase", default="all", choices=("all", "train", "evaluate", "diagnose", "cost"))
    parser.add_argument("--kind", default=None, choices=KINDS)
    parser.add_argument("--p", type=float, default=0.2, help="augment.p of the fixed-p control arm")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--speed_kimg", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save_every", type=int, default=1000, help="checkpoint period: each checkpoint is scored")
    parser.add_argument("--pipeline", default="bgc")
    parser.add_argument("--extra", default="", help="more hparams overrides for both arms")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.phase == "train":
        print(json.dumps(train(args, args.kind), indent=2))
        return 0
    results = {}
    if args.phase == "all":
        # One run after the other, each in its own process (same steps and seeds).
        for k in KINDS:
            cmd = [sys.executable, __file__, "--phase", "train", "--kind", k, "--out", args.out, "--steps",
                   str(args.steps), "--per_class", str(args.per_class), "--speed_kimg", str(args.speed_kimg),
                   "--seed", str(args.seed), "--save_every", str(args.save_every), "--pipeline", args.pipeline,
                   "--extra", args.extra, "--p", str(args.p)]
            if subprocess.call(cmd):
                return 1
    if args.phase == "evaluate":
        results["limited_data"] = evaluate(args, [args.kind] if args.kind else KINDS)
    if args.phase in ("all", "diagnose"):
        results["limited_data"] = evaluate(args, [args.kind] if args.kind else KINDS, every_checkpoint=True)
    if args.phase in ("all", "cost"):
        results["cost"] = cost(args)
    import platform
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}"
    print(json.dumps(results, indent=2, sort_keys=True))
    name = f"bench_augment_{args.phase}" + (f"_{args.kind}" if args.kind else "")
    write_json(os.path.join(args.out, f"{name}.json"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
