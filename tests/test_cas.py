"""CAS (tf_biggan/cas): the schedule, weight decay, mixtures, accuracy, bad data, replicas."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

import conftest
from tf_biggan.cas import learning_rate_schedule
from tf_biggan.cas.accuracy import accuracy
from tf_biggan.cas.input import eval_dataset
from tf_biggan.cas.sources import Source, parse_sources, select_mixture
from tf_biggan.config import load_hparams
from tf_biggan.data import tfrecord
from tf_biggan.errors import UserError
from tf_biggan.models.classifiers import build_classifier, decayed_variables, is_batch_norm_variable

IMAGENET_TRAIN = 1281167  # REF resnet_config num_train_images


@pytest.mark.parametrize("protocol, batch, peak", [("cas_resnet50_v2-8", 1024, 0.4), ("cas_resnet50_pod", 8192, 3.2)])
def test_schedule_matches_protocol_at_every_boundary(protocol, batch, peak):
    hp = load_hparams(f"hparams/{protocol}.yaml")
    assert hp.cas.batch_size == batch and hp.cas.epochs == 90
    spe = IMAGENET_TRAIN // batch
    lr = learning_rate_schedule(hp, spe)
    at = lambda step: float(lr(step))  # noqa: E731
    # Reference (CAS A.1; resnet_main.py): 0 -> peak linearly over 5 epochs, x0.1 at 30, 60, 80.
    assert at(0) == 0.0
    assert at(spe) == pytest.approx(peak / 5, rel=1e-6)  # linear: one fifth after epoch 1
    assert at(5 * spe - 1) == pytest.approx(peak * (5 * spe - 1) / (5 * spe), rel=1e-5)
    assert at(5 * spe) == pytest.approx(peak, rel=1e-6)  # end of warm-up
    assert at(30 * spe - 1) == pytest.approx(peak, rel=1e-6)
    assert at(30 * spe) == pytest.approx(peak * 0.1, rel=1e-6)
    assert at(60 * spe - 1) == pytest.approx(peak * 0.1, rel=1e-6)
    assert at(60 * spe) == pytest.approx(peak * 0.01, rel=1e-5)
    assert at(80 * spe - 1) == pytest.approx(peak * 0.01, rel=1e-5)
    assert at(80 * spe) == pytest.approx(peak * 0.001, rel=1e-5)
    assert at(90 * spe - 1) == pytest.approx(peak * 0.001, rel=1e-5)  # the last step
    assert isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule)


def _digits_hp(**cas):
    hp = load_hparams("hparams/cas_digits.yaml")
    return dataclasses.replace(hp, cas=dataclasses.replace(hp.cas, **cas))


def test_weight_decay_skips_batch_norm_and_biases():
    from tf_biggan.cas.train import CasClassifier

    hp = _digits_hp(weight_decay=0.01)
    clf = CasClassifier(hp, tf.distribute.get_strategy(), steps_per_epoch=10)
    model = clf.model
    decayed = {id(v) for v in decayed_variables(model)}
    bn = [v for v in model.trainable_variables if is_batch_norm_variable(model, v)]
    assert len(bn) == 2 * sum("bn" in layer.name for layer in model.layers)  # gamma + beta each
    assert not decayed & {id(v) for v in bn}
    assert not any(id(v) in decayed for v in model.trainable_variables if "bias" in v.path)
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert {id(v) for v in kernels} == decayed and len(kernels) == 1 + 3 * 2 + 1  # stem, 3 blocks x 2, dense (option-A shortcuts: none)
    # The gradient of the decay term: wd * w on kernels, nothing on BN gamma / beta or the bias.
    with tf.GradientTape() as tape:
        _, wd = clf.losses(tf.zeros([2, 16, 16, 3]), tf.constant([0, 1]))
    grads = tape.gradient(wd, model.trainable_variables)
    for v, g in zip(model.trainable_variables, grads):
        if id(v) in decayed:
            np.testing.assert_allclose(g.numpy(), 0.01 * v.numpy(), rtol=1e-5, atol=1e-9)
        else:
            assert g is None
    np.testing.assert_allclose(float(wd), 0.01 * sum(0.5 * np.sum(v.numpy() ** 2) for v in kernels), rtol=1e-5)


def _source(spec, kind, per_class):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    labels = np.random.default_rng(0).permutation(labels)
    return Source(spec, kind, [], labels, np.zeros([1], np.int64))


def test_mixture_gives_exact_per_class_counts():
    hp = _digits_hp(synthetic_images=23)
    real = _source("real:a", "real", [5, 7, 3])
    syn1 = _source("synthetic:b", "synthetic", [6, 2, 9])
    syn2 = _source("synthetic:c", "synthetic", [4, 8, 1])
    counts = select_mixture([real, syn1, syn2], hp.cas, 3)
    per_class = np.array(syn1.per_class(3)) + np.array(syn2.per_class(3))
    assert sorted(per_class.tolist()) == [7, 8, 8] and per_class.sum() == 23  # 23 // 3 each, 2 extra
    assert real.count() == 15 and counts["real_images"] == 15 and counts["synthetic_images"] == 23
    assert counts["synthetic_fraction"] == pytest.approx(23 / 38)
    assert [s["used"] for s in counts["sources"]] == [15, syn1.count(), syn2.count()]
    # Seeded: the same picks again; another seed picks others.
    again = [_source("synthetic:b", "synthetic", [6, 2, 9]), _source("synthetic:c", "synthetic", [4, 8, 1])]
    select_mixture([real] + again, hp.cas, 3)
    assert (again[0].keep == syn1.keep).all() and (again[1].keep == syn2.keep).all()
    # A fraction: k = f x real / (1 - f) = 0.25 x 15 / 0.75 = 5 synthetic images.
    hp = _digits_hp(synthetic_fraction=0.25)
    counts = select_mixture([real, syn1, syn2], hp.cas, 3)
    assert counts["synthetic_images"] == 5 and sorted((np.array(syn1.per_class(3)) + syn2.per_class(3)).tolist()) == [1, 2, 2]
    with pytest.raises(UserError, match="class 2"):  # 4 of class 2 wanted, 1 + 9 = 10 there; class 1: 10
        select_mixture([real, _source("synthetic:d", "synthetic", [9, 9, 3])], _digits_hp(synthetic_images=12).cas, 3)


def test_accuracy_on_a_hand_built_example():
    logits = np.array([[9, 1, 2, 3, 4, 5, 0],    # label 0: top-1
                       [1, 9, 8, 7, 6, 5, 4],    # label 2: rank 2 -> top-5 not top-1
                       [0, 1, 2, 3, 4, 5, 6],    # label 0: rank 7 -> miss
                       [3, 3, 3, 3, 3, 3, 3],    # label 1: all tied -> rank 6 (pessimistic) -> miss
                       [0, 0, 0, 0, 0, 0, 1]], float)  # label 6: top-1
    labels = np.array([0, 2, 0, 1, 6])
    out = accuracy(logits, labels, 7)
    assert out["top1"] == pytest.approx(2 / 5) and out["top5"] == pytest.approx(3 / 5)
    assert out["per_class_top1"] == {"0": 0.5, "1": 0.0, "2": 0.0, "6": 1.0}
    assert out["eval_images"] == 5


def test_bad_labels_and_files_name_the_file(tmp_path):
    jpeg = tf.io.encode_jpeg(np.zeros([16, 16, 3], np.uint8)).numpy()
    good = str(tmp_path / "train-00000-of-00002")
    tfrecord.write_shard(good, [tfrecord.make_example(jpeg, c) for c in (0, 1, 9)])
    bad = str(tmp_path / "train-00001-of-00002")
    tfrecord.write_shard(bad, [tfrecord.make_example(jpeg, 3), tfrecord.make_example(jpeg, 10)])  # stored 11
    with pytest.raises(UserError, match=r"record 1 of .*train-00001-of-00002 has label 11 outside 1\.\.10"):
        parse_sources(str(tmp_path / "train-*"), "--train_data", 10)
    sources = parse_sources(good, "--train_data", 10, cache_dir=str(tmp_path / "cache"))
    assert sources[0].labels.tolist() == [0, 1, 9] and sources[0].kind == "real"
    junk = tmp_path / "junk-0"
    junk.write_bytes(b"not a tfrecord at all, just bytes")
    with pytest.raises(UserError, match="junk-0 is not a TFRecord"):
        parse_sources(str(junk), "--eval_data", 10)
    with pytest.raises(UserError, match="matches no files"):
        parse_sources(str(tmp_path / "nothing-*"), "--eval_data", 10)


def test_one_step_on_two_replicas_equals_one_device():
    """Sync BN (cas.sync_bn, as cas_digits.yaml): batch moments over the global batch, so two replicas of
    half the batch each take exactly the step one device takes on the whole batch."""
    from tf_biggan.cas.train import CasClassifier

    hp = _digits_hp(batch_size=8, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=8).astype(np.int32)

    def one_step(strategy):
        clf = CasClassifier(hp, strategy, steps_per_epoch=1)
        before = [v.numpy() for v in clf.model.weights]
        clf.optimizer.iterations.assign(3)  # mid warm-up: a non-zero learning rate
        ds = tf.data.Dataset.from_tensors((images, labels))
        it = iter(strategy.experimental_distribute_dataset(ds))
        metrics = clf.train_steps(it, tf.constant(1))
        # Scoring splits padded batches over the replicas: 364 held-out digits in batches of 100.
        scores = clf.evaluate(eval_dataset(sources, dataclasses.replace(hp.cas, eval_batch_size=100),
                                           strategy.num_replicas_in_sync))
        return before, [v.numpy() for v in clf.model.weights], {k: float(v) for k, v in metrics.items()}, scores

    sources = parse_sources("digits:test", "--eval_data", 10)
    before, w1, m1, s1 = one_step(tf.distribute.get_strategy())
    _, w2, m2, s2 = one_step(conftest.mirrored_strategy(2))
    assert m1 == pytest.approx(m2, rel=1e-5)
    assert s1["eval_images"] == s2["eval_images"] == 364
    assert s1["top1"] == pytest.approx(s2["top1"], abs=1 / 364) and s1["top5"] == pytest.approx(s2["top5"], abs=1 / 364)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    moved = sum(not np.allclose(a, b) for a, b in zip(w1, before))
    assert moved > len(w1) // 2  # the step did change the weights (and the BN moving statistics)

def test_cifar_shortcut_is_option_a_zero_padded_identity():
    """He et al. 2016 option A: every second pixel, the input's channels, then zeros (numpy); wired in a
    downsampling block, whose output is relu(shortcut) once the residual branch is zeroed (bn2 gamma 0)."""
    from tf_biggan.models.classifiers import ZeroPadShortcut

    x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype(np.float32)
    out = ZeroPadShortcut(8, 2)(tf.constant(x)).numpy()
    expected = np.concatenate([x[:, ::2, ::2], np.zeros((2, 3, 3, 4), np.float32)], axis=-1)
    np.testing.assert_array_equal(out, expected)
    cas = dataclasses.replace(_digits_hp().cas, depth=8, width=4, image_size=8)
    model = build_classifier(cas, 10)
    assert not [l.name for l in model.layers if "proj" in l.name]
    block = "stage2_block1"
    bn2 = model.get_layer(f"{block}_bn2")
    bn2.gamma.assign(tf.zeros_like(bn2.gamma))
    bn2.beta.assign(tf.zeros_like(bn2.beta))
    probe = tf.keras.Model(model.input, [model.get_layer(f"{block}_conv1").input, model.get_layer(f"{block}_out").output])
    images = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    block_in, block_out = (t.numpy() for t in probe(images, training=False))
    assert block_in.shape == (2, 8, 8, 4) and block_out.shape == (2, 4, 4, 8)
    shortcut = np.concatenate([block_in[:, ::2, ::2], np.zeros((2, 4, 4, 4), np.float32)], -1)
    np.testing.assert_allclose(block_out, np.maximum(shortcut, 0), atol=1e-6)


def test_resnet56_has_he_et_al_parameter_count():
    """He et al. 2016 Table 6: ResNet-56 on CIFAR-10 has 0.85M parameters; with option-A shortcuts the
    trainable count is exactly the convs + BN gamma/beta + dense, counted here by hand."""
    hp = load_hparams("hparams/cas_resnet56_cifar10.yaml")
    model = build_classifier(dataclasses.replace(hp.cas, dtype="float32"), 10)
    n, w = 9, 16
    convs = 27 * w + 2 * n * 9 * w * w + (9 * w * 2 * w + (2 * n - 1) * 9 * (2 * w) ** 2) \
        + (9 * 2 * w * 4 * w + (2 * n - 1) * 9 * (4 * w) ** 2)
    bn = 2 * (w + 2 * n * (w + 2 * w + 4 * w))
    dense = 4 * w * 10 + 10
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == convs + bn + dense == 853_018
    assert round(trainable / 1e6, 2) == 0.85


def test_resnet50_builds_with_protocol_batch_norm():
    hp = load_hparams("hparams/cas_resnet50_v2-8.yaml")
    cas = dataclasses.replace(hp.cas, image_size=32, dtype="float32")
    model = build_classifier(cas, 10)
    bns = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    assert len(bns) == 53 and all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)
    assert model.output_shape == (None, 10) and model.count_params() > 23_000_000


def test_cas_sweep_runs_the_gan_sweep_as_the_cli_would_for_its_missing_thresholds(tmp_path, monkeypatch):
    """A GAN sweep that lacks thresholds is run as `--mode=sweep --model_dir=RUN --inception_path=...
    --hparams_overrides=eval.truncations=[...]` would run it: the same request, then its points read back."""
    import json

    import evaluation_run
    from tf_biggan.cas import truncation_sweep as sweep
    from tf_biggan.evaluation import evaluate

    run = str(tmp_path / "run")
    os.makedirs(run)
    asked = []

    def fake_sweep(hp, request):
        asked.append(request)
        points = [{"truncation": 0.5, "fid": 3.0}, {"truncation": 0.0, "fid": 4.0}]
        with open(os.path.join(run, evaluate.SWEEP_REPORT), "w") as f:
            json.dump({"points": points}, f)

    monkeypatch.setattr(evaluate, "run_sweep", fake_sweep)
    have = sweep._gan_sweep(run, [0.5, 0.0], "inception", log=lambda m: None)
    assert asked == [evaluation_run.request("sweep", run, inception_path="inception",
                                            hparams_overrides="eval.truncations=[0.5,0.0]")]
    assert have == {0.5: {"truncation": 0.5, "fid": 3.0}, 0.0: {"truncation": 0.0, "fid": 4.0}}
    assert sweep._gan_sweep(run, [0.5], None, log=lambda m: None) == have and len(asked) == 1  # all there


def test_cas_sweep_joins_fid_is_and_writes_table_csv_plots(tmp_path, monkeypatch):
    """The sweep's bookkeeping with its stages stubbed (each is tested on its own): which classifiers it
    trains on which data, the join with the GAN sweep, the real + k table, the CSV and both plots."""
    from tf_biggan.cas import truncation_sweep as sweep
    from tf_biggan.config import save_hparams

    run = tmp_path / "run"
    save_hparams(load_hparams("hparams/digits.yaml"), str(run / "hparams.yaml"))
    hp = _digits_hp(sweep_truncations=(0.5, 1.0, 0.0), sweep_real_plus=(100, 200))
    top1 = {"0.5": 0.75, "1": 0.875, "untruncated": 0.8125}  # exact in binary
    calls, synthesized, gan_asked = [], [], []

    def fake_cas(hp_, model_dir, train, evald, strategy=None, log=None):
        calls.append((os.path.basename(model_dir), train, hp_.cas.synthetic_images))
        name = os.path.basename(model_dir)
        t = top1.get(name[len("cas_tau"):], 0.95)
        return {"top1": t, "top5": min(1.0, t + 0.0625), "per_class_top1": {}, "train_images": 1000,
                "synthetic_fraction": 0.1}

    monkeypatch.setattr(sweep, "run_cas", fake_cas)
    monkeypatch.setattr(sweep, "_synthesize", lambda run_dir, out, t, n, log: synthesized.append(t) or
                        os.path.join(out, "train-*"))
    # CAS's τ resamples z outside ±2τ: the GAN sweep's matching points are BigGAN thresholds 2τ.
    monkeypatch.setattr(sweep, "_gan_sweep", lambda run_dir, ts, *a: gan_asked.append(ts) or {
        1.0: {"fid": 30.0, "is": 8.0}, 2.0: {"fid": 10.0, "is": 6.0}, 0.0: {"fid": 12.0, "is": 5.0},
        0.5: {"fid": 99.0, "is": 9.0}})
    report = sweep.run_cas_sweep(hp, str(run), log=lambda m: None)
    assert [(p["truncation"], p["top1"], p["fid"], p["is"]) for p in report["points"]] == [
        (0.5, 0.75, 30.0, 8.0), (1.0, 0.875, 10.0, 6.0), (0.0, 0.8125, 12.0, 5.0)]
    assert gan_asked == [[0.0, 1.0, 2.0]] and synthesized == [0.5, 1.0, 0.0]
    assert [p["z_bound"] for p in report["points"]] == [1.0, 2.0, None]
    assert report["latent_convention"] == "cas_resample" == sweep.CONVENTION
    assert calls[:4] == [("cas_tau0.5", f"synthetic:{run}/cas_sweep/synthetic_tau0.5/train-*", 0),
                         ("cas_tau1", f"synthetic:{run}/cas_sweep/synthetic_tau1/train-*", 0),
                         ("cas_tauuntruncated", f"synthetic:{run}/cas_sweep/synthetic_tauuntruncated/train-*", 0),
                         ("cas_real", "real:digits:train", 0)]
    # The mixtures use the best-CAS truncation (1.0) and add exactly k synthetic images.
    assert calls[4:] == [(f"cas_real_plus_{k}", f"real:digits:train,synthetic:{run}/cas_sweep/synthetic_tau1/train-*", k)
                         for k in (100, 200)]
    assert report["real_plus_synthetic"]["truncation"] == 1.0
    assert [r["synthetic_added"] for r in report["real_plus_synthetic"]["rows"]] == [0, 100, 200]
    with open(run / "cas_sweep_report.csv") as f:
        rows = f.read().splitlines()
    assert rows[0] == ",".join(sweep.CSV_FIELDS) and rows[2].startswith("1.0,2.0,0.875,0.9375,10.0,6.0,1000,")
    assert rows[3].startswith("0.0,,0.8125,")
    for name in sweep.PLOTS.values():
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_crop_is_the_references_central_crop_and_normalisation():
    from tf_biggan.cas.input import eval_preprocess, train_preprocess

    cas = dataclasses.replace(load_hparams("hparams/cas_resnet50_v2-8.yaml").cas, image_size=4, eval_crop_fraction=0.5)
    image = np.arange(8 * 12 * 3).reshape(8, 12, 3).astype(np.uint8)
    out = eval_preprocess(tf.constant(image), cas).numpy()
    # int(0.5 x 8) = 4 px square, offsets ((8 - 4 + 1) // 2, (12 - 4 + 1) // 2) = (2, 4); 4 -> 4 px is exact.
    expected = (image[2:6, 4:8] / 255.0 - np.array(cas.mean)) / np.array(cas.std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Training crops: image_size output, a pure function of the key (resumable), different keys differ.
    cas = dataclasses.replace(cas, image_size=6)
    big = tf.constant(np.random.default_rng(0).integers(0, 255, (40, 30, 3)).astype(np.uint8))
    a = train_preprocess(big, tf.constant([1, 2], tf.int64), cas).numpy()
    assert a.shape == (6, 6, 3)
    np.testing.assert_array_equal(a, train_preprocess(big, tf.constant([1, 2], tf.int64), cas).numpy())
    assert not np.allclose(a, train_preprocess(big, tf.constant([1, 3], tf.int64), cas).numpy())


def test_inception_crop_falls_back_to_the_central_crop_when_no_box_fits():
    """resnet_preprocessing._decode_and_random_crop: when 10 attempts find no box (area 8-100%, aspect
    3/4-4/3), the whole image comes back and the reference takes the central crop instead. A 400 x 3
    strip admits no such box (area >= 96 px needs a side >= 9 at aspect <= 4/3), whatever the key."""
    from tf_biggan.cas.input import train_preprocess

    cas = dataclasses.replace(load_hparams("hparams/cas_resnet50_v2-8.yaml").cas, image_size=2,
                              eval_crop_fraction=0.875, random_flip=False)
    strip = np.random.default_rng(1).integers(0, 255, (400, 3, 3)).astype(np.uint8)
    # int(0.875 x 3) = 2 px square at offsets ((400 - 2 + 1) // 2, (3 - 2 + 1) // 2) = (199, 1); 2 -> 2 px exact.
    expected = (strip[199:201, 1:3] / 255.0 - np.array(cas.mean)) / np.array(cas.std)
    for k in range(5):
        out = train_preprocess(tf.constant(strip), tf.constant([k, 7], tf.int64), cas).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # A square image has valid boxes: crops differ with the key and are not the central one.
    square = np.random.default_rng(2).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    outs = [train_preprocess(tf.constant(square), tf.constant([k, 7], tf.int64), dataclasses.replace(
        cas, image_size=8)).numpy() for k in range(3)]
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])


def _replay_sources(tmp_path):
    """Source A: 30 in-memory zeros (digits:train); B: 23 ones as JPEG TFRecords in 3 files."""
    from tf_biggan.data import digits

    a = parse_sources("real:digits:train", "--train_data", 10)[0]
    a.keep = (a.labels == 0) & (np.cumsum(a.labels == 0) <= 30)
    images, labels = digits.load_digits_split("test")
    ones = np.nonzero(labels == 1)[0][:23]
    examples = [tfrecord.make_example(tf.io.encode_jpeg(np.repeat(np.round(images[i] * 255).astype(np.uint8)[..., None],
                                                                  3, -1)).numpy(), 1) for i in ones]
    for f in range(3):
        tfrecord.write_shard(str(tmp_path / f"train-{f:05d}-of-00003"), examples[f::3])
    b = parse_sources(f"synthetic:{tmp_path}/train-*", "--train_data", 10)[0]
    return [a, b]


def _stream(sources, cas, start, batches):
    from tf_biggan.cas.input import train_dataset

    out = list(train_dataset(sources, cas, global_batch=10, start_step=start).take(batches))
    return np.stack([x.numpy() for x, _ in out]), np.stack([y.numpy() for _, y in out])


def test_cas_input_replays_from_any_step_and_draws_each_epoch_exactly(tmp_path):
    """The training stream is a stateless function of (seed, epoch, position): started at step s it gives
    exactly the uninterrupted stream's batches from s on (crops and flips included), across epoch ends
    (53 records, batches of 10) and shuffle windows (5 records); every epoch holds each record once,
    i.e. exactly 30 zeros and 23 ones, in a new order."""
    sources = _replay_sources(tmp_path)
    cas = dataclasses.replace(_digits_hp().cas, batch_size=10, shuffle_buffer=5)
    images, labels = _stream(sources, cas, 0, 12)
    for start in (1, 5, 6):  # mid-epoch, the batch across the first epoch's end, the second epoch
        again, again_labels = _stream(sources, cas, start, 12 - start)
        np.testing.assert_array_equal(again, images[start:])
        np.testing.assert_array_equal(again_labels, labels[start:])
    flat = labels.reshape(-1)
    for e in range(2):
        assert np.bincount(flat[53 * e:53 * (e + 1)], minlength=2).tolist() == [30, 23]
    # Without random crops / flips each record's image identifies it: each epoch is a permutation.
    plain = dataclasses.replace(cas, train_crop="none", random_flip=False)
    images, _ = _stream(sources, plain, 0, 11)
    flat = images.reshape(110, -1)
    first, second = flat[:53], flat[53:106]
    key = lambda rows: sorted(r.tobytes() for r in rows)  # noqa: E731
    assert len(set(key(first))) == 53 and key(first) == key(second)
    assert not np.array_equal(first, second)
    # Another cas.seed, another order.
    other, _ = _stream(sources, dataclasses.replace(plain, seed=1), 0, 5)
    assert not np.array_equal(other.reshape(50, -1), flat[:50])
