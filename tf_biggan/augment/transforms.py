"""The ADA augmentation pipeline (Karras et al., seed 003; the non-leaking conditions of Appendix C).

Every image D sees goes through `ada_augment(images, p, draws, pipeline)`. Each transform is applied
to each sample independently with probability p x its multiplier (all multipliers are 1 in the
named pipelines), with the parameter distributions of the reference implementation:

  blit   x-flip; 90-degree rotations (uniform over the 4); integer translation, uniform up to 0.125
         of the size
  geom   isotropic scaling (log2 std 0.2); arbitrary rotation (uniform up to a full turn), applied
         twice around the anisotropic scaling, each with probability 1 - sqrt(1 - p) so that "either"
         has probability p; anisotropic scaling (log2 std 0.2); fractional translation (std 0.125)
  color  brightness (std 0.2); contrast (log2 std 0.5); luma flip; hue rotation (up to a full turn);
         saturation (log2 std 1)
  noise / cutout (pipeline `bgcnc`): additive RGB noise (std |N(0, 0.1)|), a cutout square of half
  the size

Why this cannot leak (Appendix C.4): compact groups (flip, rotations, luma flip, hue) pick their
elements uniformly but only with probability p < 1, so the identity is more likely than any other
element and the DFT of the mixture has no zero; non-compact ones use normal / log-normal parameters;
cutout is a projection that keeps the identity with probability 1 - p > 0. C.5.1: the condition
number is 1 / (1 - p), so p is capped well below 1 (augment.p_max, controller.py).

Geometric transforms compose into ONE inverse affine matrix per sample, applied once (C.5.2,
resample.py); colour transforms compose into one 4x4 matrix. Samples whose matrix is the identity
are passed through untouched, so p = 0 is the identity bit for bit. All ops are differentiable in
the images (tested), so G receives gradients through augmented fakes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import tensorflow as tf

from tf_biggan.augment.resample import affine_resample
# The named pipelines and their parameters live apart, so that a config is checked without TF.
from tf_biggan.augment.spec import (COLOR, CORRUPTION, GEOMETRIC, PIPELINES, TRANSFORMS, AdaSpec,  # noqa: F401
                                   spec_for)


# ---------------------------------------------------------------- homogeneous matrices, [b, n, n]
def _matrix(rows):
    """rows: nested lists of [b] tensors or python numbers -> [b, n, n] float32."""
    ref = next(x for row in rows for x in row if isinstance(x, tf.Tensor))
    full = [[x if isinstance(x, tf.Tensor) else tf.fill(tf.shape(ref), tf.constant(float(x))) for x in row]
            for row in rows]
    return tf.stack([tf.stack(row, axis=-1) for row in full], axis=-2)


def translate2d(tx, ty):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def scale2d(sx, sy):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def rotate2d(theta):
    return _matrix([[tf.cos(theta), -tf.sin(theta), 0], [tf.sin(theta), tf.cos(theta), 0], [0, 0, 1]])


def translate3d(t):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]])


def scale3d(s):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]])


# The grey axis in [-1, 1] RGB. numpy, not a tf constant: importing this module (hparams validation does)
# must not initialise TensorFlow's context, or MultiWorkerMirroredStrategy cannot configure collectives.
LUMA = np.array([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)


def rotate_luma(theta):
    """Rotation by theta about the grey axis (hue rotation), Rodrigues' formula."""
    v = LUMA
    s, c = tf.sin(theta), tf.cos(theta)
    cc = 1.0 - c
    vx, vy, vz = float(v[0]), float(v[1]), float(v[2])
    return _matrix([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                    [0, 0, 0, 1]])


def _exp2(x):
    return tf.pow(2.0, x)


# ---------------------------------------------------------------- parameters
class _Drawer:
    """What each transform's parameter function shares: the spec, p, the draws, and the gates so far
    ({name: [b] bool, the transform was applied}) and parameters drawn so far ({name: [b] value})."""

    def __init__(self, spec: AdaSpec, p, draws, height: int, width: int):
        self.spec, self.p, self.draws = spec, p, draws
        self.height, self.width = height, width
        self.gates, self.out = {}, {}

    def gate(self, name, probability=None):
        """[b] bool, True with probability p x the transform's multiplier (or `probability`)."""
        self.gates[name] = self.draws.gate(getattr(self.spec, name) * self.p if probability is None
                                           else probability)
        return self.gates[name]

    def rotate_probability(self):
        """Each of the two rotations' probability, so that P(pre or post) = p x the multiplier."""
        return 1.0 - tf.sqrt(tf.clip_by_value(1.0 - self.spec.rotate * self.p, 0.0, 1.0))


