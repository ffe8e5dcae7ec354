"""The feature-extractor interface every FID / IS / KID extractor implements (Section 4, Table 2).

    ext.activations(images)            -> [N, D] pool features (FID, KID)
    ext.logits(images)                 -> [N, K] class logits (IS, class accuracy)
    ext.activations_and_logits(images) -> both from one forward computation
    ext.name                           -> a stable id, part of the real-statistics cache key

`images` are float in [-1, 1], NHWC, any size and 1 or 3 channels, given as one array or as an
iterable of batches, so 50k samples never need to sit in memory at once. Implementations:
Inception (`tf_biggan.evaluation.features`) and the project's classifier
(`tf_biggan.evaluation.classifier`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from tf_biggan.errors import UserError

Images = Union[np.ndarray, tf.Tensor, Iterable]


class FeatureExtractor:
    """Images in [-1, 1] (NHWC, any size) -> (pool activations [N, D], logits [N, K]).

    Subclasses implement `_forward(batch)`, a TF function of one batch returning
    (activations, logits-or-None), and set `name`.
    """

    name: str = "extractor"
    batch_size: int = 64

    def _forward(self, images: tf.Tensor) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
        raise NotImplementedError

    def _outputs(self, images: tf.Tensor) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
        # One graph per image shape (H, W, C), any batch size: the last, smaller batch does
        # not retrace, and the static H, W, C keep resizing and channel mapping static.
        fns = self.__dict__.setdefault("_compiled", {})
        key = tuple(images.shape[1:])
        if key not in fns:
            fns[key] = tf.function(self._forward, input_signature=[
                tf.TensorSpec([None, *key], tf.float32)])
        return fns[key](images)

    def _batches(self, images: Images, batch_size: Optional[int]):
        bs = batch_size or self.batch_size
        if isinstance(images, (np.ndarray, tf.Tensor)):
            if len(images.shape) != 4:
                raise ValueError(f"images must be NHWC, got shape {tuple(images.shape)}")
            for i in range(0, int(images.shape[0]), bs):
                yield images[i:i + bs]
        else:
            for batch in images:
                if isinstance(batch, (tuple, list)):  # (images, labels) datasets: take the images
                    batch = batch[0]
                elif isinstance(batch, Mapping):  # {"image": ..., "label": ...} datasets
                    batch = batch["image"]
                yield batch

    def activations_and_logits(self, images: Images, batch_size: Optional[int] = None
                               ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Pool features [N, D] and logits [N, K] (None if this extractor has no classifier head)."""
        acts, logits = [], []
        for batch in self._batches(images, batch_size):
            a, lg = self._outputs(tf.convert_to_tensor(batch, dtype=tf.float32))
            acts.append(np.asarray(a, dtype=np.float32))
            if lg is not None:
                logits.append(np.asarray(lg, dtype=np.float32))
        if not acts:
            raise ValueError("no images given")
        return np.concatenate(acts), (np.concatenate(logits) if logits else None)

    def activations(self, images: Images, batch_size: Optional[int] = None) -> np.ndarray:
        """Pool features [N, D], the input of FID and KID."""
        return self.activations_and_logits(images, batch_size)[0]

    def logits(self, images: Images, batch_size: Optional[int] = None) -> np.ndarray:
        """Class logits [N, K], the input of IS and class accuracy."""
        logits = self.activations_and_logits(images, batch_size)[1]
        if logits is None:
            raise UserError(f"the feature extractor {self.name} has no classifier head, so it gives no "
                            "logits for Inception Score or class accuracy; use a full classifier "
                            "(TF-GAN's Inception module, InceptionV3 weights with the top, or the "
                            "project's classifier)")
        return logits


def to_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
    """Grayscale <-> RGB so 1-channel datasets (digits) go through RGB networks and back."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return tf.tile(images, [1, 1, 1, channels])
    if channels == 1:
        return tf.reduce_mean(images, axis=-1, keepdims=True)
    raise ValueError(f"cannot map {have}-channel images to {channels} channels")


