"""Refusing, at start-up, an augmentation configuration that would leak (seed 003, Appendix C.4).

The compact discrete groups of the ADA pipeline (x-flip: Z_2, 90-degree rotations: Z_4, luma flip:
Z_2) choose an element uniformly with probability q = p x multiplier and keep the identity
otherwise; `check_leak` decides on that distribution at the highest p the run can reach (p_max for
ADA, p for a fixed p). q = 1 is the uniform distribution: a leak. The continuous compact groups
(arbitrary rotation, hue) and the cutout projection (C.4.4) need the same q < 1.
"""

from __future__ import annotations

from tf_biggan.augment.leak import applied_with_probability, check_leak
from tf_biggan.augment.spec import spec_for
from tf_biggan.errors import UserError

DISCRETE_GROUPS = (("xflip", 2), ("rotate90", 4), ("lumaflip", 2))
NEEDS_IDENTITY = ("rotate", "hue", "cutout")


def check_config(cfg, where: str = "augment") -> None:
    """UserError naming the key and the fix if any configured augmentation leaks."""
    if cfg.kind in ("ada", "fixed"):
        key = "augment.p_max" if cfg.kind == "ada" else "augment.p"
        p_top = cfg.p_max if cfg.kind == "ada" else cfg.p
        spec = spec_for(cfg.pipeline)
        for name, order in DISCRETE_GROUPS:
            q = min(getattr(spec, name) * p_top, 1.0)
            if q > 0:
                leaks, reason = check_leak(applied_with_probability(order, q))
                if leaks:
                    raise UserError(f"{where}: {key}={p_top} makes the {name} augmentation leak: {reason}. "
                                    f"Keep {key} below 1 (0.8 gives condition number 5, Appendix C.5.1)")
        for name in NEEDS_IDENTITY:
            if getattr(spec, name) * p_top >= 1.0:
                raise UserError(f"{where}: {key}={p_top} applies {name} to every image, which leaks (the "
                                f"identity needs a non-zero probability, Appendix C.4). Keep {key} below 1")
    if cfg.kind == "diffaugment" and "cutout" in cfg.policy and cfg.p >= 1.0:
        raise UserError(f"{where}: augment.p={cfg.p} cuts out of every image, which leaks (Appendix C.4.4; "
                        "data-efficient-gans #84). Use augment.p < 1, e.g. 0.5")
