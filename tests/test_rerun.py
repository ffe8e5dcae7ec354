"""The one rerun-settings check (rerun.py), the one TF_CONFIG reader (strategy.tf_config /
worker_position) and the non-chief checkpoint directory (checkpoints.WorkerCheckpointManager)."""

import json
import os

import pytest
import tensorflow as tf

from tf_biggan import rerun
from tf_biggan.errors import UserError
from tf_biggan.training import strategy
from tf_biggan.training.checkpoints import WorkerCheckpointManager, worker_temp_dir


def test_pin_writes_once_and_refuses_other_settings_naming_each(tmp_path):
    path = str(tmp_path / "plan.json")
    plan = {"seed": 0, "cas": {"epochs": 2, "arch": "resnet"}, "sizes": (1, 2)}
    refuse = lambda diffs: UserError(rerun.describe(diffs))  # noqa: E731
    rerun.pin(path, plan, refuse, write=False)
    assert not os.path.exists(path)  # a non-chief worker writes nothing
    rerun.pin(path, plan, refuse)
    with open(path) as f:
        assert json.load(f) == {"seed": 0, "cas": {"epochs": 2, "arch": "resnet"}, "sizes": [1, 2]}
    rerun.pin(path, dict(plan, sizes=[1, 2]), refuse)  # as JSON reads it back: the same
    with pytest.raises(UserError) as err:
        rerun.pin(path, {"seed": 1, "cas": {"epochs": 3, "arch": "resnet"}, "sizes": (1, 2), "new": True}, refuse)
    assert str(err.value) == "cas.epochs: 2 there, 3 now; new: None there, True now; seed: 0 there, 1 now"
    assert rerun.differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 5, "c": 3}}, lambda k: k == "a.b") == [("a.c", 2, 3)]


def test_tf_config_is_read_in_one_place(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy.tf_config() is None and strategy.worker_position() == (0, 1)
    cluster = {"chief": ["c:1"], "worker": ["a:1", "b:2"]}
    for task, expected in [({"type": "chief"}, (0, 3)), ({"type": "worker", "index": 1}, (2, 3))]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert strategy.worker_position() == expected
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(UserError, match="task index 2 is outside the 2 workers"):
        strategy.worker_position()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "ps"}}))
    with pytest.raises(UserError, match="task type 'ps' does not synthesize"):
        strategy.worker_position()
    for bad, match in [("{not json", "not valid JSON"), (json.dumps({"cluster": cluster}), "'cluster' and 'task'")]:
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(UserError, match=match):
            strategy.tf_config()
        with pytest.raises(UserError, match=match):
            strategy.make_strategy()


def test_non_chief_saves_into_a_temporary_directory_it_deletes(tmp_path):
    checkpoint = tf.train.Checkpoint(v=tf.Variable(3.0))
    chief = WorkerCheckpointManager(checkpoint, str(tmp_path / "ckpt"), 2)
    assert chief.save(7).endswith("ckpt-7") and tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    other = WorkerCheckpointManager(checkpoint, str(tmp_path / "ckpt"), 2, chief=False, worker_id=3,
                                    temp_root=str(tmp_path))
    assert other.temp_dir == worker_temp_dir(str(tmp_path), 3) == str(tmp_path / ".worker3_tmp")
    assert other.save(8) is None and not os.path.exists(other.temp_dir)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-7")
