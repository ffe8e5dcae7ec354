"""Feature extractors (tf_biggan.evaluation.features, .classifier) and the statistics they feed
(tf_biggan.evaluation.real_stats; the cache itself is tested in test_evaluate.py)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tf_biggan.evaluation import features, metrics, real_stats
from tf_biggan.errors import UserError

# This module's fixtures are built once: all its tests run on one xdist worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("features")


# ---------------------------------------------------------------------------------------------
# The project's classifier on the embedded digits (sklearn 8x8, upscaled to 16 px, in [-1, 1]).


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x8 = d.images.astype(np.float32) / 8.0 - 1.0  # pixel values 0..16 -> [-1, 1]
    x16 = np.kron(x8, np.ones((1, 2, 2), np.float32))[..., None]  # area upscale to 16 px
    perm = np.random.default_rng(0).permutation(len(x16))
    train, test = perm[:1437], perm[1437:]
    return x16[train], d.target[train], x16[test], d.target[test]


@pytest.fixture(scope="module")
def classifier(digits):
    x, y, _, _ = digits
    return features.train_classifier(x, y, num_classes=10, seed=0)


def test_classifier_reaches_97_percent_on_held_out_digits(classifier, digits):
    _, _, x_test, y_test = digits
    assert classifier.accuracy(x_test, y_test) >= 0.97


def test_classifier_outputs_and_any_input_size(classifier, digits):
    _, _, x_test, y_test = digits
    acts, logits = classifier.activations_and_logits(x_test[:50])
    assert acts.shape[0] == 50 and acts.ndim == 2 and logits.shape == (50, 10)
    # Any size and channel count: 8 px grayscale and 32 px RGB are resized/mapped.
    small = tf.image.resize(x_test[:50], [8, 8], method="area").numpy()
    rgb32 = np.repeat(np.kron(x_test[:50], np.ones((1, 2, 2, 1), np.float32)), 3, axis=-1)
    assert classifier.logits(small).shape == (50, 10)
    assert metrics.classification_accuracy(classifier.logits(rgb32), y_test[:50]) >= 0.9
    # Batches from an iterable (a tf.data pipeline of (image, label)) give the same numbers.
    ds = tf.data.Dataset.from_tensor_slices((x_test[:50], y_test[:50])).batch(16)
    np.testing.assert_allclose(classifier.activations(ds), acts, rtol=1e-5, atol=1e-6)
    ds = tf.data.Dataset.from_tensor_slices({"image": x_test[:50], "label": y_test[:50]}).batch(32)
    np.testing.assert_allclose(classifier.activations(ds), acts, rtol=1e-5, atol=1e-6)


def test_classifier_fid_and_is_behave(classifier, digits):
    x, y, x_test, y_test = digits
    real = classifier.activations(x)
    fid_real = metrics.frechet_distance(real, classifier.activations(x_test))
    noise = np.random.default_rng(1).uniform(-1, 1, size=x_test.shape).astype(np.float32)
    fid_noise = metrics.frechet_distance(real, classifier.activations(noise))
    assert fid_real * 10 < fid_noise
    is_mean, _ = metrics.inception_score(classifier.logits(x_test), splits=3)
    assert is_mean > 8.0  # confident and spread over 10 classes


def test_classifier_save_load_round_trip(classifier, digits, tmp_path):
    _, _, x_test, _ = digits
    target = tmp_path / "clf"
    classifier.save(str(target))
    classifier.save(str(target))  # overwriting an existing directory is atomic too
    assert sorted(os.listdir(tmp_path)) == ["clf"]  # no temporary directories left behind
    loaded = features.load_classifier(str(target))
    np.testing.assert_allclose(loaded.logits(x_test[:40]), classifier.logits(x_test[:40]), rtol=1e-6, atol=1e-6)
    assert loaded.name == classifier.name


def test_load_classifier_missing_is_user_error(tmp_path):
    with pytest.raises(UserError, match="train_classifier"):
        features.load_classifier(str(tmp_path / "nothing"))


def test_classifier_training_is_deterministic_per_seed(digits):
    x, y, _, _ = digits
    a = features.train_classifier(x[:256], y[:256], 10, epochs=1, seed=3)
    b = features.train_classifier(x[:256], y[:256], 10, epochs=1, seed=3)
    c = features.train_classifier(x[:256], y[:256], 10, epochs=1, seed=4)
    assert a.name == b.name != c.name


# ---------------------------------------------------------------------------------------------
# Inception from a local path.


def test_missing_inception_path_is_a_helpful_user_error(tmp_path):
    for path in (None, "", str(tmp_path / "missing")):
        with pytest.raises(UserError) as e:
            features.load_inception(path)
        msg = str(e.value)
        assert "tfgan/eval/inception/1" in msg and "InceptionV3" in msg and "never downloads" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="saved_model.pb"):
        features.load_inception(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="neither"):
        features.load_inception(str(tmp_path / "weights.bin"))


class _TinyInception(tf.Module):
    """Stands in for TF-GAN's module: 299x299x3 in [-1, 1] -> {'pool_3': [N,1,1,D], 'logits'}."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([3, 8], seed=[1, 2]))
        self.v = tf.Variable(tf.random.stateless_normal([8, 5], seed=[3, 4]))

    def _apply(self, images):
        mean = tf.reduce_mean(images, axis=[1, 2])
        pool = tf.nn.relu(mean @ self.w)
        return {"pool_3": tf.reshape(pool, [-1, 1, 1, 8]), "logits": pool @ self.v, "mean": mean,
                "lo": tf.reduce_min(images, axis=[1, 2, 3]), "hi": tf.reduce_max(images, axis=[1, 2, 3])}

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def __call__(self, images):
        return self._apply(images)

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def serve(self, images):
        return self._apply(images)


