"""tf_biggan: BigGAN and BigGAN-deep (Brock et al., 2019) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
