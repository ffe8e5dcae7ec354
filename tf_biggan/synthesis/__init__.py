"""Synthetic ImageNet-layout TFRecord shards from a run or a TF-Hub module (synthesize.py; generators.py: where the images come from)."""