# Geometric transforms: each returns its INVERSE matrix [b, 3, 3], composed as G_inv = G_inv @ T_inv
# (the first listed is applied first).
def _xflip(d: _Drawer):
    i = tf.floor(d.draws.uniform() * 2.0)
    i = tf.where(d.gate("xflip"), i, 0.0)
    d.out["xflip"] = i
    return scale2d(1.0 - 2.0 * i, tf.ones_like(i))


def _rotate90(d: _Drawer):
    i = tf.floor(d.draws.uniform() * 4.0)
    i = tf.where(d.gate("rotate90"), i, 0.0)
    d.out["rotate90"] = i
    return rotate2d(math.pi / 2.0 * i)  # inverse of a rotation by -pi/2 i


def _xint(d: _Drawer):
    t = (d.draws.uniform(2) * 2.0 - 1.0) * d.spec.xint_max
    t = tf.where(d.gate("xint")[:, None], t, 0.0)
    tx, ty = tf.round(t[:, 0] * d.width), tf.round(t[:, 1] * d.height)
    d.out["xint"] = tf.stack([tx, ty], axis=1)
    return translate2d(-tx, -ty)


def _scale(d: _Drawer):
    s = tf.where(d.gate("scale"), _exp2(d.draws.normal() * d.spec.scale_std), 1.0)
    d.out["scale"] = s
    return scale2d(1.0 / s, 1.0 / s)


def _rotate_pre(d: _Drawer):
    theta = (d.draws.uniform() * 2.0 - 1.0) * math.pi * d.spec.rotate_max
    theta = tf.where(d.gate("rotate", d.rotate_probability()), theta, 0.0)
    d.out["rotate_pre"] = theta
    return rotate2d(-theta)


def _aniso(d: _Drawer):
    s = tf.where(d.gate("aniso"), _exp2(d.draws.normal() * d.spec.aniso_std), 1.0)
    d.out["aniso"] = s
    return scale2d(1.0 / s, s)


def _rotate_post(d: _Drawer):
    gate_pre = d.gates["rotate"]
    theta = (d.draws.uniform() * 2.0 - 1.0) * math.pi * d.spec.rotate_max
    theta = tf.where(d.gate("rotate", d.rotate_probability()), theta, 0.0)
    d.out["rotate_post"] = theta
    d.gates["rotate"] = tf.logical_or(gate_pre, d.gates["rotate"])  # pre or post: probability p
    return rotate2d(-theta)


def _xfrac(d: _Drawer):
    t = d.draws.normal(2) * d.spec.xfrac_std
    t = tf.where(d.gate("xfrac")[:, None], t, 0.0)
    d.out["xfrac"] = t
    return translate2d(-t[:, 0] * d.width, -t[:, 1] * d.height)


# (multiplier that switches it on, parameter function), in the order the transforms are applied.
_GEOMETRY = (("xflip", _xflip), ("rotate90", _rotate90), ("xint", _xint), ("scale", _scale),
             ("rotate", _rotate_pre), ("aniso", _aniso), ("rotate", _rotate_post), ("xfrac", _xfrac))


# Colour transforms: each returns its FORWARD 4x4 matrix [b, 4, 4], composed as C = T @ C (the first
# listed is applied first).
def _luma_outer():
    return tf.constant(np.outer(LUMA, LUMA), tf.float32)  # v v^T


def _brightness(d: _Drawer):
    b = tf.where(d.gate("brightness"), d.draws.normal() * d.spec.brightness_std, 0.0)
    d.out["brightness"] = b
    return translate3d(b)


def _contrast(d: _Drawer):
    c = tf.where(d.gate("contrast"), _exp2(d.draws.normal() * d.spec.contrast_std), 1.0)
    d.out["contrast"] = c
    return scale3d(c)


def _lumaflip(d: _Drawer):
    i = tf.where(d.gate("lumaflip"), tf.floor(d.draws.uniform() * 2.0), 0.0)
    d.out["lumaflip"] = i
    return tf.eye(4) - 2.0 * _luma_outer() * i[:, None, None]  # Householder reflection


def _hue(d: _Drawer):
    theta = (d.draws.uniform() * 2.0 - 1.0) * math.pi * d.spec.hue_max
    theta = tf.where(d.gate("hue"), theta, 0.0)
    d.out["hue"] = theta
    return rotate_luma(theta)


def _saturation(d: _Drawer):
    s = tf.where(d.gate("saturation"), _exp2(d.draws.normal() * d.spec.saturation_std), 1.0)
    d.out["saturation"] = s
    vv = _luma_outer()
    return vv + (tf.eye(4) - vv) * s[:, None, None]


