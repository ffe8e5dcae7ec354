"""An independent numpy forward pass of the official TF-Hub BigGAN generators.

Written from the published converters' reading of the modules, not from tf_biggan:
BigGAN-PyTorch (`TFHub/converter.py`, `TFHub/biggan_v1.py`, `BigGAN.py`, `layers.py`) for `biggan-*/2`, and
pytorch-pretrained-BigGAN (`convert_tf_to_pytorch.py`, `model.py`) for `biggan-deep-*/1`, as summarised in
the project notes' hub spec (section 2). It reads the checkpoint variables by their names in the module's
`variables/variables` file, so it checks an importer's name mapping as well as its arithmetic.

What is not established without the real module files, and how it is read here (spec uncertainty notes):
- SN at inference: one power iteration from the stored u0 with n(x) = x * rsqrt(sum x^2 + eps) (an op-level
  dump of the module graph); `sn_normalize='max'` gives BigGAN-PyTorch's x / max(|x|, eps) instead. With a
  u0 at the converged singular vector and sigma >> 1 the two agree to float32 precision.
- Deep BN statistics: 51 sets per BN layer (graph tensors stack_{5n+1} means, stack_{5n+3} variances, row k
  for truncation k/50), read by continuous linear interpolation in t (`interpolate_stats`).
  pytorch-pretrained-BigGAN's own reading swaps the two weights and rounds t/0.02 in float64
  (`hf_interpolation`); it agrees with the continuous one at e.g. t in {0.2, 0.5, 1.0} and at midpoints.
- biggan-*/2 statistics: the one stored set (`accumulated_*` as is, not divided by the counter); truncation
  does not enter the v2 forward pass (the caller scales z).

Test helper, not part of the package.
"""

from __future__ import annotations

import math
import re
from typing import Dict, Optional

import numpy as np

SN_EPS = 1e-4  # both kinds: snconv/snlinear eps (HF config.eps; BigGAN-PyTorch SN_eps)
BN_EPS = 1e-4  # both kinds: BN epsilon (BigGAN-PyTorch BN_eps; HF config.eps)
NUM_STATS = 51  # deep modules: statistics for truncation 0, 0.02, ..., 1.0
# Block index after which the one attention layer sits (0-based GBlock index). biggan_v1 sa_id /
# convert_from_v1 attention_blocknum {128: 3, 256: 4, 512: 3}; HF attention_layer_position 8 (after GBlock_7).
ATTENTION_AFTER = {("biggan", 128): 3, ("biggan", 256): 4, ("biggan", 512): 3,
                   ("biggan_deep", 128): 7, ("biggan_deep", 256): 7, ("biggan_deep", 512): 7}


# ---------------------------------------------------------------- primitives (NHWC, HWIO)

def normalize(x: np.ndarray, mode: str = "rsqrt_add", eps: float = SN_EPS) -> np.ndarray:
    """Unit vector along the last axis: 'rsqrt_add' x * rsqrt(sum x^2 + eps) (module graph),
    'max' x / max(|x|, eps) (torch F.normalize, BigGAN-PyTorch)."""
    sq = np.sum(x * x, axis=-1, keepdims=True)
    if mode == "rsqrt_add":
        return x / np.sqrt(sq + eps)
    if mode == "max":
        return x / np.maximum(np.sqrt(sq), eps)
    raise ValueError(f"sn_normalize must be 'rsqrt_add' or 'max', got {mode!r}")


def spectral_sigma(w: np.ndarray, u0: np.ndarray, mode: str = "rsqrt_add", eps: float = SN_EPS) -> float:
    """sigma of one power iteration from the stored u0 [1, out]: W_mat = reshape(W, [-1, out]),
    v = n(u0 W^T), u' = n(v W), sigma = (v W) u'^T."""
    w_mat = w.reshape(-1, w.shape[-1])
    v = normalize(u0 @ w_mat.T, mode, eps)
    wv = v @ w_mat
    u_new = normalize(wv, mode, eps)
    return float((wv @ u_new.T)[0, 0])


