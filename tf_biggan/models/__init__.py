"""Generators and discriminators of BigGAN (Appendix B, Figure 15) and BigGAN-deep (Figure 16).

The networks are imported on first use (PEP 562), so that `tf_biggan.models.arch`, which validates a
config, is importable without TensorFlow (tf_biggan/config.py checks hparams before TF starts).
"""

import importlib

__all__ = ["Generator", "Discriminator", "build_models"]

_MODULES = {"Generator": "tf_biggan.models.generator", "Discriminator": "tf_biggan.models.discriminator"}


def __getattr__(name):
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'tf_biggan.models' has no attribute {name!r}")


def build_models(hp):
    """(G, D) for a validated HParams, unbuilt (weights are created on the first call)."""
    generator, discriminator = __getattr__("Generator"), __getattr__("Discriminator")
    return generator(hp.model, hp.data.num_classes), discriminator(hp.model, hp.data.num_classes)