_COLOR = (("brightness", _brightness), ("contrast", _contrast), ("lumaflip", _lumaflip), ("hue", _hue),
          ("saturation", _saturation))


# Corruptions: parameters only, applied by ada_augment.
def _noise(d: _Drawer):
    d.out["noise"] = tf.where(d.gate("noise"), tf.abs(d.draws.normal()) * d.spec.noise_std, 0.0)


def _cutout(d: _Drawer):
    d.out["cutout"] = tf.where(d.gate("cutout"), d.spec.cutout_size, 0.0)
    d.out["cutout_center"] = d.draws.uniform(2)


_CORRUPTION = (("noise", _noise), ("cutout", _cutout))


def ada_parameters(p, draws, pipeline, height: int, width: int):
    """Per-sample transform parameters: {name: [b] value (identity where not applied)}, plus the
    composed inverse geometric matrix "g_inv" [b, 3, 3], colour matrix "color" [b, 4, 4] and
    "gates" {name: [b] bool, the transform was applied}.

    The draw order is fixed (one stream index per draw), so a transform's numbers do not depend on
    which other transforms are on.
    """
    d = _Drawer(spec_for(pipeline), tf.cast(p, tf.float32), draws, height, width)
    n = draws.local_batch
    g_inv = tf.eye(3, batch_shape=[n])
    for name, parameters in _GEOMETRY:
        if getattr(d.spec, name) > 0:
            g_inv = g_inv @ parameters(d)
    color = tf.eye(4, batch_shape=[n])
    for name, parameters in _COLOR:
        if getattr(d.spec, name) > 0:
            color = parameters(d) @ color
    for name, parameters in _CORRUPTION:
        if getattr(d.spec, name) > 0:
            parameters(d)
    return dict(d.out, g_inv=g_inv, color=color, gates=d.gates)


def _non_identity(matrices):
    """[b] bool: the matrix differs from the identity (exactly: gated-off parameters are exact)."""
    n = matrices.shape[-1]
    return tf.reduce_any(tf.not_equal(matrices, tf.eye(n)), axis=[1, 2])


def _select(active, augmented, images):
    return tf.where(active[:, None, None, None], augmented, images)


def apply_geometry(images, g_inv):
    """Resamples only if some sample moves; samples with g_inv = I are returned untouched."""
    active = _non_identity(g_inv)
    return tf.cond(tf.reduce_any(active), lambda: _select(active, affine_resample(images, g_inv), images),
                   lambda: images)


def apply_color(images, color):
    active = _non_identity(color)

    def transform():
        out = tf.einsum("bij,bhwj->bhwi", color[:, :3, :3], images) + color[:, None, None, :3, 3]
        return _select(active, out, images)
    return tf.cond(tf.reduce_any(active), transform, lambda: images)


def ada_augment(images, p, draws, pipeline="bgc"):
    """Augments [b, h, w, 3] images in [-1, 1] (any float dtype; computed in float32, returned in
    the input dtype) with probability p x multiplier per transform and sample."""
    dtype = images.dtype
    x = tf.cast(images, tf.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"ADA augments RGB images, got {x.shape[-1]} channels")
    height, width = int(x.shape[1]), int(x.shape[2])
    spec = spec_for(pipeline)
    params = ada_parameters(p, draws, spec, height, width)
    if any(getattr(spec, t) > 0 for t in GEOMETRIC):
        x = apply_geometry(x, params["g_inv"])
    if any(getattr(spec, t) > 0 for t in COLOR):
        x = apply_color(x, params["color"])
    if spec.noise > 0:
        sigma = params["noise"]
        x = tf.cond(tf.reduce_any(sigma > 0),
                    lambda: x + draws.local_normal(x.shape[1:]) * sigma[:, None, None, None], lambda: x)
    if spec.cutout > 0:
        x = x * cutout_mask(params["cutout_center"], params["cutout"], height, width)
    return tf.cast(x, dtype)


def cutout_mask(center, size, height: int, width: int):
    """[b, h, w, 1] float mask: 0 inside the square of side `size` (fraction) centred at `center`
    (fractions, [b, 2] as x, y), 1 elsewhere; size 0 keeps everything."""
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / width
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / height
    keep_x = tf.abs(xs[None, :] - center[:, 0:1]) >= size[:, None] / 2.0
    keep_y = tf.abs(ys[None, :] - center[:, 1:2]) >= size[:, None] / 2.0
    keep = tf.logical_or(keep_x[:, None, :], keep_y[:, :, None])
    return tf.cast(keep, tf.float32)[..., None]


def with_overrides(pipeline, **multipliers) -> AdaSpec:
    return replace(spec_for(pipeline), **multipliers)
