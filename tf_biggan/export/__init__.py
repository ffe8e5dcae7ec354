"""What leaves a run: the TF-Hub module (hub.py) and synthetic ImageNet-layout TFRecord shards (synthesize.py)."""
