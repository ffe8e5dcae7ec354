"""The sharded writer both `--mode=prepare_data` and `--mode=synthesize` use (tf_biggan/data/shards.py).

Its resume behaviour is tested here once, with a trivial example source (record k of the sequence is
the bytes b"example k"; no model, no images): a run killed between shards, a stale temporary of a
killed write and a shard whose marker no longer matches are resumed to the bytes of one
uninterrupted run, complete shards are not rewritten, a changed plan is refused with one line, and
the manifest is written last. The modes' own tests check what each writes into the shards.
"""

import os

import pytest
import tensorflow as tf

from tf_biggan import atomic
from tf_biggan.data.shards import MANIFEST, ShardWriter, plan_shards, shard_bounds
from tf_biggan.errors import UserError

TOTAL, NUM_SHARDS = 23, 5
PLAN = {"seed": 0, "num_shards": NUM_SHARDS}


class Killed(Exception):
    """Stands for the process dying in the middle of a shard."""


def example(k: int) -> bytes:
    return f"example {k}".encode()


def run(out, plan=PLAN, kill_in=None):
    """One run of the writer over the fake source; (written, removed, manifest, missing). `kill_in`:
    the shard index whose third record raises Killed."""
    writer = ShardWriter(str(out), plan_shards("train", TOTAL, NUM_SHARDS),
                         companions=lambda name: [f"extra/{name}.txt"], companions_required=True)
    writer.pin(".fake_plan.json", plan, "fake job", " (e.g. --seed=...)")
    todo, removed = writer.resume()
    written = []
    for shard in todo:
        def records(shard=shard):
            for k in range(shard.start, shard.end):
                if shard.index == kill_in and k == shard.start + 2:
                    raise Killed
                yield example(k)

        writer.write(shard, records(), marker=lambda shard=shard: {"first": shard.start},
                     companions=lambda shard=shard: atomic.write_text(f"{out}/extra/{shard.name}.txt", "x"))
        written.append(shard.name)
    manifest, missing = writer.finish(lambda markers: {"records": sum(m["records"] for m in markers.values()),
                                                       "shards": sorted(markers)})
    return written, removed, manifest, missing


def tree(directory):
    """{relative path: bytes} of every file below `directory`, hidden ones included."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return out


def test_the_plan_cuts_contiguous_runs_of_near_equal_size():
    shards = plan_shards("validation", TOTAL, NUM_SHARDS)
    assert [s.name for s in shards] == [f"validation-{i:05d}-of-00005" for i in range(5)]
    assert [(s.start, s.end) for s in shards] == [(0, 4), (4, 9), (9, 13), (13, 18), (18, 23)]  # k * 23 // 5
    assert shard_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)] and shard_bounds(3, 3) == [(0, 1), (1, 2), (2, 3)]


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    written, removed, manifest, missing = run(whole)
    assert len(written) == NUM_SHARDS and removed == 0 and missing == []
    assert manifest == {"records": TOTAL, "shards": [f"train-{i:05d}-of-00005" for i in range(5)]}
    records = [r.numpy() for i in range(5) for r in tf.data.TFRecordDataset(str(whole / f"train-{i:05d}-of-00005"))]
    assert records == [example(k) for k in range(TOTAL)]  # shard i holds examples [23 i // 5, 23 (i + 1) // 5)

    with pytest.raises(Killed):  # dies in the middle of shard 2: shards 0 and 1 are complete
        run(killed, kill_in=2)
    names = sorted(os.listdir(killed))
    assert "train-00001-of-00005" in names and "train-00002-of-00005" not in names and MANIFEST not in names
    assert tf.io.gfile.glob(str(killed / "train-*")) == [str(killed / f"train-0000{i}-of-00005") for i in (0, 1)]
    # What a SIGKILL leaves: temporaries of a shard, a marker and a companion; plus a shard whose
    # marker no longer matches its size, and a temporary that belongs to no shard of this writer.
    stale = [".train-00002-of-00005.tmp-dead", "..train-00003-of-00005.done.tmp-dead",
             "extra/.train-00004-of-00005.txt.tmp-dead"]
    for name in stale + [".notes.txt.tmp-keep"]:
        (killed / name).write_bytes(b"half")
    with open(killed / "train-00001-of-00005", "ab") as f:
        f.write(b"!")
    before = os.stat(killed / "train-00000-of-00005")
    written, removed, manifest, missing = run(killed)
    assert written == [f"train-{i:05d}-of-00005" for i in (1, 2, 3, 4)] and removed == len(stale) and missing == []
    after = os.stat(killed / "train-00000-of-00005")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert not any((killed / name).exists() for name in stale)
    (killed / ".notes.txt.tmp-keep").unlink()  # not one of this writer's files: left alone
    assert tree(killed) == tree(whole)
    times = {p: os.stat(killed / p).st_mtime_ns for p in tree(killed)}
    assert times[MANIFEST] == max(times.values())  # written last

    # A complete directory: a rerun writes nothing; a shard whose companion is gone is written again.
    assert run(killed)[0] == [] and tree(killed) == tree(whole)
    os.remove(killed / "extra" / "train-00003-of-00005.txt")
    assert run(killed)[0] == ["train-00003-of-00005"] and tree(killed) == tree(whole)


def test_a_changed_plan_is_refused_with_one_line(tmp_path):
    out = tmp_path / "out"
    run(out)
    files = tree(out)
    with pytest.raises(UserError) as info:
        run(out, plan=dict(PLAN, seed=1))
    message = str(info.value)
    assert message.startswith(f"--output_dir={out} holds shards of a different fake job (seed: 0 there, 1 now)")
    assert "--seed=..." in message and "new --output_dir" in message and "\n" not in message
    assert tree(out) == files  # nothing touched
