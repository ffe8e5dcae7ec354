"""The project's own classifier: a feature extractor trained on any real labelled dataset.

FID, IS and class accuracy as the paper reports them need Inception (Section 4, Table 2); on a
machine without it, this small convnet trained on the run's real data (the embedded digits by
default) gives the same three numbers, comparable only with themselves, never with published
Inception numbers. `train_classifier` trains it, `Classifier.save` / `load_classifier` keep it
beside a run. Initial weights and the data order come from the `eval_classifier_init` /
`eval_classifier_data` seed streams (`tf_biggan.seeds`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, paths, seeds
from tf_biggan.errors import UserError
from tf_biggan.evaluation import metrics
from tf_biggan.evaluation.extractor import FeatureExtractor, Images, to_channels

log = logging.getLogger(__name__)



def _build_classifier_model(image_shape: Sequence[int], num_classes: int, width: int, seed: int):
    """A small VGG-style convnet: [conv3x3-ReLU x2, 2x2 max-pool] stages until the feature map
    is at most 4x4 (two stages at 16 px), then a 3x3 conv, global average pooling (the
    'pool' activations, like Inception's pool_3) and a linear layer (the logits).

    No batch norm, so training and inference compute the same function and the pool features
    do not depend on the batch they are computed in.
    """
    import keras

    h, w, c = (int(s) for s in image_shape)
    layer_seeds = iter(seeds.numpy_rng("eval_classifier_init", seed).integers(0, 2 ** 31 - 1, size=64).tolist())

    def init():
        return keras.initializers.HeNormal(seed=next(layer_seeds))

    inputs = keras.Input((h, w, c))
    x, ch, size = inputs, width, min(h, w)
    while True:
        for _ in range(2):
            x = keras.layers.Conv2D(ch, 3, padding="same", activation="relu", kernel_initializer=init())(x)
        if size <= 4:
            break
        x = keras.layers.MaxPooling2D(2)(x)
        size //= 2
        ch = min(ch * 2, 8 * width)
    x = keras.layers.Conv2D(ch, 3, padding="same", activation="relu", kernel_initializer=init())(x)
    pool = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits",
                                kernel_initializer=keras.initializers.GlorotUniform(seed=next(layer_seeds)))(pool)
    return keras.Model(inputs, [pool, logits])


def _random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to `max_shift` pixels (edge padding): label-preserving
    augmentation that keeps a small classifier from memorising pixel positions."""
    if max_shift <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
    dy = rng.integers(0, 2 * max_shift + 1, size=n)
    dx = rng.integers(0, 2 * max_shift + 1, size=n)
    out = np.empty_like(images)
    for oy in range(2 * max_shift + 1):
        for ox in range(2 * max_shift + 1):
            sel = (dy == oy) & (dx == ox)
            out[sel] = padded[sel, oy:oy + h, ox:ox + w]
    return out


class Classifier(FeatureExtractor):
    """The project's classifier as a feature extractor: pool features and logits for any image
    size (inputs are resized to the training size, bilinear with antialiasing) and channel count.
    """

    def __init__(self, model, image_shape: Sequence[int], num_classes: int, width: int, seed: int):
        self.model = model
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.seed = int(seed)
        self.batch_size = 256

    @property
    def name(self) -> str:
        h = hashlib.sha256(json.dumps(self._config(), sort_keys=True).encode())
        for v in self.model.weights:
            h.update(np.ascontiguousarray(v.numpy()).tobytes())
        return f"classifier-{h.hexdigest()[:12]}"

    def _config(self):
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "width": self.width, "seed": self.seed, "format": 1}

    def _forward(self, images):
        h, w, c = self.image_shape
        images = to_channels(images, c)
        if images.shape[1] != h or images.shape[2] != w:
            images = tf.image.resize(images, [h, w], method="bilinear", antialias=True)
        pool, logits = self.model(images, training=False)
        return pool, logits

    def accuracy(self, images: Images, labels, batch_size: Optional[int] = None) -> float:
        """Share of images classified as their label."""
        return metrics.classification_accuracy(self.logits(images, batch_size), labels)

    # Saving -------------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        """Write config + weights to `directory` atomically (`tf_biggan.atomic.directory`), so a
        reader never sees a half-written classifier."""
        with atomic.directory(directory) as tmp:
            atomic.write_json(os.path.join(tmp, "classifier.json"), self._config())
            self.model.save_weights(os.path.join(tmp, "classifier.weights.h5"))


def load_classifier(directory: str) -> Classifier:
    """A classifier saved by `Classifier.save`; a `UserError` if the directory is not one."""
    cfg_path = os.path.join(directory, "classifier.json")
    weights = os.path.join(directory, "classifier.weights.h5")
    if not (tf.io.gfile.exists(cfg_path) and tf.io.gfile.exists(weights)):
        raise UserError(f"{directory!r} does not hold a saved classifier (classifier.json and "
                        "classifier.weights.h5); train one with tf_biggan.evaluation.classifier.train_classifier "
                        "on the real dataset and save it there")
    cfg = paths.read_json(cfg_path)
    model = _build_classifier_model(cfg["image_shape"], cfg["num_classes"], cfg["width"], cfg["seed"])
    model.load_weights(weights)
    return Classifier(model, cfg["image_shape"], cfg["num_classes"], cfg["width"], cfg["seed"])


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 15,
                     seed: int = 0, batch_size: int = 64, learning_rate: float = 2e-3, width: int = 16,
                     max_shift: Optional[int] = None) -> Classifier:
    """Train the project's classifier on real labelled images (float in [-1, 1], NHWC).

    Adam with a cosine-decayed learning rate, cross-entropy, random translations of up to
    `max_shift` pixels (default: image size // 16, i.e. 1 px at 16 px). Deterministic for a
    seed on a given machine: initialisers, shuffling and augmentation all draw from `seed`;
    no global RNG state is touched. On the embedded digits (16 px) the default settings reach
    >= 97% held-out accuracy in a few seconds on 2 CPU cores.
    """
    import keras

    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int32).reshape(-1)
    if images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {images.shape} must be NHWC with one label each ({labels.shape})")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    n = images.shape[0]
    if max_shift is None:
        max_shift = max(1, min(images.shape[1:3]) // 16)
    model = _build_classifier_model(images.shape[1:], num_classes, width, seed)
    steps_per_epoch = int(np.ceil(n / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch)
    opt = keras.optimizers.Adam(schedule)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            _, logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = seeds.numpy_rng("eval_classifier_data", seed)
    for epoch in range(epochs):
        order = rng.permutation(n)
        x_epoch = _random_shift(images[order], max_shift, rng)
        y_epoch = labels[order]
        for i in range(0, n, batch_size):
            loss = step(x_epoch[i:i + batch_size], y_epoch[i:i + batch_size])
        log.debug("classifier epoch %d loss %.4f", epoch, float(loss))
    return Classifier(model, images.shape[1:], num_classes, width, seed)


