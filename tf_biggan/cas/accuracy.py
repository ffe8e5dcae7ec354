"""Top-k and per-class accuracy of a classifier's logits (the CAS numbers, Ravuri & Vinyals 2019).

Top-k: the true class is among the k largest logits. Ties are broken against the true class
(a logit equal to the true one and listed earlier counts as above it, as tf.math.in_top_k would
otherwise make a constant classifier "right"): a class is in the top k when fewer than k logits
are strictly greater AND fewer than k logits are >= it overall. Per-class top-1 is the accuracy
over the images of each (0-based) class; classes without images are left out.
"""

from __future__ import annotations

from typing import Dict

import numpy as np


class AccuracyCounter:
    """Accumulates batches of (logits [B, C], labels [B]) -> top1, top5, per_class_top1."""

    def __init__(self, num_classes: int, ks=(1, 5)):
        self.num_classes = int(num_classes)
        self.ks = tuple(ks)
        self.hits = {k: 0 for k in self.ks}
        self.total = 0
        self.class_hits = np.zeros(self.num_classes, np.int64)
        self.class_total = np.zeros(self.num_classes, np.int64)

    def update(self, logits, labels) -> None:
        logits = np.asarray(logits, np.float64)
        labels = np.asarray(labels, np.int64)
        true = logits[np.arange(len(labels)), labels][:, None]
        # rank of the true class: logits strictly above it + ties (pessimistic).
        rank = (logits > true).sum(1) + ((logits == true).sum(1) - 1)
        for k in self.ks:
            self.hits[k] += int((rank < k).sum())
        self.total += len(labels)
        top1 = rank < 1
        np.add.at(self.class_hits, labels, top1.astype(np.int64))
        np.add.at(self.class_total, labels, 1)

    def result(self) -> Dict:
        out = {f"top{k}": self.hits[k] / max(self.total, 1) for k in self.ks}
        out["per_class_top1"] = {str(c): float(self.class_hits[c] / self.class_total[c])
                                 for c in range(self.num_classes) if self.class_total[c]}
        out["eval_images"] = int(self.total)
        return out


def accuracy(logits, labels, num_classes: int, ks=(1, 5)) -> Dict:
    counter = AccuracyCounter(num_classes, ks)
    counter.update(logits, labels)
    return counter.result()
