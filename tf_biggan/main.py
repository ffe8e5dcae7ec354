"""The absl app: `tf-biggan --mode=... --hparams=hparams/X.yaml [--hparams_overrides k=v,...]`.

Each mode lives in the module named for it; this file only parses flags, builds the mode's typed
request from them (tf_biggan/requests.py, checked once here), loads the validated hyper-parameters
and dispatches. A `UserError` (bad flag, missing file, bad YAML key) is printed as one line naming
the flag or file, with exit status 2, not as a traceback.

Exit status: 0 done; 2 a user error (one line naming the flag or file); 143 stopped by SIGTERM,
130 stopped by SIGINT (Ctrl-C), 128 + the signal's number as a shell reports for a killed process:
training and CAS first save the step they are at, synthesis drops the shard in hand, and one line
names the step, the checkpoint and the command that resumes (the same command again). A worker of a
multi-worker job that stops because another worker was preempted also exits 143
(tf_biggan/training/preemption.py).
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS

import tf_biggan  # noqa: E402
from tf_biggan import requests  # noqa: E402
from tf_biggan.host import malloc  # noqa: E402
from tf_biggan.modes import MODES, mode_function, precheck

flags.DEFINE_enum("mode", "train", MODES, "What to run.")
flags.DEFINE_string("hparams", None, "YAML file of hyper-parameters (default: hparams/digits.yaml); "
                    "a bare name such as biggan_128 is looked up in hparams/.")
flags.DEFINE_string("hparams_overrides", "", "Comma-separated section.key=value overrides, "
                    "e.g. model.ch=64,train.disc_steps=1.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and reports.")
flags.DEFINE_integer("train_steps", None, "Overrides train.train_steps.", lower_bound=1)
flags.DEFINE_string("init_from", None, "--mode=train: warm start from another run, RUN or RUN/ckpt-N (its G, EMA-G "
                    "and D; see training/warm_start.py). Overrides train.init_from.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into N logical devices and use MirroredStrategy "
                     "(every mode that builds models).", **requests.flag_bounds("cpu_replicas"))
flags.DEFINE_string("tpu", None, "Cloud TPU name or grpc:// address: use TPUStrategy.")
flags.DEFINE_string("intervene", None, "--mode=train: resume --model_dir from --checkpoint (default: the latest) with "
                    "changes, recorded in MODEL_DIR/interventions.json (paper Appendix G.1): comma-separated "
                    "g_lr=, d_lr=, disc_steps=, d_beta1=, freeze=none|g|d, reset_adam=g|d|both.")
flags.DEFINE_integer("inspect_images", None, "--mode=inspect_data: images to count (0 = the whole split; "
                     "default 50,000).", **requests.flag_bounds("inspect_images"))
# Evaluation, export and synthesis.
flags.DEFINE_string("checkpoint", None, "A checkpoint path of the run (default: the latest in --model_dir).")
flags.DEFINE_float("truncation", None, "Truncation threshold (paper Section 3.1; 0 = untruncated, refused under "
                   "hub_notebook where z would be 0). eval/synthesize/interpolate/neighbors; default: the run's "
                   "eval.truncation (0; 1.0 for an imported TF-Hub run).", **requests.flag_bounds("truncation"))
flags.DEFINE_integer("seed", 0, "Seed of the latents (eval, synthesize, qualitative modes); of the "
                     "validation split (prepare_data).")
flags.DEFINE_string("inception_path", None, "LOCAL Inception (TF-Hub/SavedModel dir or Keras InceptionV3 file) "
                    "for FID/IS; without it the project's classifier trained on the real data is used.")
flags.DEFINE_string("export_dir", None, "Where --mode=export writes the TF-Hub module (default: MODEL_DIR/export).")
flags.DEFINE_string("output_dir", None, "Where --mode=synthesize / prepare_data write TFRecord shards and "
                    "manifest.json; --mode=real_stats its .npz (default: the statistics cache).")
flags.DEFINE_string("module", None, "--mode=synthesize from an exported TF-Hub module instead of a checkpoint; "
                    "--mode=import_hub: an official TF-Hub BigGAN module as downloaded and unpacked.")
flags.DEFINE_integer("images_per_class", None, "Synthetic images per class (default: the real training set's counts).",
                     **requests.flag_bounds("images_per_class"))
flags.DEFINE_integer("num_shards", 1024, "Number of TFRecord shards (the ImageNet converter writes 1024).",
                     **requests.flag_bounds("num_shards"))
flags.DEFINE_enum("shard_prefix", "train", requests.CHOICES["shard_prefix"],
                  "Shard names: train-%05d-of-%05d or validation-*.")
flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of synthetic images.", **requests.flag_bounds("jpeg_quality"))
flags.DEFINE_string("synsets_file", None, "Text file of class synsets (one per line, class order) for image/class/synset.")
flags.DEFINE_integer("num_workers", None, "--mode=synthesize: hosts sharing the shards (default: from TF_CONFIG, else 1).",
                     **requests.flag_bounds("num_workers"))
flags.DEFINE_integer("worker_index", None, "--mode=synthesize: this host's index; it writes shards i with i % num_workers == index.",
                     **requests.flag_bounds("worker_index"))
flags.DEFINE_enum("latent_convention", None, requests.CHOICES["latent_convention"],
                  "--mode=synthesize latents: BigGAN's resampling beyond --truncation (Section 3.1), CAS's "
                  "resampling beyond 2 x --truncation (CAS A.1 footnote 5), or the TF-Hub notebook's "
                  "truncation x truncnorm(-2, 2) (tensorflow/hub#214). Default: the run's "
                  "eval.latent_convention (hub_notebook for an imported TF-Hub generator), or the module's.")
flags.DEFINE_integer("batch_size", None, "--mode=synthesize: images per generator call (default: eval.batch_size).",
                     **requests.flag_bounds("batch_size"))
# Classification Accuracy Score (tf_biggan/cas/) and the main job.
flags.DEFINE_string("cas_hparams", None, "--mode=all: the CAS protocol file (default hparams/cas_digits.yaml); cas.* "
                    "keys of --hparams_overrides apply to it.")
flags.DEFINE_string("train_data", None, "--mode=cas / cas_sweep: training images, comma-separated: TFRecord globs "
                    "(prefix real: or synthetic: to say which; synthesize's shards are recognised), or digits:train.")
flags.DEFINE_string("eval_data", None, "--mode=cas / cas_sweep: the REAL held-out images (TFRecord glob, e.g. "
                    "validation-*, or digits:test).")
flags.DEFINE_bool("also_write_npz", False, "Also write the synthetic images and labels as .npz (for other FID toolkits).")
# Your own images (tf_biggan/data/image_folder.py) and real-data statistics (evaluation/real_stats.py).
flags.DEFINE_string("image_dir", None, "--mode=prepare_data: a folder of images, one sub-folder per class "
                    "(DIR/<class>/<image>; JPEG, PNG, BMP, GIF). A DIR/../val tree is the validation split.")
flags.DEFINE_float("validation_fraction", 0.0, "--mode=prepare_data: fraction of each class held out as "
                   "validation-* shards (seeded by --seed).", **requests.flag_bounds("validation_fraction"))
flags.DEFINE_integer("resolution", None, "--mode=prepare_data: store images already cropped and area-resized "
                     "to this size, as training does (default: as they are).", **requests.flag_bounds("resolution"))
flags.DEFINE_enum("on_corrupt", "skip", requests.CHOICES["on_corrupt"], "--mode=prepare_data: an unreadable image is left "
                  "out and listed in manifest.json (skip), or stops the import naming it (fail).")


_RUN = "the training run's directory"
# mode -> {flag: why it is needed}: checked once, before any work (the requests' modes trust them).
REQUIRED = {
    "summary": {},
    "train": {"model_dir": "where checkpoints, logs and train_report.json go"},
    "inspect_data": {"model_dir": "where the grid and report go"},
    "eval": {"model_dir": _RUN},
    "sweep": {"model_dir": _RUN},
    "interpolate": {"model_dir": _RUN},
    "neighbors": {"model_dir": _RUN},
    "memorization": {"model_dir": _RUN},
    "export": {"model_dir": "the training run to export"},
    "import_hub": {"module": "an official TF-Hub BigGAN module directory (biggan-*/2 or biggan-deep-*/1, unpacked)",
                   "model_dir": "the new run the module's generator is written to"},
    "synthesize": {"output_dir": "where the TFRecord shards and manifest.json go"},
    "cas": {"model_dir": "where the classifier's checkpoints and cas_report.json go",
            "train_data": "the training images: TFRecord globs (real: / synthetic:) or digits:train",
            "eval_data": "the REAL held-out images: a TFRecord glob such as validation-*, or digits:test"},
    "cas_sweep": {"model_dir": _RUN},
    "prepare_data": {"image_dir": "the folder of images, one sub-folder per class",
                     "output_dir": "where the TFRecord shards, labels.txt and manifest.json go"},
    "real_stats": {"model_dir": "the run whose evaluation reads the statistics: they go to its eval_cache (or "
                                "eval.stats_cache_dir), and the project's classifier to MODEL_DIR/eval_classifier"},
    "all": {},  # --model_dir defaults to a fresh folder under runs/
}
# mode -> groups of flags of which exactly one must be given.
EXACTLY_ONE = {
    "synthesize": [("model_dir", "module")],
}
# Groups of flags that exclude each other (at most one given), in every mode / in one mode.
EXCLUSIVE = [("tpu", "cpu_replicas")]
EXCLUSIVE_IN_MODE = {
    "synthesize": [("module", "checkpoint")],
}


# mode -> the request its function takes, each field from the flag of the same name (requests.from_values).
REQUESTS = {
    "summary": requests.SummaryRequest,
    "train": requests.TrainRequest,
    "inspect_data": requests.InspectDataRequest,
    "eval": requests.EvalRequest,
    "sweep": requests.SweepRequest,
    "interpolate": requests.InterpolateRequest,
    "neighbors": requests.NeighborsRequest,
    "memorization": requests.MemorizationRequest,
    "export": requests.ExportRequest,
    "import_hub": requests.ImportHubRequest,
    "synthesize": requests.SynthesizeRequest,
    "cas": requests.CasRequest,
    "cas_sweep": requests.CasSweepRequest,
    "prepare_data": requests.PrepareDataRequest,
    "real_stats": requests.RealStatsRequest,
    "all": requests.AllRequest,
}


# Flags naming a directory a mode writes into or reads a run from: an existing FILE there would end
# in a deep traceback (FileExistsError, NotADirectoryError) after TensorFlow's start-up.
DIRECTORY_FLAGS = ("model_dir", "output_dir", "export_dir")


def _given(name: str) -> bool:
    value = FLAGS[name].value
    return value not in (None, "", 0) if not isinstance(value, bool) else value


def check_flags(mode: str) -> None:
    """UserError naming the flag when `mode`'s required / exclusive flags are not as the tables say."""
    from tf_biggan import paths
    from tf_biggan.errors import UserError

    for name, why in REQUIRED[mode].items():
        if not _given(name):
            raise UserError(f"--mode={mode} needs --{name} ({why})")
    for name in DIRECTORY_FLAGS:
        value = FLAGS[name].value
        if value and paths.existing_file(value):
            raise UserError(f"--{name}={value} is a file, not a directory: pass a directory (a new path or "
                            f"an existing one{', e.g. a training run' if name == 'model_dir' else ''})")
    for group in EXACTLY_ONE.get(mode, []):
        if sum(_given(name) for name in group) != 1:
            raise UserError(f"--mode={mode} needs exactly one of " + " or ".join(f"--{n}" for n in group))
    for group in EXCLUSIVE + EXCLUSIVE_IN_MODE.get(mode, []):
        given = [f"--{n}" for n in group if _given(n)]
        if len(given) > 1:
            raise UserError(f"{' and '.join(given)} exclude each other" + (f" in --mode={mode}" if
                                                                            group not in EXCLUSIVE else "")
                            + ": pass only one")


