"""Benchmark of tf_biggan.augment (issue 11): ADA on limited data, leaks, and the augmentation's cost.

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

FIFTH PASS: longer runs, the paper's validation heuristic r_v at the paper's target 0.6 (ada_rv), so
that D has time to overfit and p time to act. Runs at commit 703dca8 (AMD EPYC family 25 model 17, 2
cores, 4 runs at a time); bgc, speed_kimg 10, 1 D step; FID on classifier features at every checkpoint;
last3 = mean of the last 3; acc and rot/flip at the last step (real held-out digits: 11.8%); r_v and nn
(samples' nearest seen / unseen digit) at the last checkpoint on unaugmented digits; p = mean over the
first / second half (max):
  setting           arm     seed  FID by checkpoint                                         last3   acc    rot/flip  r_v   nn          p
  10/class 8k (1k)  none     0    23.23 14.60 18.56 19.32 21.71 18.97 25.21 19.20           21.13  100.0%   1.0%    0.64  5.48 / 9.84  -
  10/class 8k (1k)  ada_rv   0    19.89 11.56 16.79 15.46 19.33 17.63 17.51 22.74           19.29   99.8%   0.9%    0.54  6.61 / 9.99  0.03 / 0.12 (0.29)
  10/class 8k (1k)  none     1    28.20 13.95 16.29 15.55 15.69 17.51 15.02 14.96           15.83  100.0%  10.0%    1.29  4.57 / 10.01 -
  10/class 8k (1k)  ada_rv   1    22.56 10.58 12.61 16.20 16.36 15.53 16.57 12.10           14.74   99.4%  22.9%    0.68  6.87 / 10.59 0.06 / 0.29 (0.40)
  50/class 12k (2k) none     0     4.31  3.97  2.72  3.54  2.80  2.58                        2.97   98.4%  12.6%    1.19  6.70 / 8.85  -
  50/class 12k (2k) ada_rv   0     6.85  5.53  4.17  4.47  3.04  3.15                        3.55   98.8%  12.0%    0.54  7.70 / 9.31  0.04 / 0.18 (0.32)
  50/class 12k (2k) none     1     7.32  3.02  2.40  2.06  2.38  2.46                        2.30   99.1%   8.8%    1.25  6.77 / 9.06  -
  50/class 12k (2k) ada_rv   1     4.40  3.69  3.52  1.92  2.24  3.45                        2.54   98.8%  15.4%    0.46  7.61 / 9.27  0.05 / 0.24 (0.38)
Class accuracy by checkpoint: 10/class none 100% from 3k steps on (both seeds; 99.8-100.0), ada_rv 96.6-100%;
50/class none 98.3-99.8%, ada_rv 97.7-99.4%.
What r_v does: what the paper says it should. Without augmentation D's overfitting grows to r_v 1.2-1.3
(D scores unseen real digits BELOW G's samples) at 50/class and 0.6-1.3 at 10/class; with ada_rv p rises to
0.1-0.4 and holds r_v at 0.46-0.68, and G copies less (nearest seen digit 6.6-7.7 vs 4.6-6.8).
Why the claim still fails, and why it cannot be shown with this model and data on 2 CPU cores:
  - The no-augmentation G is not harmed by D's overfitting within any budget tried (1.5k-12k steps). At
    50/class its FID keeps falling to the last checkpoint (2.58, 2.46) while r_v climbs to 1.2: there is no
    deterioration for augmentation to prevent, and augmentation costs G learning speed (ada_rv is behind
    at 2k-6k on seed 0 and ends 0.58 / 0.24 higher on the last-3 mean). At 10/class G memorises instead:
    FID wobbles between 14 and 25 from 2k steps on, and ada_rv's last-3 mean is lower on both seeds
    (-1.84, -1.09), within the 1-6 point swing between neighbouring checkpoints.
  - "Higher class accuracy" has no room: a G that copies its 10 digits per class is read right 100% of the
    time (7 of 8 checkpoints on both seeds), and at 50/class the no-augmentation arm is at 98.4-99.1%
    (1,000 samples: +-0.4 points) and stays within 1.5 points of its best all run long. ADA moves samples
    away from the training digits, so it can lower this number, not raise it, unless the baseline
    collapses, which the tiny G (ch 8, 16 px) did not do in any run of the five passes.
  - Leak judge: at 10/class seed 1 and 50/class seed 1 (p up to 0.38-0.40), 22.9% and 15.4% of ada_rv's
    samples read as rotated or flipped, above the real digits' 11.8%; the other two are at or under it.
  - Across the five passes, the only arm that lowered FID on both seeds at equal class accuracy and no
    leak is the fixed p = 0.2 control at 10/class (second pass).
ada_augment bgc cost on this machine, alone: 16 px batch 64: 1,801 img/s at p = 1, 1,755 at p = 0.2;
128 px batch 16: 42 img/s at p = 1, 52 at p = 0.2.

FOURTH PASS: r_t with a target under the level the hinge loss gives it (--extra augment.target=0.4, so
that p engages at all; the second pass's r_t sat at 0.50-0.53 with p at 0). Runs at commit 8db6666 on the
code after issue 14 (the none arms were rerun: that work changed the step's rounding). Intel Xeon (model
207), 2 cores, shared with the test suite; 10/class, 4k steps, 1 D step, bgc, speed_kimg 10; FID on
classifier features at steps 1k / 2k / 3k / 4k; acc and rot/flip at 4k (real held-out digits: 11.8%):
  arm              seed  FID 1k / 2k / 3k / 4k       last3   acc 4k  rot/flip 4k  p (mean, 1st / 2nd half)  nn seen
  none               0   23.21 / 14.12 / 17.90 / 23.90  18.64  100.0%   0.9%        -                        6.30
  ada, target 0.4    0   35.08 / 17.58 / 14.07 / 14.12  15.25  100.0%   0.9%        0.18 / 0.03 (max 0.38)   7.20
  none               1   26.72 / 14.17 / 15.91 / 12.16  14.08   99.9%   8.7%        -                        6.62
  ada, target 0.4    1   42.36 / 21.54 / 15.11 / 18.31  18.32  100.0%   0.6%        0.20 / 0.01 (max 0.50)   5.94
On seed 0 this is the paper's picture: without augmentation FID bottoms out at 2k steps and climbs back to
23.9 as G copies its 10 digits per class (nearest seen digit 6.3 vs 9.9 for a real unseen one), and ADA ends
at 14.1. On seed 1 the none arm does not climb back (12.2) and ADA ends worse (18.3). Same diagnosis as the
third pass, now with r_t: D is confident on everything early, so r_t is high in the first ~2,000 steps and
p sits at 0.1-0.5 while nothing is memorised yet (G is slowed: class accuracy 13% / 53% at 1k / 2k vs 71% /
100% without); by the second half, when memorisation starts, r_t has fallen under 0.4 and p is ~0.01. The
heuristic acts at the wrong time in this budget; the fixed-p control of the second pass (p = 0.2 all run
long) lowered FID on both seeds. Class accuracy is at the ceiling in every arm (99.9-100%), so "higher"
cannot show at 10/class. No leak: 0.6-0.9% of ADA's samples read as rotated or flipped, under the real
digits' 11.8%.

THIRD PASS: the validation heuristic r_v (augment.heuristic=rv, target 0.6 as r_t's), runs at commit
3950163 (AMD EPYC, 2 cores shared with the lead's benchmarks; columns as in the second pass below;
last3 = mean FID of the last 3 checkpoints, because one checkpoint's FID moves by 1-4 between
checkpoints; rv(train) = mean of the logged r_v (each the last interval's) over the run's second
half; rv(ckpt) = the checkpoint's r_v on unaugmented seen / unseen digits; real held-out digits read
rotated or flipped in 11.8%; a real unseen digit sits at 10.24 (20/class) / 9.9 (10/class) from the
nearest seen one):
  setting               arm    seed    FID  last3     acc rot/flip      p rv(train) rv(ckpt)  Dgap  nn seen/unseen
  20/class 6k 2 D steps none      0  12.25  12.52   99.2%    11.1%      -         -     1.18  2.07  6.03 / 9.54
  20/class 6k 2 D steps ada_rv    0  10.99  12.63   98.8%    15.1%   0.15      0.47     0.53  0.60  7.04 / 9.91
  20/class 6k 2 D steps none      1  11.60  13.07   99.3%    11.0%      -         -     1.14  1.98  6.07 / 9.53
  20/class 6k 2 D steps ada_rv    1  12.02  12.04   99.1%    13.4%   0.15      0.51     0.80  0.89  7.14 / 10.05
  10/class 4k 1 D step  none      0  18.63  18.47  100.0%     0.0%      -         -     0.60  1.08  6.00 / 9.44
  10/class 4k 1 D step  ada_rv    0  17.64  15.98   99.9%    11.4%   0.00      0.50     0.36  0.61  6.63 / 10.10
  10/class 4k 1 D step  none      1  14.00  13.50   99.8%     6.0%      -         -     1.03  1.53  5.74 / 10.04
  10/class 4k 1 D step  ada_rv    1  15.78  12.75   96.1%     4.9%   0.15      0.57     0.65  0.78  6.50 / 10.23
  (the none arms, rerun at 3950163, reproduce the second pass's numbers to the digit: the runs are
  deterministic, so each ada_rv - none difference is the heuristic's, on that seed's trajectory.)
  20/class 6k 2 D steps ada (r_t) 0: FID 13.58 (last3 11.87), 99.5%, rot/flip 11.8%, final p 0.00, Dgap
    1.05, rv(ckpt) 0.63, nn 6.38 / 9.46. r_t reads 0.5-0.78 in the first 2,500 steps, when D is confident
    on everything and nothing is memorised yet: p is 0.15 at step 500 (up to 0.38), which slows G
    (class accuracy 10% / 35% at 1k / 2k steps vs 72% / 99.6% for none), then decays to 0 by step 3,000,
    just when D starts to overfit: the opposite timing of r_v's. Seed 1 did not fit in the session.
What r_v does: it reads the overfitting that r_t missed. With 2 D steps (the paper's recipe) at 20 digits
per class, r_t starts at 0.75-0.95 (D confident on everything early, when nothing is memorised yet)
and falls to 0.2 ... -0.3 by the end (second-half mean -0.01 / 0.14: r_t would hold p at 0) while D's
seen-unseen gap GROWS (none: Dgap 0.5 at 2k -> 2.0 at 6k, checkpoint r_v 0.35 -> 1.18, i.e. D ends
scoring unseen real digits BELOW G's samples). r_v instead starts at 0.2 and climbs to the 0.6
target as the gap opens; p stays ~0 for the first ~3,000 steps and then moves between 0.1 and
0.49 / 0.38 (the per-interval r_v is noisy: 128 images of each kind), and the controller keeps D
where the target says: Dgap 0.60 / 0.89 vs 2.07 / 1.98, checkpoint r_v 0.53 / 0.80 vs 1.18 / 1.14,
and G copies less (nearest seen digit 7.0-7.1 vs 6.0-6.1 for none).
The claim ("lower FID AND higher class accuracy, no leak", both seeds) is still NOT shown:
  - FID, last checkpoint: ada_rv - none flips sign between seeds in both regimes (20/class: -1.26, +0.42;
    10/class: -0.99, +1.78). Mean of the last 3 checkpoints: lower with ada_rv on 3 of 4 pairs (10/class
    -2.49 and -0.75; 20/class -1.03 on seed 1) and +0.11 on the 4th, i.e. a tendency, no clean sign.
    p engages only once r_v reaches 0.6 (the second half of the 20/class runs; briefly at 10/class,
    where the training-time r_v sits at 0.5-0.6), so G gets a few thousand augmented steps at p ~0.15.
  - Class accuracy saturates for every arm (96.1-100%: the no-aug G memorises its 10-20 digits per class,
    and copies are classified right), so "higher" has nothing to show; ada_rv is 0.1-3.7 points LOWER
    on all 4 pairs (the G that copies less draws some digits the classifier misreads).
  - Leak judge: at 10/class the ada_rv samples read as rotated or flipped in 11.4% / 4.9% (<= 11.8% for
    real held-out digits: no leak); at 20/class in 15.1% / 13.4% against 11.0-11.1% for none (1,000
    samples: +-1.0 point standard error), with p up to 0.49. Either a mild leak of the blit group or less
    typical digits (further from the training set) read as rotated more often: this judge cannot tell
    them apart; by the issue's criterion the 20/class arms fail it.
  - Cause: in this budget (G gets 4-6k steps of batch 32) D overfits slowly enough that the heuristic
    reaches its target only in the second half of the run; the paper's runs are 100x longer, where p
    has time to settle and G to benefit. Tuning target or speed to engage p earlier is not done (the
    paper fixes 0.6 for r_t; it does not state r_v's default).

SECOND PASS (rt), measured (AMD EPYC, 2 cores shared with two other jobs; seed = train.seed; bgc, speed_kimg 10;
FID on classifier features, lower is better; acc = sample class accuracy; rot/flip = share read as a
rotated or flipped digit, real held-out digits: 11.8%; r_t = mean of the logged E[sign(D(real))];
Dgap = E[D(seen digits)] - E[D(unseen digits)]; nn = samples' nearest-neighbour distance to the seen /
unseen digits, a real unseen digit's to the seen ones: 9.9 at 10/class, 9.1 at 50/class):
  setting                 seed  FID    acc     rot/flip  final p  r_t   Dgap  r_v   nn seen/unseen
  10/class 4k none         0   18.63  100.0%   0.0%     -        -     1.08  0.60  6.00 / 9.44
  10/class 4k ada          0   19.40   98.5%   6.6%     0.00     0.50  0.78  0.43  6.13 / 9.87
  10/class 4k fixed 0.2    0   12.67  100.0%   3.9%     0.20     -     0.28  0.38  7.64 / 10.24
  10/class 4k none         1   14.00   99.8%   6.0%     -        -     1.53  1.03  5.74 / 10.04
  10/class 4k ada          1   12.40  100.0%   4.7%     0.00     0.53  1.17  0.78  6.15 / 10.19
  10/class 4k fixed 0.2    1   12.53   99.5%   8.2%     0.20     -     0.26  0.27  8.04 / 10.88
  50/class 6k none         0    3.03   98.3%   9.8%     -        -     0.55  0.72  7.25 / 8.94
  50/class 6k ada          0    2.64   98.3%   9.0%     0.00     0.31  0.57  0.63  7.42 / 9.05
  50/class 6k fixed 0.4    0   17.18   53.3%  34.2%     0.40     -     0.04   -    10.74 / 11.34
  10/class 4k ada, 2 D steps (the paper's) 0: 15.61, 100.0%, 2.2%, final p 0.03 (held at ~0.1 for
    steps 500-2,500), logged r_t 0.65, Dgap 0.93, r_v 0.43, nn 6.06 / 9.96: a stronger D lifts r_t to
    the target and p engages a little, G still copies; its none arm did not fit in the session.
Why ADA does not deliver the claim here (the --phase diagnose scores every checkpoint):
  - D does overfit: it scores its training digits above unseen real digits by 0.3-1.2 logits, and the
    paper's validation heuristic r_v = (D(seen) - D(unseen)) / (D(seen) - D(G)) grows steadily
    (50/class: 0.21, 0.27, 0.37, 0.41, 0.61, 0.72 at steps 1k-6k). At 10/class G memorises: its samples
    sit at distance 6.0 from the nearest training digit against 9.9 for a real unseen digit, which is
    what makes its class accuracy 100%.
  - r_t = E[sign(D(real))] does not see it: with the hinge loss (D lr 2x G lr, beta1 = 0) D's output
    level for ALL reals swings from step to step (the logged per-step sign goes from -0.9 to +1.0;
    D(seen) at the checkpoints -0.34 ... +1.37) while the seen-unseen gap stays, so sign(D(real)) reads
    the level, not the overfitting. Its mean sits at 0.3-0.5, under the 0.6 target: p rises to ~0.2 in
    the first 100 steps (D is confident early) and then falls to 0 for good, so the ada arm is the none
    arm with another random trajectory and the differences are seed noise: ada vs none flips sign
    between seeds (FID 19.40 vs 18.63 on seed 0, 12.40 vs 14.00 on seed 1).
  - Augmentation itself does what the paper says when p is where it should be: at 10/class a fixed
    p = 0.2 lowers FID on both seeds (12.67 vs 18.63, 12.53 vs 14.00), stops the copying (nn to seen
    7.6-8.0 vs 5.7-6.0), shrinks D's gap (0.26-0.28 vs 1.08-1.53), leaks nothing (rot/flip 3.9%, 8.2%
    <= 11.8%), and keeps class accuracy at the memorising G's (100.0 vs 100.0%, 99.5 vs 99.8%).
    Too much (p = 0.4 at 50/class, where D overfits mildly) slows this tiny G so much that 6,000
    steps are not enough (FID 17 vs 3).
  - "Higher class accuracy" cannot be shown against a memorising G at 10/class: copying the training
    digits gives 100%.
ada_augment bgc cost, two runs (one at load 0.5, one beside a training job): 16 px batch 64:
  3,040-3,140 img/s at p = 1, 3,180-3,600 at p = 0.2; 128 px batch 16: 47-72 img/s at p = 1, 54-85 at
  p = 0.2. Training at 16 px ran at ~470 img/s without augmentation, ~290 with ADA (3 augmented batches
  per step) even while p sat at 0; the step now skips the pipeline at p = 0 (ADA at p = 0: 518-644 img/s
  vs 578-624 without augmentation, alternating runs at load ~3).

Run:  python benchmarks/bench_augment.py --out DIR [--steps 4000] [--per_class 10] [--seed 0]
      [--extra train.disc_steps=2]  (the third pass: --per_class 20 --steps 6000 --extra train.disc_steps=2)
      (the fifth pass, per seed S: --phase train --kind none|ada_rv --seed S --steps 8000 --per_class 10,
       and --steps 12000 --save_every 2000 --per_class 50; then --phase diagnose --kind none / ada_rv)
      (the fourth pass, per seed S: --phase train --kind none --seed S, then --kind ada --seed S
       --extra augment.target=0.4, then --phase diagnose --kind none / ada)
      (phases: --phase train --kind none|ada|ada_rv|fixed; --phase evaluate (last checkpoints);
       --phase diagnose [--kind K] (every checkpoint); --phase cost; default all: train none, ada, ada_rv
       and the fixed-p control one after the other, diagnose them, cost)
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

from bench_train import digits_images  # noqa: E402  (the real digits in [-1, 1], one loader)
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


def samples(hp, trainer):
    """1,000 EMA-G samples, 100 per class, after standing statistics (fixed latents)."""
    from tf_biggan.sampling.standing_stats import accumulate_standing_stats

    ev = hp.eval
    accumulate_standing_stats(trainer.ema_g, num_passes=ev.standing_stats_passes, batch_size=ev.standing_stats_batch,
                              seed=12345)
    labels = np.repeat(np.arange(10, dtype=np.int32), 100)
    z = tf.random.stateless_normal((len(labels), hp.model.dim_z), seed=(2024, 1))
    images = np.concatenate([trainer.ema_g((z[i:i + 100], labels[i:i + 100]), training=False).numpy()
                             for i in range(0, len(labels), 100)])
    return images, labels


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
            images, labels = samples(hp, trainer)
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
    from tf_biggan.augment.pipeline import ada_augment

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
