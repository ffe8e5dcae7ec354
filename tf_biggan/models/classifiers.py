"""The classifiers of the Classification Accuracy Score (CAS, Ravuri & Vinyals 2019, Appendix A).

    build_classifier(cas, num_classes) -> keras.Model, images [B, S, S, 3] (normalised) -> logits

* `resnet50`: ImageNet (CAS A.1): `keras.applications.ResNet50(weights=None)`, He et al.'s original
  v1 layout: the stride-2 of each stage's first bottleneck sits on its first 1x1 conv (3.86 G
  multiply-adds per 224 px image). The tensorflow/tpu reference strides the 3x3 instead ("v1.5",
  ~4.1 G multiply-adds, reported ~0.5% more top-1): a known difference, the price of
  using the Keras model rather than a copy of the reference's. Convs carry biases (Keras's choice; BN's beta makes them redundant).
  The BatchNorm layers are rebuilt with the protocol's momentum / epsilon (the reference's
  0.9 / 1e-5; Keras ships 0.99 / 1.001e-5) and, with `cas.sync_bn`, cross-replica moments.
* `resnet_cifar`: the CIFAR ResNet of He et al. 2016 Section 4.2 (depth 6n + 2: a 3x3 stem, three
  stages of n basic blocks at widths w, 2w, 4w, strides 1, 2, 2, global average pooling, a dense
  layer). ResNet-56 (CAS A.2) is depth 56, width 16 (0.85M parameters, He et al. Table 6); the
  digits protocol uses a shallow one. Shortcuts are identities; where a stage halves the size and
  doubles the width, the identity of every second pixel with zero channels appended ("option A",
  parameter-free: Section 4.2, "we use identity shortcuts in all cases"), not a projection.

BatchNorm under tf.distribute: Keras BN normalises with PER-REPLICA batch moments unless
`synchronized=True`, which all-reduces the moments (the global-batch statistics, what a single
device with the same global batch computes). `cas.sync_bn` chooses; the reference TPU code uses
per-replica moments (its BN sees 128 images per core at batch 1024 on a v2-8).
"""

from __future__ import annotations

import keras
from keras import layers

from tf_biggan import seeds
from tf_biggan.errors import UserError

ARCHES = ("resnet50", "resnet_cifar")


def _bn(cas, name: str):
    return layers.BatchNormalization(momentum=cas.bn_momentum, epsilon=cas.bn_epsilon,
                                     synchronized=cas.sync_bn, name=name)


def _conv(filters: int, kernel: int, stride: int, name: str, seed: int):
    # He-normal fan-out init, as the reference ResNets (variance_scaling 2.0, fan_out); no bias:
    # every conv is followed by BN, whose beta is the bias.
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal",
                                                                               seed=seed),
                         name=name)


class ZeroPadShortcut(layers.Layer):
    """He et al. 2016 option A: x subsampled by `stride` (every stride-th pixel, as a 1x1 stride-s
    conv would see it) with zero channels appended up to `filters`. No parameters."""

    def __init__(self, filters: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.stride = int(filters), int(stride)

    def call(self, x):
        x = x[:, ::self.stride, ::self.stride, :]
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.filters - x.shape[-1]]])

    def compute_output_shape(self, shape):
        ceil = lambda n: None if n is None else -(-n // self.stride)  # noqa: E731
        return (shape[0], ceil(shape[1]), ceil(shape[2]), self.filters)

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, stride=self.stride)


def resnet_cifar(cas, num_classes: int) -> keras.Model:
    """He et al. 2016 Section 4.2 ResNet-(6n+2) for small images."""
    if (cas.depth - 2) % 6 != 0 or cas.depth < 8:
        raise UserError(f"cas.depth={cas.depth}: a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, 56, 110)")
    n = (cas.depth - 2) // 6
    seed = seeds.int_seed("cas_init", cas.seed)
    counter = iter(range(10_000))
    inputs = keras.Input((cas.image_size, cas.image_size, 3), name="images")
    x = _conv(cas.width, 3, 1, "stem_conv", seed + next(counter))(inputs)
    x = layers.ReLU(name="stem_relu")(_bn(cas, "stem_bn")(x))
    for stage, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2))):
        filters = cas.width * mult
        for block in range(n):
            s = stride if block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            shortcut = x
            if s != 1 or x.shape[-1] != filters:
                shortcut = ZeroPadShortcut(filters, s, name=f"{name}_shortcut")(x)
            y = _conv(filters, 3, s, f"{name}_conv1", seed + next(counter))(x)
            y = layers.ReLU(name=f"{name}_relu1")(_bn(cas, f"{name}_bn1")(y))
            y = _conv(filters, 3, 1, f"{name}_conv2", seed + next(counter))(y)
            y = _bn(cas, f"{name}_bn2")(y)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed),
                          name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"resnet{cas.depth}")


def resnet50(cas, num_classes: int) -> keras.Model:
    """keras.applications.ResNet50(weights=None), logits out, BN set to the protocol's values."""
    keras.utils.set_random_seed(seeds.int_seed("cas_init", cas.seed))  # the applications' initialisers
    base = keras.applications.ResNet50(weights=None, include_top=True, classes=num_classes,
                                       input_shape=(cas.image_size, cas.image_size, 3),
                                       classifier_activation=None)
    config = base.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"].update(momentum=cas.bn_momentum, epsilon=cas.bn_epsilon, synchronized=cas.sync_bn)
    model = keras.Model.from_config(config)
    model.set_weights(base.get_weights())
    return model


def build_classifier(cas, num_classes: int) -> keras.Model:
    if cas.arch == "resnet50":
        return resnet50(cas, num_classes)
    if cas.arch == "resnet_cifar":
        return resnet_cifar(cas, num_classes)
    raise UserError(f"cas.arch={cas.arch!r}: expected one of {', '.join(ARCHES)}")


def is_batch_norm_variable(model: keras.Model, variable) -> bool:
    """True for the gamma / beta (and moving statistics) of a BatchNormalization layer."""
    ids = {id(v) for layer in model.layers if isinstance(layer, layers.BatchNormalization)
           for v in layer.weights}
    return id(variable) in ids


def decayed_variables(model: keras.Model) -> list:
    """The variables weight decay applies to: conv and dense KERNELS only.

    Not BN gamma / beta (the protocol: "weight decay not applied to BN parameters", the reference's
    `'batch_normalization' not in v.name`) and not biases. The reference decays the one dense bias
    (its convs have none); here biases are excluded throughout, the usual Goyal et al. choice; it
    differs from the reference by num_classes scalars.
    """
    out = []
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            out.append(layer.kernel)
    return out