def conv2d(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
    """Stride-1 'SAME' convolution, x [B,H,W,Cin], w [kh,kw,Cin,Cout]: a sum of kh*kw shifted matmuls
    over the zero-padded input (TF pads (k-1)//2 before, the rest after)."""
    kh, kw = w.shape[:2]
    _, h, wd, _ = x.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    out = np.zeros(x.shape[:3] + (w.shape[3],), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            out += xp[:, i:i + h, j:j + wd, :] @ w[i, j]
    return out if b is None else out + b.reshape(-1)


def upsample2x(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour 2x upsampling (F.interpolate(scale_factor=2) / tf.image.resize nearest)."""
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)


def maxpool2x2(x: np.ndarray) -> np.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention(x, w_theta, w_phi, w_g, w_o, gamma) -> np.ndarray:
    """SAGAN self-attention (BigGAN-PyTorch layers.Attention, HF SelfAttn) with already-normalised 1x1
    kernels: theta C/8 at full resolution, phi C/8 and g C/2 max-pooled 2x2, softmax over the pooled
    positions, o_conv C/2 -> C, x + gamma * o. No biases."""
    b, h, w, c = x.shape
    theta = conv2d(x, w_theta).reshape(b, h * w, -1)
    phi = maxpool2x2(conv2d(x, w_phi)).reshape(b, h * w // 4, -1)
    g = maxpool2x2(conv2d(x, w_g)).reshape(b, h * w // 4, -1)
    o = np.empty(theta.shape[:2] + g.shape[2:], dtype=np.result_type(theta, g))
    for q in range(0, h * w, 4096):  # query rows in slices: the 128 px map's [16384, 4096] map stays small
        o[:, q:q + 4096] = softmax(theta[:, q:q + 4096] @ phi.transpose(0, 2, 1), axis=-1) @ g
    o = o.reshape(b, h, w, -1)
    return x + float(np.reshape(gamma, -1)[0]) * conv2d(o, w_o)


def batch_norm(x, mean, var, gain, offset, eps: float = BN_EPS) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * gain + offset; gain/offset [C] or per-example [B, C]."""
    x_hat = (x - mean.reshape(-1)) / np.sqrt(var.reshape(-1) + eps)
    if gain.ndim == 2:
        gain, offset = gain[:, None, None, :], offset[:, None, None, :]
    else:
        gain, offset = gain.reshape(-1), offset.reshape(-1)
    return x_hat * gain + offset


def relu(x):
    return np.maximum(x, 0)


# ---------------------------------------------------------------- deep statistics by truncation

def interpolate_stats(table: np.ndarray, truncation: float) -> np.ndarray:
    """Continuous reading of a [51, C] table: x = t*50 (float32, as the module's float32 graph),
    w = x - floor(x), (1 - w) S[floor] + w S[floor + 1], clamped at row 50."""
    x = np.float32(truncation) * np.float32(NUM_STATS - 1)
    lo = int(np.floor(x))
    if lo >= NUM_STATS - 1:
        return table[NUM_STATS - 1]
    if lo < 0:
        raise ValueError(f"truncation must be in [0, 1], got {truncation}")
    w = float(x - np.float32(lo))
    return (1.0 - w) * table[lo] + w * table[lo + 1]


def hf_interpolation(table: np.ndarray, truncation: float) -> np.ndarray:
    """pytorch-pretrained-BigGAN's reading (model.py BigGANBatchNorm.forward), for documentation and
    comparison: coef, start = math.modf(t / (1/50)) in float64, then S[start] * coef + S[start+1] *
    (1 - coef) -- the weights swapped relative to linear interpolation -- or S[start] when coef == 0
    (so float64 rounding picks row 8 at t = 0.14, row 28 at t = 0.58)."""
    step = 1.0 / (NUM_STATS - 1)
    coef, start = math.modf(truncation / step)
    start = int(start)
    if coef != 0.0:
        return table[start] * coef + table[start + 1] * (1 - coef)
    return table[start]


# ---------------------------------------------------------------- the module

def _canonical(variables: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Names without a leading 'module/' (hub.Module's scope) and without the EMA suffix; an EMA value
    wins over its raw (non-EMA) twin. u1/u2, counters and other extras are simply not read."""
    raw, ema = {}, {}
    for name, value in variables.items():
        name = name[len("module/"):] if name.startswith("module/") else name
        base, sep, _ = name.partition("/ema_")
        (ema if sep else raw)[base] = np.asarray(value)
    raw.update(ema)
    return raw


class _Reader:
    def __init__(self, variables, dtype, sn_normalize, sn_eps):
        self.v = _canonical(variables)
        self.dtype, self.mode, self.eps = dtype, sn_normalize, sn_eps

    def get(self, name):
        if name not in self.v:
            raise KeyError(f"module variable {name!r} not found")
        return self.v[name].astype(self.dtype)

    def sn(self, prefix):
        """The layer's kernel divided by its sigma (spectral_sigma from the stored u0)."""
        w = self.get(prefix + "/w")
        return w / spectral_sigma(w, self.get(prefix + "/u0"), self.mode, self.eps)

    def conv(self, x, prefix, bias=True):
        return conv2d(x, self.sn(prefix), self.get(prefix + "/b") if bias else None)

    def attention(self, x):
        p = "Generator/attention"
        return attention(x, self.sn(p + "/theta"), self.sn(p + "/phi"), self.sn(p + "/g"),
                         self.sn(p + "/o_conv"), self.get(p + "/gamma"))

    def cond_bn(self, x, cond, prefix, gain_name, offset_name, mean, var, bn_eps):
        """Conditional BN: gain = 1 + c W_gain, offset = c W_offset (SN projections, no biases)."""
        gain = 1.0 + cond @ self.sn(f"{prefix}/{gain_name}")
        offset = cond @ self.sn(f"{prefix}/{offset_name}")
        return batch_norm(x, mean, var, gain, offset, bn_eps)


def _num_blocks(names) -> int:
    found = {int(m.group(1) or 0) for m in (re.match(r"Generator/GBlock(?:_(\d+))?/", n) for n in names) if m}
    if not found or found != set(range(len(found))):
        raise ValueError(f"GBlock indices not 0..L-1: {sorted(found)}")
    return len(found)


def _block(i: int) -> str:
    return "Generator/GBlock" if i == 0 else f"Generator/GBlock_{i}"


def module_forward(variables: Dict[str, np.ndarray], kind_family: str, z: np.ndarray, y: np.ndarray,
                   truncation: float, stacks: Optional[Dict[str, np.ndarray]] = None,
                   sn_normalize: str = "rsqrt_add", stats_reading: str = "continuous",
                   dtype=np.float64, sn_eps: float = SN_EPS, bn_eps: float = BN_EPS) -> np.ndarray:
    """Images [B, R, R, 3] in [-1, 1] of an official module's generator for latents z [B, dim_z] (already
    scaled by the caller: the module does not truncate z), class rows y [B, num_classes] and truncation
    (deep: selects the BN statistics from `stacks`; v2: unused).

    kind_family: 'biggan' (biggan-*/2) or 'biggan_deep' (biggan-deep-*/1). The block count L comes from the
    GBlock names, the resolution from L (v2: every block upsamples, R = 4 * 2^L; deep: every second block,
    R = 4 * 2^(L/2)), the widths from the kernels, so any ch works.
    stacks: deep only, {'stack_N': [51, C]}; BN layer n = 4*block + j (then the final BN, n = 4L) has its
    means in stack_{5n+1}, variances in stack_{5n+3}. stats_reading: 'continuous' | 'hf'.
    """
    r = _Reader(variables, dtype, sn_normalize, sn_eps)
    z, y = np.asarray(z, dtype), np.asarray(y, dtype)
    num_blocks = _num_blocks(r.v)
    embed = y @ r.get("linear/w")  # shared embedding: no SN, no bias
    if kind_family == "biggan":
        return _forward_v2(r, z, embed, num_blocks, bn_eps)
    if kind_family == "biggan_deep":
        if stacks is None:
            raise ValueError("biggan_deep needs the module's stack_N statistics tables")
        read = {"continuous": interpolate_stats, "hf": hf_interpolation}[stats_reading]

        def stats(n):
            return (read(np.asarray(stacks[f"stack_{5 * n + 1}"], dtype), truncation),
                    read(np.asarray(stacks[f"stack_{5 * n + 3}"], dtype), truncation))

        return _forward_deep(r, z, embed, num_blocks, stats, bn_eps)
    raise ValueError(f"kind_family must be 'biggan' or 'biggan_deep', got {kind_family!r}")


def _linear_to_4x4(r: _Reader, inp: np.ndarray, prefix: str) -> np.ndarray:
    """G_linear then an NHWC row-major reshape to [B, 4, 4, 16ch] (the PyTorch ports' view(-1,4,4,C)
    followed by a permute to NCHW is this layout)."""
    h = inp @ r.sn(prefix + "/G_linear") + r.get(prefix + "/G_linear/b")
    return h.reshape(h.shape[0], 4, 4, -1)


def _forward_v2(r: _Reader, z, embed, num_blocks, bn_eps):
    """biggan-*/2 (biggan_v1 / BigGAN.py): z in L+1 equal chunks, chunk 0 -> G_linear, block i conditioned
    on [z_{i+1}, embedding] (z chunk first)."""
    resolution = 4 * 2 ** num_blocks
    if z.shape[1] % (num_blocks + 1):
        raise ValueError(f"dim_z {z.shape[1]} does not split into {num_blocks + 1} chunks")
    zs = np.split(z, num_blocks + 1, axis=1)
    h = _linear_to_4x4(r, zs[0], "Generator/G_Z")
    for i in range(num_blocks):
        p, cond = _block(i), np.concatenate([zs[i + 1], embed], axis=1)
        bn0, bn1 = p + "/CrossReplicaBN", p + "/CrossReplicaBN_1"
        a = relu(r.cond_bn(h, cond, p + "/HyperBN", "gamma", "beta",
                           r.get(bn0 + "/accumulated_mean"), r.get(bn0 + "/accumulated_var"), bn_eps))
        a = r.conv(upsample2x(a), p + "/conv0")
        a = relu(r.cond_bn(a, cond, p + "/HyperBN_1", "gamma", "beta",
                           r.get(bn1 + "/accumulated_mean"), r.get(bn1 + "/accumulated_var"), bn_eps))
        a = r.conv(a, p + "/conv1")
        h = a + r.conv(upsample2x(h), p + "/conv_sc")
        if i == ATTENTION_AFTER[("biggan", resolution)]:
            h = r.attention(h)
    # ScaledCrossReplicaBN: plain BN with learned gamma, beta (not 1 + gamma), statistics from ...BNbn.
    out = relu(batch_norm(h, r.get("Generator/ScaledCrossReplicaBNbn/accumulated_mean"),
                          r.get("Generator/ScaledCrossReplicaBNbn/accumulated_var"),
                          r.get("Generator/ScaledCrossReplicaBN/gamma"),
                          r.get("Generator/ScaledCrossReplicaBN/beta"), bn_eps))
    return np.tanh(r.conv(out, "Generator/conv_2d"))


def _forward_deep(r: _Reader, z, embed, num_blocks, stats, bn_eps):
    """biggan-deep-*/1 (HF model.py): cond = [z, embedding] for G_linear and every BN; bottleneck blocks,
    upsampling in every second block (odd index); shortcut = first `out` channels, upsampled, no conv."""
    if num_blocks % 2:
        raise ValueError(f"a deep module has an even number of blocks, found {num_blocks}")
    resolution = 4 * 2 ** (num_blocks // 2)
    cond = np.concatenate([z, embed], axis=1)
    h = _linear_to_4x4(r, cond, "Generator/GenZ")
    for i in range(num_blocks):
        p, up = _block(i), i % 2 == 1
        bns = [f"{p}/BatchNorm" + (f"_{j}" if j else "") for j in range(4)]

        def bn(x, j):
            mean, var = stats(4 * i + j)
            return relu(r.cond_bn(x, cond, bns[j], "scale", "offset", mean, var, bn_eps))

        a = r.conv(bn(h, 0), p + "/conv0")  # 1x1, in -> in/4
        a = bn(a, 1)
        a = r.conv(upsample2x(a) if up else a, p + "/conv1")
        a = r.conv(bn(a, 2), p + "/conv2")
        a = r.conv(bn(a, 3), p + "/conv3")  # 1x1, in/4 -> out
        s = h[..., :a.shape[-1]]
        h = a + (upsample2x(s) if up else s)
        if i == ATTENTION_AFTER[("biggan_deep", resolution)]:
            h = r.attention(h)
    mean, var = stats(4 * num_blocks)
    # Final BN: unconditional, gain = scale itself (not 1 + scale).
    out = relu(batch_norm(h, mean, var, r.get("Generator/BatchNorm/scale"),
                          r.get("Generator/BatchNorm/offset"), bn_eps))
    return np.tanh(r.conv(out, "Generator/conv_to_rgb")[..., :3])  # ch -> ch, first 3 kept
