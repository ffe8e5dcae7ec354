"""The generator G of BigGAN (Tables 4-6, Figure 15a) and BigGAN-deep (Tables 7-9, Figure 16a).

Conditioning (Section 3, Appendix B): a shared class embedding (128-d) is computed once; BigGAN
splits z into equal chunks, the first feeding the linear layer and one concatenated to the
embedding for each block ("hierarchical latent space", skip-z); BigGAN-deep concatenates the whole z
with the embedding, feeds that to the linear layer and to every block. Each block projects its
conditioning vector to per-sample BN gains (centred at 1) and biases (centred at 0).

Table 1 ablations: `shared_embedding: false` gives every BN its own class embedding (a linear map of
the one-hot class); `skip_z: false` feeds z only to the linear layer.

G is called as G((z, y)) with z [batch, dim_z] and y either int labels [batch] or class vectors
[batch, num_classes] (one-hot or mixtures), and returns images [batch, H, W, 3] in [-1, 1], float32.
One tuple input (not two positional tensors) keeps the model exportable as a SavedModel.
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.batch_norm import CrossReplicaBatchNorm
from tf_biggan.layers.output_conv import SNFirstChannelsConv2D
from tf_biggan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding, spectral_norm_layers
from tf_biggan.models.arch import num_z_chunks
from tf_biggan.models.biggan import GBlock
from tf_biggan.models.biggan_deep import DeepGBlock
from tf_biggan.models.staged import StagedNetwork


def class_vectors(y, num_classes: int, dtype=tf.float32):
    """Labels [batch] (any dtype) -> one-hot [batch, num_classes]; class vectors are returned as they are."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 1:
        return tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=dtype)
    return tf.cast(y, dtype)


class Generator(StagedNetwork):
    def __init__(self, cfg, num_classes: int, **kwargs):
        kwargs.setdefault("name", "generator")
        super().__init__(cfg, num_classes, **kwargs)
        self.num_chunks = num_z_chunks(cfg.family, cfg.resolution, cfg.skip_z)
        ch = cfg.ch
        common = dict(dtype=self.dtype_policy)
        sn = dict(sn_epsilon=cfg.sn_epsilon, sn_normalize=cfg.sn_normalize, **common)
        # The shared embedding is a plain lookup table (no SN), as in BigGAN-PyTorch.
        self.shared = (SNEmbedding(num_classes, cfg.shared_dim, use_sn=False, name="shared_embedding", **sn)
                       if cfg.shared_embedding else None)
        first = self.arch.g_blocks[0].in_mult * ch
        self.bottom_channels = first
        self.linear = SNDense(self.arch.bottom_width ** 2 * first, name="linear", **sn)
        block_cls = DeepGBlock if self.deep else GBlock
        bn = dict(bn_epsilon=cfg.bn_epsilon, bn_moving_decay=cfg.bn_moving_decay,
                  truncation_stats=cfg.truncation_stats, **sn)
        self._build_stages(self.arch.g_stages, self.arch.g_attention, lambda spec, name: block_cls(
            spec.in_mult * ch, spec.out_mult * ch, upsample=spec.resample, name=name, **bn))
        self.out_bn = CrossReplicaBatchNorm(epsilon=cfg.bn_epsilon, moving_decay=cfg.bn_moving_decay,
                                            truncation_stats=cfg.truncation_stats, name="out_bn", **common)
        # Table 7 says ch -> 3; the official BigGAN-deep modules use ch -> ch and keep 3 channels, the
        # only ones computed (layers/output_conv.py).
        if self.deep and cfg.hub_output_conv:
            self.out_conv = SNFirstChannelsConv2D(ch, 3, keep=3, name="out_conv", **sn)
        else:
            self.out_conv = SNConv2D(3, 3, name="out_conv", **sn)

    @property
    def dim_z(self) -> int:
        return self.cfg.dim_z

    def call(self, inputs, training=False, accumulate=False):
        return self.forward(inputs, training=training, accumulate=accumulate)

    def forward(self, inputs, training=False, accumulate=False, trace=None):
        """The forward computation; `trace`, a list, receives (layer name, output shape, layer) per step."""
        z, y = inputs
        z = tf.cast(z, self.compute_dtype)
        y = class_vectors(y, self.num_classes, self.compute_dtype)
        base = self.shared(y, training=training) if self.shared is not None else y
        cfg = self.cfg
        if self.deep:
            cond_all = tf.concat([z, base], axis=-1)
            linear_in = cond_all
            block_conds = [cond_all if cfg.skip_z else base] * len(self.blocks)
        elif cfg.skip_z:
            chunks = tf.split(z, self.num_chunks, axis=-1)
            linear_in = chunks[0]
            block_conds = [tf.concat([c, base], axis=-1) for c in chunks[1:]]
        else:
            linear_in = z
            block_conds = [base] * len(self.blocks)
        if trace is not None and self.shared is not None:
            trace.append(("shared_embedding", base.shape, self.shared))
        h = self.linear(linear_in, training=training)
        width = self.arch.bottom_width
        h = tf.reshape(h, (-1, width, width, self.bottom_channels))
        if trace is not None:
            trace.append(("linear", h.shape, self.linear))
        kw = dict(training=training, accumulate=accumulate)
        h = self._run_stages(h, lambda i, block, h: block((h, block_conds[i]), **kw), training, trace)
        h = tf.nn.relu(self.out_bn(h, **kw))
        h = self.out_conv(h, training=training)
        out = tf.tanh(tf.cast(h, tf.float32))
        if trace is not None:
            trace.append(("out_bn+out_conv+tanh", out.shape, [self.out_bn, self.out_conv]))
        return out

    def ortho_reg_kernels(self) -> list:
        """The kernels Eq. (3) regularises: every G weight matrix but the shared embedding table
        (a lookup, not a filter bank; BigGAN-PyTorch leaves it out too). It is G's one layer
        without spectral norm, so this is the kernel of every spectrally normalised layer."""
        return [layer.kernel for layer in spectral_norm_layers(self)]

    def build_for_input(self, batch: int = 1) -> None:
        """Creates every weight by running one inference call on zeros."""
        self((tf.zeros((batch, self.cfg.dim_z)), tf.zeros((batch,), tf.int32)), training=False)
