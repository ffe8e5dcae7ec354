"""Generators and discriminators of BigGAN (Appendix B, Figure 15) and BigGAN-deep (Figure 16)."""

from tf_biggan.models.discriminator import Discriminator
from tf_biggan.models.generator import Generator


def build_models(hp):
    """(G, D) for a validated HParams, unbuilt (weights are created on the first call)."""
    return Generator(hp.model, hp.data.num_classes), Discriminator(hp.model, hp.data.num_classes)


__all__ = ["Generator", "Discriminator", "build_models"]
