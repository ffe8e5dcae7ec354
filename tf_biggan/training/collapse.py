"""Detecting training collapse online from the logged spectra and losses (Section 4, Appendices F, G).

What the paper saw at collapse: "most G layers have well-behaved spectral norms, but some layers
[...] grow throughout training and explode at collapse" (Section 4.1, Figure 3a, Figure 20);
"D's loss approaches zero during training, but undergoes a sharp upward jump at collapse"
(Section 4.2); with D frozen, G "immediately and dramatically collapses" (G.1). G.1 also warns
that "there is no consistent threshold at which collapse occurs": so the rule compares every
signal with its OWN recent history, never with an absolute value.

The rule (evaluated at every record, i.e. every `train.sv_every` steps, on the last `window`
records before it; nothing fires before `window` records exist):

  spectral  for some G layer, σ0(now) ≥ sigma_jump × median(σ0 over the window)
            ("explode": a slow growth of a few % per record never gets there);
  losses    D's loss is near zero, d_loss(now) ≤ d_loss_floor, while G's jumps:
            g_loss(now) ≥ median(g_loss over the window) + g_loss_jump;
            or D's loss itself jumps: d_loss(now) ≥ median(d_loss window) + d_loss_jump.

A collapse is declared when either criterion holds on `patience` consecutive records (a single
noisy record is not a collapse). `CollapseDetector.update` returns the event once; in training,
`CollapseWatch` (an action of the loop) logs it, keeps the checkpoints from before it
(intervene.keep_checkpoints_before) and stops or continues (`stability.on_collapse`). Thresholds are
`stability.collapse_*` hparams.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional

import numpy as np

from tf_biggan import atomic
from tf_biggan.errors import UserError
from tf_biggan.training.monitor import sigma_scalars

G_SIGMA_PREFIX = "sv/G/"
D_LOSS = "losses/d_loss"
G_LOSS = "losses/g_loss"


@dataclasses.dataclass
class CollapseEvent:
    step: int
    reasons: List[str]

    def to_dict(self) -> dict:
        return {"step": int(self.step), "reasons": list(self.reasons)}


@dataclasses.dataclass
class Record:
    step: int
    g_sigma0: Dict[str, float]  # G layer -> σ0
    d_loss: float
    g_loss: float


def record_from_scalars(step: int, scalars: Dict[str, float]) -> Optional[Record]:
    """A Record from one step's logged scalars (sv/G/<layer>/sigma0, losses/d_loss, losses/g_loss),
    or None if that step has no spectra or no losses."""
    sigma0 = {k[len(G_SIGMA_PREFIX):-len("/sigma0")]: float(v) for k, v in scalars.items()
              if k.startswith(G_SIGMA_PREFIX) and k.endswith("/sigma0")}
    if not sigma0 or D_LOSS not in scalars or G_LOSS not in scalars:
        return None
    return Record(int(step), sigma0, float(scalars[D_LOSS]), float(scalars[G_LOSS]))


class CollapseDetector:
    """The documented rule above, fed one record at a time; `update` returns the event once."""

    def __init__(self, window: int = 5, sigma_jump: float = 2.0, d_loss_floor: float = 0.1,
                 g_loss_jump: float = 1.0, d_loss_jump: float = 1.0, patience: int = 2):
        if window < 1 or patience < 1:
            raise ValueError("window and patience must be >= 1")
        self.window, self.sigma_jump, self.patience = window, sigma_jump, patience
        self.d_loss_floor, self.g_loss_jump, self.d_loss_jump = d_loss_floor, g_loss_jump, d_loss_jump
        self.history: Deque[Record] = deque(maxlen=window)
        self.streak: List[str] = []
        self.count = 0
        self.onset: Optional[int] = None
        self.event: Optional[CollapseEvent] = None

    @classmethod
    def from_config(cls, st) -> "CollapseDetector":
        return cls(window=st.collapse_window, sigma_jump=st.collapse_sigma_jump,
                   d_loss_floor=st.collapse_d_loss_floor, g_loss_jump=st.collapse_g_loss_jump,
                   d_loss_jump=st.collapse_d_loss_jump, patience=st.collapse_patience)

    def reasons(self, rec: Record) -> List[str]:
        """Which criteria `rec` meets against the window before it (empty: healthy)."""
        if len(self.history) < self.window:
            return []
        out = []
        for layer, value in rec.g_sigma0.items():
            past = [r.g_sigma0[layer] for r in self.history if layer in r.g_sigma0]
            if past and value >= self.sigma_jump * float(np.median(past)):
                out.append(f"sigma0 of G layer {layer} exploded: {value:.4g} >= {self.sigma_jump:g} x "
                           f"median {float(np.median(past)):.4g}")
        g_med = float(np.median([r.g_loss for r in self.history]))
        d_med = float(np.median([r.d_loss for r in self.history]))
        if rec.d_loss <= self.d_loss_floor and rec.g_loss >= g_med + self.g_loss_jump:
            out.append(f"D's loss near zero ({rec.d_loss:.4g}) while G's jumped to {rec.g_loss:.4g} "
                       f"(median {g_med:.4g})")
        if rec.d_loss >= d_med + self.d_loss_jump:
            out.append(f"D's loss jumped to {rec.d_loss:.4g} (median {d_med:.4g})")
        return out

    def update(self, rec: Record) -> Optional[CollapseEvent]:
        """Feeds one record; the CollapseEvent on the record that completes `patience`, else None."""
        found = self.reasons(rec)
        if found:
            if not self.count:
                self.onset = rec.step
            self.count += 1
            self.streak.extend(found)
        else:
            self.count, self.streak, self.onset = 0, [], None
            self.history.append(rec)  # only healthy records form the reference window
        if self.event is None and self.count >= self.patience:
            self.event = CollapseEvent(self.onset, sorted(set(self.streak)))
            return self.event
        return None


def records_from_jsonl(lines: Iterable[str]) -> List[Record]:
    """Records of a run's train/scalars.jsonl ({"step", "tag", "value"} a line), in step order."""
    by_step: Dict[int, Dict[str, float]] = {}
    for line in lines:
        line = line.strip()
        if line:
            item = json.loads(line)
            by_step.setdefault(int(item["step"]), {})[item["tag"]] = float(item["value"])
    records = (record_from_scalars(s, by_step[s]) for s in sorted(by_step))
    return [r for r in records if r is not None]


