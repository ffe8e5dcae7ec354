"""--mode=inspect_data: the grid shows real preprocessed images with their class ids; the report counts."""

import json

import numpy as np
from PIL import Image

from tf_biggan.config import load_hparams
from tf_biggan.data import digits, inspect
from tf_biggan.requests import InspectDataRequest

from test_data_tfrecord import hand_example, jpeg_bytes, write_raw


def request(model_dir, inspect_images=None):
    return InspectDataRequest(str(model_dir), inspect_images=inspect_images)


def test_digits_report_and_grid(tmp_path):
    hp = load_hparams("digits")
    report = inspect.run_inspect_data(hp, request(tmp_path))
    on_disk = json.loads((tmp_path / "inspect_report.json").read_text())
    assert on_disk == report
    _, train_y = digits.load_digits_split("train")
    assert report["count_per_class"] == {str(c): int(n) for c, n in enumerate(np.bincount(train_y))}
    assert report["images_counted"] == len(train_y) and report["complete_pass"] is True
    assert report["images_per_sec"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inspect_grid.png", "inspect_report.json"]

    # Each grid tile is a training image (16 px shown at 64 px) of the class written under it.
    grid = np.asarray(Image.open(tmp_path / "inspect_grid.png").convert("RGB"))
    train_x, _ = digits.load_digits_split("train")
    train_u8 = np.round(train_x * 255).astype(np.uint8)
    labels = report["grid_labels"]
    assert len(labels) == 64 and grid.shape == (2 + 8 * (64 + 14 + 2), 2 + 8 * (64 + 2), 3)
    for k in range(0, 64, 9):
        r, c = divmod(k, 8)
        y, x = 2 + r * (64 + 14 + 2), 2 + c * (64 + 2)
        tile = grid[y:y + 64:4, x:x + 64:4, 0]  # 16 x 16, grey
        eight = tile[::2, ::2]
        matches = [i for i in np.nonzero(train_y == labels[k])[0] if np.array_equal(train_u8[i], eight)]
        assert matches, f"tile {k} is not a training digit of class {labels[k]}"
        label_strip = grid[y + 64:y + 64 + 14, x:x + 64]
        assert (label_strip < 128).any()  # the class id is drawn


def test_limit_and_skipped_records_reported(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_raw(data / "train-00000-of-00001",
              [hand_example(jpeg_bytes(20, 30, k), k % 4 + 1) for k in range(11)]
              + [hand_example(b"GIF89a not a jpeg", 1)])
    hp = load_hparams("digits", f"data.kind=tfrecord,data.pattern={data}/train-*,data.num_classes=4,"
                      "data.on_corrupt=skip,model.resolution=16")
    report = inspect.run_inspect_data(hp, request(tmp_path / "run"))
    assert report["count_per_class"] == {"0": 3, "1": 3, "2": 3, "3": 2}
    assert report["skipped_records"] == 1 and report["complete_pass"] is True
    assert report["pattern"] == f"{data}/train-*"
    limited = inspect.run_inspect_data(hp, request(tmp_path / "run2", inspect_images=5))
    assert limited["images_counted"] == 5 and limited["complete_pass"] is False
    assert sum(limited["count_per_class"].values()) == 5


def test_through_the_app(tmp_path):
    from tf_biggan import main

    argv = ["tf-biggan", "--mode=inspect_data", "--hparams=digits", f"--model_dir={tmp_path}",
            "--hparams_overrides=data.split=test"]
    main.FLAGS(argv)
    try:
        assert main.main([]) == 0
    finally:
        main.FLAGS.unparse_flags()
    report = json.loads((tmp_path / "inspect_report.json").read_text())
    _, test_y = digits.load_digits_split("test")
    assert report["images_counted"] == len(test_y)
