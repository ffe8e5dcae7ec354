"""What G and D share: the configuration, the architecture table, and blocks grouped by stage.

A stage is the group of blocks that produces one resolution (models/arch.py); the single non-local
block goes after the stage whose output resolution is the attention resolution, where Tables 4-9
put it ("non-local blocks inserted at a single stage in each network", Appendix C).
"""

from __future__ import annotations

import keras

from tf_biggan.layers.attention import SelfAttention
from tf_biggan.layers.container import BuildsOnFirstCall
from tf_biggan.models.arch import build_arch


class StagedNetwork(BuildsOnFirstCall, keras.Model):
    def __init__(self, cfg, num_classes: int, **kwargs):
        kwargs.setdefault("dtype", cfg.dtype)
        super().__init__(**kwargs)
        self.cfg = cfg
        self.num_classes = num_classes
        self.arch = build_arch(cfg.family, cfg.resolution, cfg.g_attention_resolution, cfg.d_attention_resolution)
        self.deep = cfg.family == "biggan_deep"

    def _build_stages(self, stages, attention_resolution: int, make_block) -> None:
        """Creates `make_block(spec, name)` for every block and the attention layer."""
        self.stages = []  # (resolution, [blocks], attention or None)
        attention_done = False
        index = 0
        for stage in stages:
            blocks = []
            for spec in stage.blocks:
                blocks.append(make_block(spec, f"block{index}"))
                index += 1
            attention = None
            if not attention_done and stage.resolution == attention_resolution:
                attention = SelfAttention(name=f"attention{stage.resolution}", sn_epsilon=self.cfg.sn_epsilon,
                                          sn_normalize=self.cfg.sn_normalize,
                                          per_image=self.cfg.attention_per_image, dtype=self.dtype_policy)
                attention_done = True
            self.stages.append((stage.resolution, blocks, attention))
        # Flat lists as attributes keep Keras' layer tracking (and variable paths) simple.
        self.blocks = [b for _, blocks, _ in self.stages for b in blocks]
        self.attentions = [a for _, _, a in self.stages if a is not None]

    def _run_stages(self, h, run_block, training, trace=None):
        """Applies every block (`run_block(index, block, h)`) and the attention layer in order."""
        index = 0
        for _, blocks, attention in self.stages:
            for block in blocks:
                h = run_block(index, block, h)
                index += 1
                if trace is not None:
                    trace.append((block.name, h.shape, block))
            if attention is not None:
                h = attention(h, training=training)
                if trace is not None:
                    trace.append((attention.name, h.shape, attention))
        return h
