"""Named seed streams: the ONE table of every random stream tf_biggan draws from.

Every random draw is a stateless function of (stream, seed, counter): `stream` names what the
numbers are for (training latents, evaluation latents, a classifier's initial weights, ...),
`seed` is the user's seed (`train.seed`, `--seed`, ...) and `counter` says which draw of the
stream it is (the training step, the sample batch, the shard). Two different streams never share
a key, whatever the seeds: the stream id occupies the high bits of the key's first word.
(Stateless draws are what TPUs need, where op seeds are ignored; compare_gan did the same.)

    key(stream, seed, counter=0)  -> tf int64 [2], for tf.random.stateless_*
    int_seed(stream, seed)        -> python int, for Keras initialisers and numpy Generators
    numpy_rng(stream, seed)       -> numpy.random.Generator

Add a stream here (a new id, never reuse one) rather than inventing `seed * 1000 + k` locally.
"""

from __future__ import annotations

# stream -> id. Ids are part of every key: changing one changes that stream's numbers.
STREAMS = {
    # training (training/step.py)
    "train_z": 1,
    "train_y": 2,
    "train_sample_grid": 3,  # fixed z of the periodic sample grid
    "train_latent_aux": 4,  # extra draws of Appendix E training latents (e.g. per-sample variance)
    "train_sample_stats": 5,  # standing-statistics latents of the periodic sample grid (train.sample_stats_*)
    "train_d_dropout": 6,  # D's dropout masks (stability.d_dropout, Appendix I)
    # sampling and evaluation
    "standing_stats": 10,  # latents of the standing-statistics passes (Appendix C.1)
    "eval_z": 11,
    "eval_y": 12,
    "qualitative": 13,  # interpolations, neighbours, memorisation figures
    "synthesize": 14,  # synthetic shards (counter = shard index); the exported module's
    # sample_latents(n, seed, t) draws counter 0, so a module reproduces shard 0 of a synthesis.
    # 15 retired (was export_latents, now the synthesize stream above).
    # classifiers (feature extractor of evaluation, CAS)
    "eval_classifier_init": 20,
    "eval_classifier_data": 21,
    "cas_init": 22,
    "cas_data": 23,  # shuffling and crops of the CAS input
    "cas_mixture": 24,  # which real / synthetic images enter a mixture
    # augmentation
    "augment": 30,
    "augment_heldout": 31,  # which held-out reals D scores for ADA's r_v (counter = training step)
    # data pipeline
    "data_shuffle": 40,
    "data_flip": 41,
    "data_label": 42,  # one label of a multi-label image
    "data_split": 43,  # prepare_data's validation split of an image folder (counter = hash of the class)
}

SEED_BITS = 24  # user seeds are in [0, 2**24); the stream id sits above them
MAX_SEED = (1 << SEED_BITS) - 1


def int_seed(stream: str, seed: int) -> int:
    """A python int unique to (stream, seed), < 2**31 (fits every seed argument)."""
    if stream not in STREAMS:
        raise KeyError(f"unknown seed stream {stream!r}; add it to tf_biggan/seeds.py STREAMS")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} out of range [0, {MAX_SEED}]")
    return (STREAMS[stream] << SEED_BITS) | seed


def key(stream: str, seed, counter=0):
    """Stateless RNG key [int_seed(stream, seed), counter] (int64 [2]); `counter` may be a tensor, and
    so may `seed` (an exported module's input: then it is not range-checked, only masked)."""
    import tensorflow as tf

    if isinstance(seed, (tf.Tensor, tf.Variable)):
        if stream not in STREAMS:
            raise KeyError(f"unknown seed stream {stream!r}; add it to tf_biggan/seeds.py STREAMS")
        first = tf.bitwise.bitwise_or(tf.constant(STREAMS[stream] << SEED_BITS, tf.int64),
                                      tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), MAX_SEED))
    else:
        first = tf.constant(int_seed(stream, seed), tf.int64)
    return tf.stack([first, tf.cast(counter, tf.int64)])


def numpy_rng(stream: str, seed: int, counter: int = 0):
    """A numpy Generator for (stream, seed, counter)."""
    import numpy as np

    return np.random.default_rng([int_seed(stream, seed), int(counter)])
