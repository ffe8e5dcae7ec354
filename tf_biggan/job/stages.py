"""The main job, `--mode=all`: train -> truncation sweep -> TF-Hub export -> synthesize -> CAS, one command.

Each stage is the mode of the same name run on the same model dir (no logic is repeated here), and
each is skipped when its outputs are already complete, so rerunning the same command after a kill
resumes where it stopped (the stages themselves also resume: training from its last checkpoint,
synthesis shard by shard, CAS from its last checkpoint).

    train        MODEL_DIR/train_report.json at train.train_steps          (paper Section 3)
    sweep        MODEL_DIR/sweep_report.json of the trained step           (Section 3.1, Table 2)
    export       MODEL_DIR/export/assets/metadata.json of the trained step (TF-Hub module)
    synthesize   MODEL_DIR/synthetic/manifest.json, complete, at the chosen truncation
    cas_real     MODEL_DIR/cas_real/cas_report.json: the classifier trained on real images
    cas_synthetic MODEL_DIR/cas_synthetic/cas_report.json: trained on synthetic images only
                 (Ravuri & Vinyals: CAS = accuracy on REAL held-out data of a classifier trained
                 only on generated data; the real-data classifier is its reference)

The truncation for synthesis is the sweep's best-FID threshold: CAS rewards diversity as much as
fidelity, and FID (unlike IS) penalises lost diversity, so the min-FID point is where a classifier
trained on samples is expected to do best among the sweep's thresholds (Azizi et al. pick sampling
settings on the FID / CAS Pareto front for the same reason).

At the end: one summary table on the console, MODEL_DIR/report.json and MODEL_DIR/report.md (sample
grid, IS-vs-FID curve and the CAS comparison as pictures).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional

from tf_biggan import paths
from tf_biggan.errors import UserError
from tf_biggan.job.report import REPORT_JSON, print_summary, write_report
from tf_biggan.progress import Progress
from tf_biggan.requests import (AllRequest, CasRequest, ExportRequest, SweepRequest, SynthesizeRequest, TrainRequest,
                                from_values, shared_values)



def _read_json(path: str) -> Optional[dict]:
    return paths.read_json_or_none(path)  # the model dir may be gs://: tf.io.gfile


_log = Progress("all").log  # `[all] message` lines (progress.py: the one way to print progress)

# Fields of the stages' requests that the job decides rather than takes from its own request
# (`MainJob.stage_request`): set per stage (the run, paths, the sweep's truncation, the shard count),
# or left at their defaults (the latest checkpoint, no intervention or module, train-* shards, the
# resolved hparams). tests/test_main_job.py checks that every other field is AllRequest's.
JOB_DECIDES = ("model_dir", "output_dir", "export_dir", "truncation", "num_shards", "train_data", "eval_data",
               "checkpoint", "intervene", "module", "shard_prefix", "hparams", "hparams_overrides")


class Stage:
    """One stage: `done()` says whether its outputs are complete, `run()` makes them; timed."""

    def __init__(self, name: str, done: Callable[[], bool], run: Callable[[], Optional[dict]],
                 images: Callable[[], int] = lambda: 0, output: str = "", rate: Optional[Callable[[], float]] = None):
        self.name, self.done, self.run, self.images, self.output, self.rate = name, done, run, images, output, rate

    def own_timing(self) -> dict:
        """What a stage's own report says of its time and rate (the train stage's train_report.json)."""
        if self.name != "train" or self.rate is None:
            return {}
        report = _read_json(self.output) or {}
        if "seconds" not in report:
            return {}
        return {"seconds": round(float(report["seconds"]), 2), "images_per_sec": self.images_per_sec(1.0)}

    def images_per_sec(self, seconds: float) -> Optional[float]:
        """The stage's own measured rate when it reports one, else images made / wall seconds."""
        if self.rate is not None:
            return round(float(self.rate() or 0.0), 1)
        images = self.images()
        return round(images / seconds, 1) if images and seconds > 0 else None


