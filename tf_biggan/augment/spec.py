"""What an `augment` config may name, without TensorFlow: the ADA pipelines' transforms, probability
multipliers and parameter ranges (seed 003, Appendix B; defaults of the reference code), and the
DiffAugment policies (Zhao et al.). Hparams are validated against these before TF is imported, so a
typo fails in a second (tf_biggan/config.py); pipeline.py and diffaugment.py apply them.
"""

from __future__ import annotations

from dataclasses import dataclass

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
CORRUPTION = ("noise", "cutout")
TRANSFORMS = GEOMETRIC + COLOR + CORRUPTION


@dataclass(frozen=True)
class AdaSpec:
    """Probability multipliers (0 = off) and parameter ranges; defaults of the reference code."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    noise: float = 0.0
    cutout: float = 0.0
    xint_max: float = 0.125  # of the image size
    scale_std: float = 0.2  # log2
    rotate_max: float = 1.0  # 1 = full turn
    aniso_std: float = 0.2  # log2
    xfrac_std: float = 0.125  # of the image size
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2
    hue_max: float = 1.0  # 1 = full turn
    saturation_std: float = 1.0  # log2
    noise_std: float = 0.1
    cutout_size: float = 0.5  # of the image size

    def enabled(self):
        return tuple(t for t in TRANSFORMS if getattr(self, t) > 0)

    def max_multiplier(self) -> float:
        return max([getattr(self, t) for t in TRANSFORMS] + [0.0])


def _on(names):
    return {name: 1.0 for name in names}


PIPELINES = {
    "blit": AdaSpec(**_on(("xflip", "rotate90", "xint"))),
    "geom": AdaSpec(**_on(("scale", "rotate", "aniso", "xfrac"))),
    "color": AdaSpec(**_on(COLOR)),
    # blit + geom, the reference's `bg` (seed 003 Figure 4a: geometric augmentations carry most of
    # the gain on small datasets); no brightness, contrast or luma flip.
    "bg": AdaSpec(**_on(GEOMETRIC)),
    "bgc": AdaSpec(**_on(GEOMETRIC + COLOR)),  # the reference default
    "bgcnc": AdaSpec(**_on(TRANSFORMS)),
}


def spec_for(pipeline) -> AdaSpec:
    if isinstance(pipeline, AdaSpec):
        return pipeline
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown ADA pipeline {pipeline!r}; expected one of {', '.join(PIPELINES)}")
    return PIPELINES[pipeline]


POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str):
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {', '.join(bad)}; expected a comma list of {', '.join(POLICIES)}")
    return names
