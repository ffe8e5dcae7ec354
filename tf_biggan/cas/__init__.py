"""Classification Accuracy Score (Ravuri & Vinyals 2019; Azizi et al. 2023).

    learning_rate_schedule(hp, steps_per_epoch)  the protocol's keras LearningRateSchedule
    run_cas(hp, model_dir, train_data, eval_data, strategy=None) -> report dict (cas_report.json)
    run_cas_sweep(hp, run_dir, ...) -> report dict (cas_sweep_report.json), see sweep.py
"""

from tf_biggan.cas.schedule import learning_rate_schedule


def run_cas(*args, **kwargs):
    from tf_biggan.cas.train import run_cas as _run

    return _run(*args, **kwargs)


def run_cas_sweep(*args, **kwargs):
    from tf_biggan.cas.truncation_sweep import run_cas_sweep as _run

    return _run(*args, **kwargs)


__all__ = ["learning_rate_schedule", "run_cas", "run_cas_sweep"]
