"""Real images for training and evaluation: `pipeline.make_dataset` is the entry point.

    pipeline.py    make_dataset(hp.data, resolution, batch_size, input_context, training, seed):
                   dispatch on data.kind, host sharding, interleave, cache, bad-record policy
    tfrecord.py    the ImageNet TFRecord layout: make_example / write_shard (also used by the
                   synthetic-data writer) and parse_record
    tfds.py        prepared TFDS datasets (no downloads), read file by file
    digits.py      the embedded scikit-learn digits with a fixed held-out split
    preprocess.py  the paper's crop along the long edge + area resize (Appendix C), flips, [-1, 1]
    inspect.py     --mode=inspect_data: image grid with class ids + inspect_report.json

Modules are imported on use (`from tf_biggan.data import pipeline`); importing the package
itself loads nothing heavy.
"""