def _tfgan_preprocess(images):
    # TF-GAN's preprocess_image on [0, 255] input: bilinear resize to 299, (x - 128) / 128.
    x = (images + 1.0) * 127.5
    return (tf.image.resize(x, [299, 299], method="bilinear") - 128.0) / 128.0


@pytest.mark.parametrize("callable_module", [True, False])
def test_local_saved_model_loads_and_is_scaled_like_tfgan(tmp_path, callable_module):
    module = _TinyInception()
    path = str(tmp_path / "inception")
    if callable_module:
        tf.saved_model.save(module, path)
    else:  # only a 'default' signature, like a TF1 Hub-format module
        root = tf.Module()
        root.weights = [module.w, module.v]  # tracked, so the signature's captures are saved
        tf.saved_model.save(root, path, signatures={"default": module.serve.get_concrete_function()})
    ext = features.load_inception(path, batch_size=3)
    assert ext.name.startswith("inception-saved_model-")

    # Constant images: the module must see TF-GAN's scaling of each value.
    values = np.array([-1.0, 0.0, 1.0], np.float32)
    const = np.ones((3, 16, 16, 1), np.float32) * values[:, None, None, None]  # grayscale, 16 px
    acts, logits = ext.activations_and_logits(const)
    expected_in = ((values + 1.0) * 127.5 - 128.0) / 128.0  # -1, -0.00390625, 0.9921875
    expected_pool = np.maximum(np.repeat(expected_in[:, None], 3, 1) @ module.w.numpy(), 0)
    np.testing.assert_allclose(acts, expected_pool, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, expected_pool @ module.v.numpy(), rtol=1e-5, atol=1e-6)

    # Random RGB images of another size, in 2 batches: same as preprocessing by hand.
    imgs = np.random.default_rng(0).uniform(-1, 1, size=(5, 24, 24, 3)).astype(np.float32)
    acts, logits = ext.activations_and_logits(imgs)
    ref = module._apply(_tfgan_preprocess(imgs))
    np.testing.assert_allclose(acts, ref["pool_3"].numpy().reshape(5, 8), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, ref["logits"].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # the full-width InceptionV3 (24M parameters, a 96 MB weights file): long by nature
def test_keras_inception_v3_weights_file(tmp_path):
    import keras

    model = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    path = str(tmp_path / "inception_v3.weights.h5")
    model.save_weights(path)
    ext = features.load_inception(path, batch_size=2)
    imgs = np.random.default_rng(0).uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    acts, logits = ext.activations_and_logits(imgs)
    assert acts.shape == (2, 2048) and logits.shape == (2, 1000)
    # Keras InceptionV3 takes [-1, 1] directly (preprocess_input 'tf' mode): no rescaling.
    ref = model(tf.image.resize(imgs, [299, 299], method="bilinear"), training=False)
    np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-4, atol=1e-6)
    os.remove(path)  # ~96 MB: do not leave it in pytest's kept temporary directories


# ---------------------------------------------------------------------------------------------
# Statistics of an image set.


def test_feature_statistics_feed_the_metrics(classifier, digits):
    x, y, x_test, y_test = digits
    # Streamed (images, labels) batches give what one array with its labels gives.
    stats = real_stats.feature_statistics(classifier, [(x[i:i + 500], y[i:i + 500]) for i in range(0, len(x), 500)],
                                          num_classes=10)
    whole = real_stats.feature_statistics(classifier, x, labels=y, num_classes=10)
    np.testing.assert_allclose(stats["sigma"], whole["sigma"], rtol=1e-6, atol=1e-9)
    assert stats["class_accuracy"][0] == whole["class_accuracy"][0]
    assert set(stats) >= {"mu", "sigma", "kid_activations", "inception_score", "class_accuracy", "num_examples"}
    assert stats["class_accuracy"][0] > 0.97 and stats["num_examples"][0] == len(x)
    acts = classifier.activations(x_test)
    mu, sigma = metrics.activation_statistics(acts)
    fid = metrics.frechet_distance_from_stats(stats["mu"], stats["sigma"], mu, sigma)
    assert fid == pytest.approx(metrics.frechet_distance(classifier.activations(x), acts), rel=1e-6)
