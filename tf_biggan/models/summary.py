"""`tf-biggan --mode=summary`: per-block output shapes and parameters of G and D.

Parameters are trainable weights only: spectral-norm `u` vectors and BN statistics are state, not
parameters, as in the paper's counts (Table 1, Appendix B). The LAST line of stdout is one JSON
object {"g_params": ..., "d_params": ..., ...} for scripts.
"""

from __future__ import annotations

import json

import numpy as np


def _params(layers) -> int:
    if not isinstance(layers, (list, tuple)):
        layers = [layers]
    return int(sum(np.prod(w.shape) for layer in layers for w in layer.trainable_weights))


def model_table(model, inputs, title: str):
    """Runs one inference call and returns (rows, total): rows are (name, shape, params)."""
    trace = []
    model.forward(inputs, training=False, trace=trace)
    rows = [(name, tuple(shape), _params(layer)) for name, shape, layer in trace]
    total = _params(model)
    return rows, total


def format_table(title: str, rows, total: int) -> str:
    lines = [f"{title}", f"  {'layer':<34}{'output shape':<24}{'parameters':>14}"]
    for name, shape, params in rows:
        lines.append(f"  {name:<34}{str(shape):<24}{params:>14,}")
    lines.append(f"  {'total':<58}{total:>14,}")
    return "\n".join(lines)


def summarize(hp):
    """Builds G and D of `hp` and returns (text, report dict)."""
    import tensorflow as tf

    from tf_biggan.models import build_models

    g, d = build_models(hp)
    res = hp.model.resolution
    g_rows, g_total = model_table(g, (tf.zeros((1, hp.model.dim_z)), tf.zeros((1,), tf.int32)), "G")
    d_rows, d_total = model_table(d, (tf.zeros((1, res, res, 3)), tf.zeros((1,), tf.int32)), "D")
    text = "\n\n".join([
        f"{hp.model.family} {res}x{res}, ch={hp.model.ch}, dim_z={hp.model.dim_z}, classes={hp.data.num_classes}"
        f" ({hp.source})",
        format_table("Generator", g_rows, g_total),
        format_table("Discriminator", d_rows, d_total),
    ])
    report = {"g_params": g_total, "d_params": d_total, "total_params": g_total + d_total,
              "family": hp.model.family, "resolution": res, "ch": hp.model.ch}
    return text, report


def run_summary(hp, request=None) -> None:
    """`--mode=summary`: the table and a JSON line of the counts (`request`: a `requests.SummaryRequest`,
    which asks for nothing more)."""
    text, report = summarize(hp)
    print(text)
    print(json.dumps(report))
