"""Generators and discriminators of BigGAN (Appendix B, Figure 15) and BigGAN-deep (Figure 16).

The models are imported on first use (PEP 562), so that `tf_biggan.models.arch`, which validates a
config, is importable without TensorFlow (tf_biggan/config.py checks hparams before TF starts).
"""

__all__ = ["Generator", "Discriminator", "build_models"]


def build_models(hp):
    """(G, D) for a validated HParams, unbuilt (weights are created on the first call)."""
    from tf_biggan.models.discriminator import Discriminator
    from tf_biggan.models.generator import Generator

    return Generator(hp.model, hp.data.num_classes), Discriminator(hp.model, hp.data.num_classes)


def __getattr__(name):
    if name == "Generator":
        from tf_biggan.models.generator import Generator
        return Generator
    if name == "Discriminator":
        from tf_biggan.models.discriminator import Discriminator
        return Discriminator
    raise AttributeError(f"module 'tf_biggan.models' has no attribute {name!r}")
