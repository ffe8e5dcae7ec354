"""The one check that a rerun uses the settings of the run it resumes.

Every resumable output pins the settings that fix its bytes: a training run its hparams.yaml
(training/checkpoints.py), a CAS run MODEL_DIR/cas_plan.json (cas/train.py), a synthesis its
`.synthesize_plan.json` (synthesis/synthesize.py). A rerun with other settings would mix two runs in
one directory, so it is refused with one line naming every setting that differs (dotted keys of
the nested settings) and how to go on.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple


def flatten(settings: dict, prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(saved: dict, now: dict, may_change: Callable[[str], bool] = lambda key: False
                ) -> List[Tuple[str, Any, Any]]:
    """(dotted key, saved value, value now) for each setting that differs, sorted by key; keys for
    which `may_change(key)` holds are left out. Both sides are compared as JSON reads them back
    (tuples as lists)."""
    old, new = flatten(_as_json(saved)), flatten(_as_json(now))
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if not may_change(k) and old.get(k) != new.get(k)]


def describe(diffs: List[Tuple[str, Any, Any]], there: str = "there") -> str:
    """'key: OLD there, NEW now; ...'."""
    return "; ".join(f"{k}: {old!r} {there}, {new!r} now" for k, old, new in diffs)


def pin(path: str, settings: dict, refusal: Callable[[List[Tuple[str, Any, Any]]], Exception],
        write: bool = True) -> None:
    """Writes `settings` to the JSON file `path` when there is none (and `write`: the chief of a
    multi-worker run); raises `refusal(differences)` when the file holds other settings."""
    from tf_biggan import atomic, paths

    existing: Optional[dict] = paths.read_json_or_none(path)
    if existing is not None:
        diffs = differences(existing, settings)
        if diffs:
            raise refusal(diffs)
    elif write:
        atomic.write_json(path, settings)


def _as_json(payload: dict) -> dict:
    return json.loads(json.dumps(payload))