def scan(records: Iterable[Record], detector: CollapseDetector) -> Optional[CollapseEvent]:
    """The first collapse in a recorded trace (offline use of the same rule), or None."""
    for rec in records:
        event = detector.update(rec)
        if event is not None:
            return event
    return None


# ---------------------------------------------------------------------------------------------
# In the training loop (one of training/loop.py's actions).

class CollapseStop(UserError):
    """stability.on_collapse = stop: a collapse was detected at `step` (the loop writes the report)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class CollapseWatch:
    """The loop's collapse action (cadence train.sv_every, right after the σ action and before the
    save action of the same step, so the collapsed step is never among the kept): feeds the detector
    G's σ0 and the losses; on a collapse keeps the checkpoints from before it, writes collapse.json,
    and stops (`CollapseStop`) or goes on (stability.on_collapse)."""

    def __init__(self, trainer, summaries):
        self.trainer, self.summaries = trainer, summaries
        self.detector = CollapseDetector.from_config(trainer.hp.stability)

    def __call__(self, state) -> None:
        from tf_biggan.training import intervene

        trainer, st = self.trainer, self.trainer.hp.stability
        losses = {D_LOSS: state.metrics["d_loss"], G_LOSS: state.metrics["g_loss"]}
        event = self.detector.update(record_from_scalars(state.step, dict(sigma_scalars(trainer.singular_values()),
                                                                          **losses)))
        if event is None:
            return
        kept = []
        if trainer.model_dir:
            kept = intervene.keep_checkpoints_before(trainer.model_dir, event.step, st.keep_before_collapse)
            atomic.write_json(f"{trainer.model_dir}/collapse.json", dict(event.to_dict(), kept=kept))
        self.summaries.scalars(state.step, {"stability/collapse": 1.0})
        text = "; ".join(event.reasons)
        trainer.progress.log(f"COLLAPSE detected at step {event.step}: {text}; kept {kept or 'nothing'}")
        if st.on_collapse == "stop":
            raise CollapseStop(
                f"training collapse detected at step {event.step} ({text}). Checkpoints from before it "
                f"are kept: {', '.join(kept) or 'none had been saved'}. Intervene from one (Appendix G.1): "
                f"--mode=train --model_dir={trainer.model_dir} --checkpoint=<one of them> "
                f"--intervene=g_lr=...,d_lr=...,freeze=g|d,reset_adam=g|d|both", event.step)
