"""Architecture tables: which blocks, at which widths, for each family and resolution.

BigGAN: paper Appendix B, Tables 4 (128), 5 (256), 6 (512), Figure 15. BigGAN-deep: Tables 7-9,
Figure 16. Widths are multiples of the channel multiplier `ch`. A *stage* is the group of blocks
that produces one resolution; the non-local block goes after the stage whose output resolution is
the attention resolution, which is where every table puts it (for BigGAN-deep D, Table 7 puts it
after both 64x64 blocks; for BigGAN-deep G, after the up block that reaches 64x64).

Reading of the D tables (BigGAN, Tables 4-6). The tables list D's first block as
"ResBlock down ch -> 2ch" and give the widest stage twice (16ch -> 16ch down, then 16ch -> 16ch).
Taken literally, D at 128 px and ch = 96 has 132.6M parameters; the paper's own count is 88.0M
(Table 1 and Appendix B). 88.0M (87,982,370 exactly, as compare_gan and BigGAN-PyTorch build it)
is met only by the reading in_channels = [3, ch, 2ch, 4ch, 8ch, 16ch], out = [ch, 2ch, 4ch, 8ch,
16ch, 16ch]: every D block one width step narrower than the table line. We follow the count.

Reading of G's first layer. Table 4 writes "Linear (20 + 128) -> 4x4x16ch"; with the class embedding
in that linear G has 73.6M parameters, against the paper's 70.4M. 70.4M (70,433,988) is met when
the linear takes only the first 20-d z chunk (the class enters through the blocks' BN), as in
compare_gan and BigGAN-PyTorch. We follow the count. BigGAN-deep's linear does take z and the
embedding (Table 7: 128 + 128).

16 px (the embedded digits default), 32 px (CIFAR, Appendix C.2) and 64 px are not tabled in the
paper; they follow BigGAN-PyTorch's 32/64 px layouts (4ch everywhere at 16 and 32 px, no attention).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

RGB = 0  # an `in_mult` of 0 means the block reads the 3-channel image


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    in_mult: int  # input width / ch (RGB for the image)
    out_mult: int
    resample: bool  # upsample (G) or downsample (D) inside the block


@dataclasses.dataclass(frozen=True)
class Stage:
    blocks: Tuple[BlockSpec, ...]
    resolution: int  # spatial size after this stage


@dataclasses.dataclass(frozen=True)
class Arch:
    g_stages: Tuple[Stage, ...]
    d_stages: Tuple[Stage, ...]
    g_attention: int  # default attention resolution in G (0 = none)
    d_attention: int
    bottom_width: int = 4

    @property
    def g_blocks(self) -> List[BlockSpec]:
        return [b for s in self.g_stages for b in s.blocks]

    @property
    def d_blocks(self) -> List[BlockSpec]:
        return [b for s in self.d_stages for b in s.blocks]


# (in_mult, out_mult) per up stage of G, one entry per doubling from 4x4.
_G_WIDTHS = {
    16: [(4, 4), (4, 4)],
    32: [(4, 4), (4, 4), (4, 4)],
    64: [(16, 16), (16, 8), (8, 4), (4, 2)],
    128: [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)],  # Tables 4 and 7
    256: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)],  # Tables 5 and 8
    512: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)],  # Tables 6 and 9
}

# BigGAN D: (in_mult, out_mult, down); see the module docstring for the reading.
_D_BIGGAN = {
    16: [(RGB, 4, True), (4, 4, True), (4, 4, False)],
    32: [(RGB, 4, True), (4, 4, True), (4, 4, False), (4, 4, False)],
    64: [(RGB, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, False)],
    128: [(RGB, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, False)],
    256: [(RGB, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True),
          (16, 16, False)],
    512: [(RGB, 1, True), (1, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True),
          (8, 16, True), (16, 16, False)],
}

# BigGAN-deep D: (in_mult, out_mult) per down stage, after a 3x3 conv 3 -> ch (Tables 7-9).
_D_DEEP = {
    16: [(1, 4), (4, 4)],
    32: [(1, 4), (4, 4), (4, 4)],
    64: [(1, 2), (2, 4), (4, 8), (8, 16)],
    128: [(1, 2), (2, 4), (4, 8), (8, 16), (16, 16)],
    256: [(1, 2), (2, 4), (4, 8), (8, 8), (8, 16), (16, 16)],
    512: [(1, 1), (1, 2), (2, 4), (4, 8), (8, 8), (8, 16), (16, 16)],
}

# Default non-local resolutions: (G, D) per resolution (Tables 4-9; 0 = none).
_ATTENTION = {
    "biggan": {16: (0, 0), 32: (0, 0), 64: (32, 32), 128: (64, 64), 256: (128, 64), 512: (64, 64)},
    "biggan_deep": {16: (0, 0), 32: (0, 0), 64: (32, 32), 128: (64, 64), 256: (64, 64), 512: (64, 64)},
}

RESOLUTIONS = tuple(sorted(_G_WIDTHS))


def build_arch(family: str, resolution: int, g_attention: Optional[int] = None,
               d_attention: Optional[int] = None) -> Arch:
    """The block layout for a family ("biggan" | "biggan_deep") at a resolution."""
    if resolution not in _G_WIDTHS:
        raise ValueError(f"resolution {resolution} is not one of {RESOLUTIONS}")
    bottom = 4
    g_stages = []
    res = bottom
    for in_m, out_m in _G_WIDTHS[resolution]:
        res *= 2
        if family == "biggan":
            blocks = (BlockSpec(in_m, out_m, True),)
        else:  # Table 7: a plain ResBlock at the input width, then ResBlock up
            blocks = (BlockSpec(in_m, in_m, False), BlockSpec(in_m, out_m, True))
        g_stages.append(Stage(blocks, res))
    d_stages = []
    res = resolution
    if family == "biggan":
        for in_m, out_m, down in _D_BIGGAN[resolution]:
            res = res // 2 if down else res
            d_stages.append(Stage((BlockSpec(in_m, out_m, down),), res))
    else:  # Table 7: ResBlock down in -> out, then a plain ResBlock at the output width
        for in_m, out_m in _D_DEEP[resolution]:
            res //= 2
            d_stages.append(Stage((BlockSpec(in_m, out_m, True), BlockSpec(out_m, out_m, False)), res))
    default_g, default_d = _ATTENTION[family][resolution]
    return Arch(
        g_stages=tuple(g_stages),
        d_stages=tuple(d_stages),
        g_attention=default_g if g_attention is None else g_attention,
        d_attention=default_d if d_attention is None else d_attention,
        bottom_width=bottom,
    )


def num_z_chunks(family: str, resolution: int, skip_z: bool) -> int:
    """BigGAN splits z into one chunk for the linear layer plus one per G block (Appendix B)."""
    if family == "biggan" and skip_z:
        return len(_G_WIDTHS[resolution]) + 1
    return 1


def _attention_width(stages: Sequence[Stage], resolution: int, ch: int) -> int:
    """Channels the attention block after the first stage ending at `resolution` sees (8 where none)."""
    for stage in stages:
        if resolution and stage.resolution == resolution:
            return ch * stage.blocks[-1].out_mult
    return 8


def _stage_resolutions(stages: Sequence[Stage]) -> List[int]:
    return [s.resolution for s in stages]


def check_model_config(cfg) -> Optional[Tuple[str, str]]:
    """Returns (key, message) for the first inconsistency in a ModelConfig, or None."""
    if cfg.resolution not in _G_WIDTHS:
        return "model.resolution", f"must be one of {list(RESOLUTIONS)}, got {cfg.resolution}"
    chunks = num_z_chunks(cfg.family, cfg.resolution, cfg.skip_z)
    if cfg.dim_z % chunks:
        return ("model.dim_z", f"must split into {chunks} equal chunks for BigGAN at {cfg.resolution} px "
                f"with skip_z (e.g. {20 * chunks} = {chunks} x 20), got {cfg.dim_z}")
    arch = build_arch(cfg.family, cfg.resolution, cfg.g_attention_resolution, cfg.d_attention_resolution)
    for key, value, stages in (("model.g_attention_resolution", arch.g_attention, arch.g_stages),
                               ("model.d_attention_resolution", arch.d_attention, arch.d_stages)):
        allowed = sorted(set(_stage_resolutions(stages)))
        if value and value not in allowed:
            return key, f"must be 0 (none) or a resolution the network passes through {allowed}, got {value}"
        width = _attention_width(stages, value, cfg.ch)
        if width % 8:  # SelfAttention's theta / phi project to channels / 8 (layers/attention.py)
            return "model.ch", (f"the attention block at {value} px ({key}) sees {width} channels, not a multiple "
                                f"of 8: pick model.ch so that it is (e.g. {8 * max(1, cfg.ch // 8)}), or {key}: 0")
    if cfg.hub_output_conv and cfg.family != "biggan_deep":
        return "model.hub_output_conv", "applies to family: biggan_deep only"
    return None