class MainJob:
    """The stages of `--mode=all` over one model dir (module docstring)."""

    def __init__(self, hp, request: AllRequest, model_dir: str):
        self.hp = hp
        self.request = request
        self.model_dir = model_dir
        self.export_dir = os.path.join(model_dir, "export")
        self.synthetic_dir = os.path.join(model_dir, "synthetic")
        self.cas_real_dir = os.path.join(model_dir, "cas_real")
        self.cas_synthetic_dir = os.path.join(model_dir, "cas_synthetic")
        self.timings: Dict[str, dict] = {}

    # ------------------------------------------------------------------ each stage's request
    def stage_request(self, kind: type, **settings):
        """A stage's request of type `kind`: the fields it shares by name with the job's request (the
        launch, the seed, --inception_path, the synthesis settings), the run's model dir, and this
        stage's settings on top; the rest at their defaults: the latest checkpoint, no intervention,
        no --hparams (the job's hparams arrive resolved)."""
        values = shared_values(self.request)
        values.update(model_dir=self.model_dir, hparams_overrides="")
        values.update(settings)
        return from_values(kind, values)

    # ------------------------------------------------------------------ completion checks
    def trained_step(self) -> Optional[int]:
        report = _read_json(os.path.join(self.model_dir, "train_report.json"))
        if not report or report.get("error"):
            return None
        return int(report["step"])

    def _train_done(self) -> bool:
        step = self.trained_step()
        return step is not None and step >= self.hp.train.train_steps

    def sweep(self) -> Optional[dict]:
        report = _read_json(os.path.join(self.model_dir, "sweep_report.json"))
        if report and report.get("step") == self.trained_step():
            return report
        return None

    def truncation(self) -> float:
        """The sweep's best-FID threshold (module docstring says why)."""
        report = self.sweep()
        if report is None or not report.get("best_fid"):
            raise UserError(f"{self.model_dir}/sweep_report.json has no best_fid point: rerun --mode=all")
        return float(report["best_fid"]["truncation"])

    def _export_done(self) -> bool:
        meta = _read_json(os.path.join(self.export_dir, "assets", "metadata.json"))
        return bool(meta) and meta.get("step") == self.trained_step()

    def synthetic_manifest(self) -> Optional[dict]:
        """The synthesis manifest, which synthesize writes only once every shard exists."""
        manifest = _read_json(os.path.join(self.synthetic_dir, "manifest.json"))
        if not manifest or (manifest.get("source") or {}).get("step") != self.trained_step():
            return None
        return manifest if abs(float(manifest.get("truncation", -1.0)) - self.truncation()) < 1e-9 else None

    @staticmethod
    def _cas_done(directory: str) -> bool:
        report = _read_json(os.path.join(directory, "cas_report.json"))
        return bool(report) and "top1" in report and not report.get("error")

    # ------------------------------------------------------------------ stage bodies
    def _mode(self, name: str, kind: type, hp=None, **settings):
        """Runs `--mode=name` exactly as the absl app would (modes.py's table), with this stage's request."""
        from tf_biggan.modes import mode_function

        return mode_function(name)(hp or self.hp, self.stage_request(kind, **settings))

    def _train(self):
        return self._mode("train", TrainRequest)

    def _sweep(self):
        return self._mode("sweep", SweepRequest)

    def _export(self):
        return self._mode("export", ExportRequest, export_dir=self.export_dir)

    def _synthesize(self):
        truncation = self.truncation()
        # A rerun at a new truncation (a retrained run) must not mix shards of two thresholds.
        manifest = _read_json(os.path.join(self.synthetic_dir, "manifest.json"))
        if manifest and abs(float(manifest.get("truncation", -1.0)) - truncation) > 1e-9:
            import tensorflow as tf

            tf.io.gfile.rmtree(self.synthetic_dir)
        # The ImageNet converter writes 1024 shards; a small embedded set needs a few.
        num_shards = 4 if self.hp.data.kind == "digits" else 1024
        return self._mode("synthesize", SynthesizeRequest, output_dir=self.synthetic_dir, truncation=truncation,
                          num_shards=num_shards)

    def _cas(self, directory: str, train_data: str):
        return self._mode("cas", CasRequest, hp=self.cas_hparams(), model_dir=directory, train_data=train_data,
                          eval_data=self.cas_eval_data())

    def cas_hparams(self):
        """The CAS protocol (--cas_hparams, default cas_digits) with the cas.* keys of --hparams_overrides."""
        from tf_biggan.config import load_hparams, parse_overrides

        overrides = parse_overrides(self.request.hparams_overrides)
        cas_overrides = ",".join(f"cas.{k}={_yaml_scalar(v)}" for k, v in (overrides.get("cas") or {}).items())
        path = self.request.cas_hparams or "cas_digits"
        try:
            return load_hparams(path, cas_overrides)
        except UserError as exc:
            raise UserError(f"--cas_hparams={path}: " + str(exc).replace("--hparams: ", "", 1)) from None

    def check(self) -> None:
        """Everything the later stages need, checked before the first one starts (no late surprises)."""
        cas = self.cas_hparams()
        if cas.data.num_classes != self.hp.data.num_classes:
            raise UserError(f"--cas_hparams: data.num_classes={cas.data.num_classes} but the GAN has "
                            f"{self.hp.data.num_classes} classes; use a protocol for this dataset")
        self.cas_eval_data()
        self.cas_real_data()

    def cas_eval_data(self) -> str:
        if self.request.eval_data:
            return self.request.eval_data
        if self.hp.data.kind == "digits":
            return "digits:test"
        raise UserError("--mode=all on data.kind != digits needs --eval_data (the REAL held-out images CAS is "
                        "measured on, e.g. gs://BUCKET/imagenet/validation-*)")

    def cas_real_data(self) -> str:
        if self.request.train_data:
            return self.request.train_data
        if self.hp.data.kind == "digits":
            return "digits:train"
        if self.hp.data.kind == "tfrecord":
            return self.hp.data.pattern
        raise UserError("--mode=all needs --train_data (the REAL training images of the reference classifier)")

    # ------------------------------------------------------------------ the job
    def stages(self) -> List[Stage]:
        hp = self.hp
        return [
            Stage("train", self._train_done, self._train,
                  rate=lambda: (_read_json(os.path.join(self.model_dir, "train_report.json")) or {}).get(
                      "images_per_sec", 0.0),
                  output=os.path.join(self.model_dir, "train_report.json")),
            Stage("sweep", lambda: self.sweep() is not None, self._sweep,
                  images=lambda: hp.eval.num_samples * len(hp.eval.truncations),
                  output=os.path.join(self.model_dir, "sweep_report.json")),
            Stage("export", self._export_done, self._export, output=self.export_dir),
            Stage("synthesize", lambda: self.synthetic_manifest() is not None, self._synthesize,
                  images=lambda: int((self.synthetic_manifest() or {}).get("num_images", 0)),
                  output=self.synthetic_dir),
            Stage("cas_real", lambda: self._cas_done(self.cas_real_dir),
                  lambda: self._cas(self.cas_real_dir, self.cas_real_data()),
                  rate=lambda: self._cas_rate(self.cas_real_dir), output=self.cas_real_dir),
            Stage("cas_synthetic", lambda: self._cas_done(self.cas_synthetic_dir),
                  lambda: self._cas(self.cas_synthetic_dir, "synthetic:" + os.path.join(self.synthetic_dir, "train-*")),
                  rate=lambda: self._cas_rate(self.cas_synthetic_dir), output=self.cas_synthetic_dir),
        ]

    @staticmethod
    def _cas_rate(directory: str) -> float:
        return (_read_json(os.path.join(directory, "cas_report.json")) or {}).get("images_per_sec", 0.0)

    def run(self) -> dict:
        self.check()
        wall = time.time()
        previous = _read_json(os.path.join(self.model_dir, REPORT_JSON)) or {}
        for stage in self.stages():
            if stage.done():
                _log(f"{stage.name}: complete, skipped ({stage.output})")
                # Its timing from the invocation that ran it; a stage finished by an invocation that was
                # killed before writing report.json reports its own seconds (train_report.json).
                earlier = previous.get("stages", {}).get(stage.name) or {}
                if "seconds" not in earlier:
                    earlier = stage.own_timing()
                self.timings[stage.name] = dict(earlier, skipped=True, output=stage.output)
                continue
            _log(f"{stage.name}: running")
            t0 = time.time()
            stage.run()
            seconds = time.time() - t0
            self.timings[stage.name] = {"seconds": round(seconds, 2), "skipped": False,
                                        "images_per_sec": stage.images_per_sec(seconds), "output": stage.output}
            if not stage.done():
                raise UserError(f"--mode=all: stage {stage.name} finished but its outputs are incomplete "
                                f"({stage.output}); see the messages above")
        report = self.report(time.time() - wall)
        write_report(self.model_dir, report)
        print_summary(report)
        return report

    def report(self, wall_seconds: float) -> dict:
        sweep = self.sweep()
        truncation = self.truncation()
        point = next(p for p in sweep["points"] if abs(p["truncation"] - truncation) < 1e-9)
        cas_real = _read_json(os.path.join(self.cas_real_dir, "cas_report.json"))
        cas_syn = _read_json(os.path.join(self.cas_synthetic_dir, "cas_report.json"))
        stages = self.timings
        return {
            "model_dir": paths.absolute(self.model_dir),
            "step": self.trained_step(),
            "truncation": truncation,
            "truncation_reason": "the sweep's best-FID threshold (FID penalises lost diversity, which CAS needs)",
            "fid": point["fid"], "is": point["is"], "is_std": point.get("is_std"),
            "sample_class_accuracy": point.get("class_accuracy"),
            "extractor": sweep.get("extractor"),
            "cas_top1": cas_syn["top1"], "cas_top5": cas_syn.get("top5"),
            "real_top1": cas_real["top1"], "real_top5": cas_real.get("top5"),
            "cas_train_images": cas_syn.get("train_images"), "real_train_images": cas_real.get("train_images"),
            "wall_seconds": round(wall_seconds + sum(s.get("seconds", 0) for s in stages.values()
                                                     if s.get("skipped")), 1),
            "this_invocation_seconds": round(wall_seconds, 1),
            "stages": stages,
            "outputs": {"samples": _latest_sample_grid(self.model_dir), "sweep": os.path.join(self.model_dir, "sweep_report.json"),
                        "sweep_plot": os.path.join(self.model_dir, "sweep_is_fid.png"), "export": self.export_dir,
                        "synthetic": self.synthetic_dir, "cas_real": self.cas_real_dir,
                        "cas_synthetic": self.cas_synthetic_dir},
        }


def _yaml_scalar(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _latest_sample_grid(model_dir: str) -> Optional[str]:
    import tensorflow as tf

    grids = sorted(tf.io.gfile.glob(os.path.join(model_dir, "samples", "*.png")))
    return grids[-1] if grids else None


def default_model_dir() -> str:
    return os.path.join("runs", time.strftime("all-%Y%m%d-%H%M%S"))


def check_all(hp, request: AllRequest) -> None:
    """What `--mode=all`'s later stages need (CAS protocol, its data), checked before TensorFlow
    starts: a wrong --cas_hparams fails in a second, not after TF's start-up (main.py)."""
    MainJob(hp, request, request.model_dir or "").check()


def run_all(hp, request: AllRequest) -> dict:
    """`--mode=all`: the main job on --model_dir (default: a fresh folder under runs/)."""
    model_dir = request.model_dir or default_model_dir()
    _log(f"model dir {model_dir} (rerun with --model_dir={model_dir} to resume after an interruption)")
    return MainJob(hp, request, model_dir).run()
