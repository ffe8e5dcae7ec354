"""Feature extractors for FID / IS / KID / class accuracy (Section 4, Table 2), and the one factory
that picks the extractor of a run (`feature_extractor`).

The BigGAN paper scores samples with Inception (Table 2: IS and FID "computed with TF-GAN"). Every
extractor has one interface, `FeatureExtractor`:

    ext.activations(images)            -> [N, D] pool features (FID, KID)
    ext.logits(images)                 -> [N, K] class logits (IS, class accuracy)
    ext.activations_and_logits(images) -> both from one forward computation
    ext.name                           -> a stable id, part of the real-statistics cache key

where `images` are float in [-1, 1], NHWC, any size and 1 or 3 channels, given as one array or
as an iterable of batches (a `tf.data.Dataset` of images, a generator), so 50k samples never
need to sit in memory at once.

Two kinds:

* `InceptionExtractor` / `load_inception(path)`: Inception from a LOCAL path. Either a TF-Hub /
  SavedModel directory such as TF-GAN's Inception module (outputs 'pool_3', 2048-d, and
  'logits', 1008) or a Keras InceptionV3 file (`.h5` weights of `keras.applications.InceptionV3`
  or a whole `.keras` model). Nothing is ever downloaded: a missing path is a `UserError` that
  says how to get the file and where to give it.
* `Classifier` / `train_classifier(images, labels, ...)` / `load_classifier(dir)`: the project's
  small convnet (`tf_biggan.evaluation.classifier`, re-exported here), trained on any real
  labelled dataset, so FID, IS and class accuracy work on machines without Inception.

The interface is `tf_biggan.evaluation.extractor`; real-data statistics and their cache live in
`tf_biggan.evaluation.real_stats`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Callable, Mapping, Optional, Sequence

import tensorflow as tf

from tf_biggan.errors import UserError
from tf_biggan.evaluation.classifier import Classifier, load_classifier, train_classifier  # noqa: F401 (public here)
from tf_biggan.evaluation.extractor import FeatureExtractor, Images, to_channels  # noqa: F401 (public here)

INCEPTION_SIZE = 299  # TF-GAN's INCEPTION_DEFAULT_IMAGE_SIZE

def _file_fingerprint(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with tf.io.gfile.GFile(p, "rb") as f:  # the module may be on gs://
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Inception from a local path.

_HOW_TO_GET_INCEPTION = (
    "FID and IS as the paper reports them need the Inception network on local disk; tf_biggan "
    "never downloads it. On a machine with internet access, either\n"
    "  (a) download TF-GAN's Inception module from tfhub.dev/tensorflow/tfgan/eval/inception/1 "
    "(append ?tf-hub-format=compressed to the URL to get a .tar.gz), unpack it into a directory "
    "(it holds saved_model.pb and variables/), copy that directory here and give its path; or\n"
    "  (b) in Python run keras.applications.InceptionV3(weights='imagenet').save_weights("
    "'inception_v3.weights.h5') and give the path of that file.\n"
    "Without either, evaluate with the project's own classifier (train_classifier / "
    "load_classifier), whose scores are comparable only among themselves.")


def load_inception(path: Optional[str], batch_size: int = 64) -> "InceptionExtractor":
    """The Inception extractor from a local path, or a `UserError` that says how to get one."""
    if not path:
        raise UserError("no Inception path was given.\n" + _HOW_TO_GET_INCEPTION)
    path = os.path.expanduser(str(path))
    if not tf.io.gfile.exists(path):
        raise UserError(f"Inception path {path!r} does not exist.\n" + _HOW_TO_GET_INCEPTION)
    return InceptionExtractor(path, batch_size=batch_size)


class InceptionExtractor(FeatureExtractor):
    """Inception pool features and logits from a local SavedModel/TF-Hub directory or Keras file.

    Preprocessing follows TF-GAN (`tfgan.eval.preprocess_image` + the Inception module):
    bilinear resize to 299x299 and pixel values in [-1, 1]. For the TF-Hub/SavedModel module the
    [-1, 1] images are first mapped to TF-GAN's [0, 255] input range and then scaled exactly as
    `preprocess_image` does, (x - 128) / 128, so activations match TF-GAN's to float precision.
    Keras InceptionV3 was trained with `preprocess_input` = x / 127.5 - 1, which is our [-1, 1]
    range unchanged. Grayscale images are repeated to 3 channels.

    For a Keras model the activations are the 2048-d output of the 'avg_pool' layer and the
    logits are that vector times the 'predictions' layer's kernel plus its bias (pre-softmax,
    1000 classes), whatever activation the file's head was saved with.
    """

    def __init__(self, path: str, batch_size: int = 64, pool_key: str = "pool_3",
                 logits_key: str = "logits"):
        self.path = path
        self.batch_size = batch_size
        self.pool_key = pool_key
        self.logits_key = logits_key
        self._head = None  # (kernel, bias) of a Keras classifier head
        if tf.io.gfile.isdir(path):
            if not any(tf.io.gfile.exists(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
                raise UserError(f"{path!r} is a directory without saved_model.pb: not a TF-Hub/SavedModel "
                                "module. If you downloaded a .tar.gz, unpack it there first.\n"
                                + _HOW_TO_GET_INCEPTION)
            self._kind = "saved_model"
            self._call = self._load_saved_model(path)
            fp_files = [os.path.join(path, f) for f in ("saved_model.pb", "saved_model.pbtxt",
                                                        os.path.join("variables", "variables.index"))]
        elif path.endswith((".h5", ".keras")):
            self._kind = "keras"
            self._call = self._load_keras(path)
            fp_files = [path]
        else:
            raise UserError(f"{path!r} is neither a SavedModel directory nor a Keras .h5/.keras file.\n"
                            + _HOW_TO_GET_INCEPTION)
        self.name = f"inception-{self._kind}-{_file_fingerprint([p for p in fp_files if tf.io.gfile.exists(p)])}"

    # Loading ------------------------------------------------------------------------------

    def _load_saved_model(self, path):
        try:
            obj = tf.saved_model.load(path)
        except (ValueError, RuntimeError):
            # TF1 Hub-format modules hold several MetaGraphs; the module itself is the one
            # tagged with the empty set (what tensorflow_hub.load picks).
            try:
                obj = tf.saved_model.load(path, tags=[])
            except Exception as e:  # noqa: BLE001 -- any load failure is the user's file
                raise UserError(f"could not load the SavedModel at {path!r}: {e}\n" + _HOW_TO_GET_INCEPTION) from e
        self._module = obj  # keep variables alive
        if callable(obj):
            return obj
        sigs = dict(getattr(obj, "signatures", {}))
        if not sigs:
            raise UserError(f"the SavedModel at {path!r} is neither callable nor has a signature")
        sig = sigs.get("default") or sigs.get("serving_default") or next(iter(sigs.values()))
        arg_names = list(sig.structured_input_signature[1].keys())
        if len(arg_names) != 1:
            raise UserError(f"the SavedModel at {path!r} takes inputs {arg_names}; expected one image input")
        return lambda images: sig(**{arg_names[0]: images})

    def _load_keras(self, path):
        import keras  # deferred: only Keras files need it

        try:
            if path.endswith(".keras"):
                model = keras.saving.load_model(path, compile=False)
            else:
                model = keras.applications.InceptionV3(weights=None, include_top=True, classifier_activation=None)
                try:
                    with warnings.catch_warnings():
                        # A "notop" file warns about the missing head before it raises.
                        warnings.simplefilter("ignore")
                        model.load_weights(path)
                except ValueError:
                    # "notop" weights (include_top=False): features only, no logits.
                    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg")
                    model.load_weights(path)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"could not load Keras InceptionV3 from {path!r}: {e}\n" + _HOW_TO_GET_INCEPTION) from e
        try:
            pool = model.get_layer("avg_pool").output
        except ValueError:
            pool = model.outputs[0]
        self._module = keras.Model(model.inputs, pool)
        try:
            head = model.get_layer("predictions")
            self._head = (tf.constant(head.kernel.numpy()), tf.constant(head.bias.numpy()))
        except ValueError:
            self._head = None
        return lambda images: self._module(images, training=False)

    # Running ------------------------------------------------------------------------------

    def _forward(self, images):
        images = to_channels(images, 3)
        if self._kind == "saved_model":
            # [-1, 1] -> TF-GAN's [0, 255] input, then its preprocess_image: bilinear resize
            # to 299 and (x - 128) / 128.
            x = (images + 1.0) * 127.5
            x = tf.image.resize(x, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
            x = (x - 128.0) / 128.0
        else:
            x = tf.image.resize(images, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
        out = self._call(x)
        if isinstance(out, Mapping):
            if self.pool_key not in out:
                raise UserError(f"the Inception module at {self.path!r} has outputs {sorted(out)}, "
                                f"not {self.pool_key!r}")
            acts = out[self.pool_key]
            logits = out.get(self.logits_key)
        else:
            acts, logits = out, None
        acts = tf.reshape(acts, [tf.shape(acts)[0], -1])  # pool_3 is [N, 1, 1, 2048]
        if logits is None and self._head is not None:
            logits = tf.matmul(acts, self._head[0]) + self._head[1]
        if logits is not None:
            logits = tf.reshape(logits, [tf.shape(logits)[0], -1])
        return acts, logits


# --------------------------------------------------------------------------------------------
# The extractor of a run.

CLASSIFIER_DIR = "eval_classifier"


def feature_extractor(hp, model_dir: Optional[str], inception_path: Optional[str] = None,
                      log: Callable[[str], None] = print) -> FeatureExtractor:
    """The extractor a run's FID / IS / KID / class accuracy are computed with (Section 4, Table 2).

    `inception_path` given: Inception from that LOCAL path (a missing path is a UserError naming
    --inception_path and how to get the file). Otherwise the project's classifier, trained on the
    run's real training data (at most eval.classifier_max_examples images, eval.classifier_epochs
    epochs, seed train.seed) the first time and loaded from `MODEL_DIR/eval_classifier` after
    that, so every evaluation of a run uses the same classifier and the same cached statistics.
    """
    from tf_biggan.evaluation.real_data import real_images

    if inception_path:
        try:
            return load_inception(inception_path, batch_size=hp.eval.batch_size)
        except UserError as exc:
            raise UserError(f"--inception_path={inception_path}: {exc}") from None
    directory = os.path.join(model_dir, CLASSIFIER_DIR) if model_dir else None
    if directory and tf.io.gfile.exists(os.path.join(directory, "classifier.json")):
        return load_classifier(directory)
    images, labels = real_images(hp, "train", hp.eval.classifier_max_examples)
    log(f"no --inception_path: training the project's classifier on {images.shape[0]} real training "
        f"images ({hp.eval.classifier_epochs} epochs; once per run"
        + (f", cached in {directory})" if directory else ")")
        + ". Its FID/IS are comparable only with themselves, not with published Inception numbers")
    clf = train_classifier(images, labels, hp.data.num_classes, epochs=hp.eval.classifier_epochs,
                           seed=hp.train.seed)
    if directory:
        clf.save(directory)
    return clf