def build_request(mode: str):
    """`mode`'s request from the flags, checked once (the tables above, then the request's own values):
    each field from the flag of the same name that the command line gave, else the field's default."""
    check_flags(mode)
    typed = {name: FLAGS[name].value for name in FLAGS if not FLAGS[name].using_default_value}
    return requests.from_values(REQUESTS[mode], typed)


def main(argv) -> int:
    from tf_biggan.training import preemption

    try:
        with preemption.watching():  # SIGTERM / SIGINT: see training/preemption.py
            return _main(argv)
    except preemption.Preempted as exc:
        resume = " ".join(shlex.quote(a) for a in ["tf-biggan", *sys.argv[1:]])
        print(f"tf-biggan: {exc.message}; exit code {exc.exit_code}; to resume, rerun the same command: {resume}",
              file=sys.stderr, flush=True)
        return exc.exit_code


def _main(argv) -> int:
    del argv
    from tf_biggan.errors import UserError

    try:
        request = build_request(FLAGS.mode)
        if not FLAGS["verbosity"].present:  # TF's strategy / checkpoint INFO lines drown the progress lines
            logging.set_verbosity(logging.WARNING)
        from tf_biggan.config import load_hparams

        # Hparams first: validating them imports no TensorFlow (tests/test_config.py), so a typo in a
        # key or a refused value fails in about a second instead of after TF's start-up.
        overrides = FLAGS.hparams_overrides
        if FLAGS.train_steps is not None:
            overrides = ",".join(x for x in (overrides, f"train.train_steps={FLAGS.train_steps}") if x)
        if FLAGS.init_from is not None:
            overrides = ",".join(x for x in (overrides, f"train.init_from={FLAGS.init_from}") if x)
        hp = None
        if FLAGS.mode == "train" and FLAGS.model_dir:
            from tf_biggan.runs import is_imported

            if is_imported(FLAGS.model_dir):
                from tf_biggan.hub.importer import fine_tune_hparams

                # a run made by --mode=import_hub: its own configuration, a recipe's sections on top
                hp = fine_tune_hparams(FLAGS.model_dir, FLAGS.hparams, overrides)
        if hp is None:
            hp = load_hparams(FLAGS.hparams, overrides)
        precheck(FLAGS.mode, hp, request)
        # First TensorFlow work of the process: splitting the CPU and configuring multi-worker
        # collectives must precede the runtime's initialisation.
        launch = requests.launch_of(request)
        if launch is not None:  # the mode runs under the launch's strategy
            from tf_biggan.training.strategy import launch_strategy

            launch_strategy(launch)  # made once; the mode's own call gets the same strategy
            from tf_biggan.training import preemption

            preemption.reinstall()  # a multi-worker strategy took SIGTERM over (preemption.reinstall)
        elif FLAGS.cpu_replicas:
            from tf_biggan.training.strategy import split_cpu

            split_cpu(FLAGS.cpu_replicas)
        from tf_biggan.host import grappler

        grappler.configure()  # every mode optimises graphs alike: see host/grappler.py
        mode_function(FLAGS.mode)(hp, request)
    except UserError as exc:
        print(f"tf-biggan: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _parse_flags(argv):
    """absl's parser, with a bad flag value reported like every user error: one line, exit 2."""
    try:
        return FLAGS(argv)
    except flags.Error as exc:
        print(f"tf-biggan: error: {exc}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """Console-script entry point (`tf-biggan`)."""
    malloc.reexec_with_preload()  # before anything allocates much: see malloc.py
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_biggan.configure_process()  # before TensorFlow is imported: see tf_biggan/__init__.py
    main_module = sys.modules.get("__main__")
    if main_module is not None and not main_module.__doc__:  # --help shows this docstring (the console script has none)
        main_module.__doc__ = __doc__
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
