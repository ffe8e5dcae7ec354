"""Augmentation of everything D sees: ADA (seed 003) and DiffAugment, built not to leak.

    spec.py         what a config may name (pipelines, multipliers, ranges, DiffAugment policies),
                    without TF
    pipeline.py     ADA transforms (blit / geom / color / noise / cutout), one affine + one colour
                    matrix per sample; resample.py applies the affine (pad, 2x sym6, bilinear, 2x down)
    diffaugment.py  Zhao et al.'s color / translation / cutout (cutout gated by p)
    controller.py   AugmentState: p, the ADA heuristics (r_t, r_v), the call the training step makes
    heldout.py      the held-out reals of r_v (augment.validation_pattern or the digits beyond
                    data.max_per_class) and each step's stateless batch of them
    leak.py         check_leak: is a distribution over a cyclic group invertible (Appendix C.4)?
    startup.py      check_config: refuses a configuration whose discrete augmentations would leak
    draws.py        stateless per-sample random numbers (global draw, replica slices)
"""

from tf_biggan.augment.leak import check_leak  # noqa: F401
