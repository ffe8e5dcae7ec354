"""Every exact parameter count the README lists, asserted in the ordinary test run.

The reference is a closed form written from the paper's tables (Appendix B: Table 4 for BigGAN 128,
Table 7 for BigGAN-deep 128; the 16 px digits layout of models/arch.py), layer by layer, as a
function of the width multiplier `ch`. Every weight is a kernel whose two sides are each a multiple
of ch or a constant (z, the embedding, the classes, RGB), or a bias of one such side, so a network's
count is a polynomial of degree 2 in ch; so is the closed form. Two polynomials of degree 2 that
agree at three values of ch agree at every ch: the fast test builds the networks at ch = 8, 16, 24
(seconds) and compares, which proves the closed form at the full widths (ch = 96, 128) without
building 160M parameters. The slow test builds the full-width networks once as well.

Parameters are trainable weights (spectral-norm `u` vectors and BN statistics are state).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tf_biggan.config import load_hparams
from tf_biggan.layers.orthogonal_init import placeholder_kernels
from tf_biggan.models import build_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (hparams file, overrides, G, D): the README's table of configurations, and its note that
# `model.hub_output_conv: true` gives G 50,388,609 parameters at 128 px.
README_COUNTS = [
    ("biggan_128", "", 70_433_988, 87_982_370),  # Table 1 row 8: 70.4M / 88.0M
    ("biggan_128", "model.ch=64", 31_978_628, 39_448_258),  # Table 1 last row: 71.3M together
    ("biggan_128", "model.shared_embedding=false,model.skip_z=false", 85_359_556, 87_982_370),  # row 5
    ("biggan_128", "model.skip_z=false", 72_595_908, 87_982_370),  # Table 1 row 6
    ("biggan_deep_128", "", 50_244_484, 34_590_210),  # Appendix B: 50.4M / 34.6M
    ("biggan_deep_128", "model.hub_output_conv=true", 50_388_609, 34_590_210),
    ("digits", "", 89_955, 48_673),  # the embedded default
]

# Block widths as multiples of ch, from the tables. G: (in, out) of each up stage from 4x4. BigGAN D:
# (in, out, downsample), 0 = the RGB image, one width step narrower than the table lines (the reading
# that gives the paper's 88.0M, models/arch.py); BigGAN-deep D: (in, out) of each down stage.
G_STAGES = {128: [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)], 16: [(4, 4), (4, 4)]}
D_BIGGAN = {128: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, False)],
            16: [(0, 4, True), (4, 4, True), (4, 4, False)]}
D_DEEP = {128: [(1, 2), (2, 4), (4, 8), (8, 16), (16, 16)]}
ATTENTION = {128: 64, 16: 0}  # G and D, Tables 4 and 7; none at 16 px


def conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def attention(c):
    """SA-GAN's block: bias-free 1x1 theta, phi (C -> C/8), g (C -> C/2), o (C/2 -> C), and gamma."""
    return 2 * conv(1, c, c // 8, False) + conv(1, c, c // 2, False) + conv(1, c // 2, c, False) + 1


def cbn(c, cond):
    """Conditional BN: bias-free gain and bias projections of the conditioning vector."""
    return 2 * cond * c


def generator_params(m, classes: int) -> int:
    ch, res, deep = m.ch, m.resolution, m.family == "biggan_deep"
    stages = G_STAGES[res]
    params = classes * m.shared_dim if m.shared_embedding else 0
    base = m.shared_dim if m.shared_embedding else classes  # the one-hot class without the embedding
    bottom = 16 * stages[0][0] * ch  # 4 x 4 x width
    if deep:  # z and the embedding feed the linear layer and every block (Table 7)
        cond = linear_in = m.dim_z + base
    elif m.skip_z:  # one z chunk for the linear layer, one per block (Appendix B)
        chunk = m.dim_z // (len(stages) + 1)
        linear_in, cond = chunk, chunk + base
    else:
        linear_in, cond = m.dim_z, base
    params += linear_in * bottom + bottom
    for i, (a, b) in enumerate(stages):
        c_in, c_out = a * ch, b * ch
        if deep:  # a plain block at the input width, then the up block; bottleneck C_in / 4
            for x, y in ((c_in, c_in), (c_in, c_out)):
                h = x // 4
                params += (cbn(x, cond) + conv(1, x, h) + 2 * (cbn(h, cond) + conv(3, h, h))
                           + cbn(h, cond) + conv(1, h, y))
        else:
            params += (cbn(c_in, cond) + conv(3, c_in, c_out) + cbn(c_out, cond) + conv(3, c_out, c_out)
                       + conv(1, c_in, c_out))  # the shortcut: every block upsamples
        if 4 * 2 ** (i + 1) == ATTENTION[res]:
            params += attention(c_out)
    last = stages[-1][1] * ch
    out = ch if (deep and m.hub_output_conv) else 3  # the official modules' ch -> ch, sliced to RGB
    return params + 2 * last + conv(3, last, out)  # output BN (gamma, beta) and conv


def discriminator_params(m, classes: int) -> int:
    ch, res = m.ch, m.resolution
    params, size = 0, res
    if m.family == "biggan_deep":
        params += conv(3, 3, ch)
        for a, b in D_DEEP[res]:
            size //= 2
            for x, y in ((a * ch, b * ch), (b * ch, b * ch)):
                h = y // 4
                params += conv(1, x, h) + 2 * conv(3, h, h) + conv(1, h, y) + (conv(1, x, y - x) if y > x else 0)
            if size == ATTENTION[res]:
                params += attention(b * ch)
        last = D_DEEP[res][-1][1] * ch
    else:
        for a, b, down in D_BIGGAN[res]:
            c_in, c_out = (a * ch if a else 3), b * ch
            size = size // 2 if down else size
            shortcut = conv(1, c_in, c_out) if down or c_in != c_out else 0  # else the identity
            params += conv(3, c_in, c_out) + conv(3, c_out, c_out) + shortcut
            if size == ATTENTION[res]:
                params += attention(c_out)
        last = D_BIGGAN[res][-1][1] * ch
    return params + conv(1, last, 1) + classes * last  # linear output and projection embedding (no bias)


def closed_form(name: str, overrides: str = ""):
    hp = load_hparams(name, overrides)
    return generator_params(hp.model, hp.data.num_classes), discriminator_params(hp.model, hp.data.num_classes)


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def built(name: str, overrides: str = "", d: bool = True):
    """(G, D or None) counted on the networks themselves. The kernels hold zeros instead of orthogonal
    draws (placeholder_kernels): a count does not depend on the values, and the draws' QR was a third
    of a build's time."""
    with placeholder_kernels():
        g_net, d_net = build_models(load_hparams(name, overrides))
        g_net.build_for_input()
        if not d:
            return _trainable(g_net), None
        d_net.build_for_input()
    return _trainable(g_net), _trainable(d_net)


@pytest.mark.parametrize("name, overrides, g, d", README_COUNTS)
def test_readme_counts_equal_the_closed_form(name, overrides, g, d):
    assert closed_form(name, overrides) == (g, d)


def _documented_counts(path: str, header: str) -> set:
    """Counts written out (70,433,988) in the table under `header` and on lines about parameters."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().splitlines()
    found, in_table = set(), False
    for line in lines:
        if line.startswith("|") and header in line:
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        if in_table or "parameters" in line:
            found.update(int(n.replace(",", "")) for n in re.findall(r"\b\d{1,3}(?:,\d{3})+\b", line))
    return found


@pytest.mark.parametrize("path, header", [("README.md", "G params"), ("docs/results.md", "ours, G / D")])
def test_the_documents_list_exactly_these_counts(path, header):
    """A count changed or added in the README or docs/results.md must be added to README_COUNTS."""
    assert _documented_counts(path, header) == {n for _, _, g, d in README_COUNTS for n in (g, d)}


def test_readme_counts_are_within_one_percent_of_the_papers():
    """Table 1 and Appendix B give millions with one decimal (G / D, or G + D for the ablations)."""
    counts = {(n, o): (g, d) for n, o, g, d in README_COUNTS}
    paper = [("biggan_128", "", 70.4, 88.0), ("biggan_128", "model.ch=64", 71.3, None),
             ("biggan_128", "model.shared_embedding=false,model.skip_z=false", 173.5, None),
             ("biggan_128", "model.skip_z=false", 160.6, None), ("biggan_deep_128", "", 50.4, 34.6)]
    for name, overrides, g_or_total, d in paper:
        g_count, d_count = counts[name, overrides]
        pairs = [(g_count, g_or_total), (d_count, d)] if d else [(g_count + d_count, g_or_total)]
        for ours, theirs in pairs:
            assert abs(ours / 1e6 - theirs) / theirs < 0.01, (name, overrides, ours, theirs)


# Each distinct network of README_COUNTS at reduced widths. The two base networks at three widths:
# equality of the two degree-2 polynomials. The Table 1 ablations and the official output conv change
# G only, and only in the terms the closed form writes out for them: one width checks those terms
# (the slow test checks each at its full width); digits is built as it is (ch 8).
REDUCED = [("biggan_128", "", (8, 16, 24), True), ("biggan_deep_128", "", (8, 16, 24), True),
           ("biggan_128", "model.shared_embedding=false,model.skip_z=false", (8,), False),
           ("biggan_128", "model.skip_z=false", (8,), False),
           ("biggan_deep_128", "model.hub_output_conv=true", (8,), False), ("digits", "", (8,), True)]


@pytest.mark.parametrize("name, overrides, widths, with_d", REDUCED)
def test_closed_form_equals_the_built_networks_at_reduced_widths(name, overrides, widths, with_d):
    for ch in widths:
        both = ",".join(x for x in (overrides, f"model.ch={ch}") if x)
        g, d = closed_form(name, both)
        assert built(name, both, d=with_d) == (g, d if with_d else None), (name, both)


@pytest.mark.slow  # full-width builds, up to 158M parameters: minutes on 2 cores
@pytest.mark.parametrize("name, overrides, g, d", README_COUNTS)
def test_readme_counts_equal_the_full_width_networks(name, overrides, g, d):
    with_d = "model.ch" in overrides or not overrides  # the G-only variants share the base D
    assert built(name, overrides, d=with_d) == (g, d if with_d else None)
