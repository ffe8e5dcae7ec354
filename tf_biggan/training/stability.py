"""The stability knobs wired into the training step and loop (paper Section 4, Appendices E, G-I).

`StabilityKnobs(...).parts` are the step's parts (step.StepParts) of each knob whose hparam is not at
its default, which the trainer passes to the step, so a run with default hparams runs the plain step:

  train.latents            the step's latent sampler draws z from that Appendix E prior
  train.r1_gamma           D penalty "r1" = γ/2 E||∇_x D(x_real)||² (Eq. 5), lazy with r1_every
  stability.hinge_margin   D's hinge loss with that margin (Appendix G.2)
  stability.d_dropout      dropout on D's last feature layer, stateless masks (Appendix I): the
                           step's d_dropout_key part
  stability.d_beta1        D's Adam β1 (Appendix I; the trainer builds D's Adam with it)
  stability.g_sigma0_reg   G penalty "sigma0_reg" (Section 4.1)
  stability.g_sigma0_clamp Eq. (4) after every step (a post-step hook, cross-replica context)
  stability.shared_embedding_decay  G penalty "embedding_decay" (Appendix H)
  stability.grad_clip_*    the optimisers clip the GLOBAL gradient (Appendix H)
  stability.freeze         no update of G or D (Appendix G.1 interventions)

Penalties are logged by the loop as losses/<name>; `StabilityKnobs.scalars` gives stability/... values
where the knob acts (dropout p, margin, latent variance, σ0 before the clamp).
"""

from __future__ import annotations

import functools
from typing import Dict

import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.layers import conditioning
from tf_biggan.sampling.latents import annealed_variance, sample_latents
from tf_biggan.training import penalties
from tf_biggan.training.losses import hinge_d_loss
from tf_biggan.training.step import LatentSampler, PenaltyTerm, StepParts, micro_key


def latent_params(train_cfg) -> dict:
    """The keyword parameters of train.latents (sampling.latents.LATENT_DISTRIBUTIONS) from hparams."""
    name = train_cfg.latents
    if name in ("bernoulli", "bernoulli_symmetric", "normal_times_bernoulli", "normal_bernoulli_concat"):
        return {"p": train_cfg.latents_p}
    if name == "variance_annealed":
        steps = train_cfg.latents_anneal_steps or train_cfg.train_steps
        return {"anneal_steps": steps, "sigma_start": train_cfg.latents_sigma_start,
                "sigma_end": train_cfg.latents_sigma_end}
    if name == "variable_variance":
        return {"sigma_low": train_cfg.latents_sigma_low, "sigma_high": train_cfg.latents_sigma_high}
    return {}


class PriorLatentSampler(LatentSampler):
    """LatentSampler whose z comes from train.latents (Appendix E), from the same train_z key: the
    "normal" prior draws exactly the default sampler's numbers."""

    def __init__(self, train_cfg, *args):
        super().__init__(*args)
        self.name, self.params = train_cfg.latents, latent_params(train_cfg)

    def sample_z(self, shape, key, step):
        params = dict(self.params, step=step) if self.name == "variance_annealed" else self.params
        return sample_latents(self.name, shape, key, **params)

    def global_latents(self, step, substep: int, micro: int = 0):
        z_key, y_key = self.keys(step, substep, micro)
        z = self.sample_z((self.global_batch, self.dim_z), z_key, step)
        y = tf.random.stateless_uniform((self.global_batch,), seed=y_key, maxval=self.num_classes, dtype=tf.int32)
        return z, y


class _Optimizer:
    """What the step calls `apply_gradients` on: the run's optimiser with clipping, or nothing (frozen).
    The checkpoint keeps the real optimiser; everything else is delegated to it."""

    def __init__(self, optimizer, frozen: bool, global_norm: float, per_param_norm: float, num_replicas: int):
        self._optimizer, self._frozen = optimizer, frozen
        self._clip = functools.partial(penalties.clip_gradients, global_norm=global_norm,
                                       per_param_norm=per_param_norm, num_replicas=num_replicas)

    def apply_gradients(self, grads_and_vars):
        if self._frozen:  # Appendix G.1: "ceasing all parameter updates"
            return None
        grads, variables = zip(*grads_and_vars)
        return self._optimizer.apply_gradients(zip(self._clip(list(grads)), variables))

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def r1_term(d, gamma: float, every: int, disc_steps: int) -> PenaltyTerm:
    """R1 on the real half of the D step (after d_inputs), Eq. (5); lazy when every > 1 (applied
    on every `every`-th D step with weight `every`; the logged "r1" is the term as applied, so
    `every` x γ/2 E||∇D||² on those steps and 0 on the others).

    D is re-run on the real images in inference mode: the same function of x as the training call
    just made (same weights, the SN vector it just stored; D has no batch statistics), without
    updating SN state again. Dropout is not applied in that call.
    """
    def fn(ctx):
        def penalty():
            value, _ = penalties.r1_penalty(d, ctx.x_real, ctx.y_real, gamma, ctx.global_batch, training=False)
            return value
        if every == 1:
            return penalty()
        d_step = tf.cast(ctx.step, tf.int64) * disc_steps + ctx.substep
        return tf.cond(tf.equal(d_step % every, 0), lambda: every * penalty(), lambda: tf.constant(0.0))
    return PenaltyTerm("r1", fn)


def sigma0_term(g, st) -> PenaltyTerm:
    kernels = g.ortho_reg_kernels()

    def fn(ctx):
        value, _ = conditioning.sigma0_penalty(kernels, st.g_sigma0_reg, st.sigma0_target, st.sigma_reg,
                                               st.sigma_ratio, st.sigma_iterations)
        return value / ctx.num_replicas  # a global quantity: the all-reduce sums N copies
    return PenaltyTerm("sigma0_reg", fn)


def embedding_decay_term(g, strength: float) -> PenaltyTerm:
    return PenaltyTerm("embedding_decay",
                       lambda ctx: penalties.embedding_decay(g.shared.kernel, strength, ctx.num_replicas))


class StabilityKnobs:
    """The knobs of a run that are on: their step parts (`parts`, step.StepParts) and the values they
    show (`scalars`). Build it with the run's networks and optimisers, before the step."""

    def __init__(self, hp, g, d, g_opt, d_opt, strategy):
        self.hp, self.g, self.d, self.strategy = hp, g, d, strategy
        self.num_replicas = strategy.num_replicas_in_sync
        st = hp.stability
        # σ0 before the clamp of the last step (a monitored value), with stability.g_sigma0_clamp.
        self.sigma0_before_clamp = None
        if st.g_sigma0_clamp:
            with strategy.scope():
                self.sigma0_before_clamp = tf.Variable(0.0, trainable=False, name="sigma0_before_clamp")
        self.parts = self._parts(g_opt, d_opt)

    def _parts(self, g_opt, d_opt) -> StepParts:
        hp, st, cfg = self.hp, self.hp.stability, self.hp.train
        parts = {}
        if cfg.latents != "normal":
            parts["latents"] = PriorLatentSampler(cfg, hp.model.dim_z, hp.data.num_classes, cfg.batch_size,
                                                  self.num_replicas, cfg.disc_steps, cfg.seed)
        if st.hinge_margin != 1.0:
            parts["d_loss_fn"] = functools.partial(hinge_d_loss, margin=st.hinge_margin)
        if cfg.r1_gamma:
            parts["d_penalties"] = [r1_term(self.d, cfg.r1_gamma, cfg.r1_every, cfg.disc_steps)]
        g_penalties = []
        if st.g_sigma0_reg:
            g_penalties.append(sigma0_term(self.g, st))
        if st.shared_embedding_decay and self.g.shared is not None:
            g_penalties.append(embedding_decay_term(self.g, st.shared_embedding_decay))
        clip = (st.grad_clip_global, st.grad_clip_per_param, self.num_replicas)
        if st.freeze == "g" or any(clip[:2]):
            parts["g_opt"] = _Optimizer(g_opt, st.freeze == "g", *clip)
        if st.freeze == "d" or any(clip[:2]):
            parts["d_opt"] = _Optimizer(d_opt, st.freeze == "d", *clip)
        if st.d_dropout:
            parts["d_dropout_key"] = dropout_keys(cfg.seed, cfg.disc_steps)
        post_step = [self._clamp()] if st.g_sigma0_clamp else []
        return StepParts(g_penalties=g_penalties, post_step=post_step, **parts)

    def _clamp(self):
        """The post-step hook of Eq. (4): G's σ0 clamped after every step (not while G is frozen)."""
        st, kernels = self.hp.stability, self.g.ortho_reg_kernels()

        def clamp(step_var):
            if st.freeze != "g":
                self.sigma0_before_clamp.assign(conditioning.clamp_all(
                    kernels, st.sigma0_target, st.sigma_reg, st.sigma_ratio, st.sigma_iterations))
        return clamp

    def scalars(self, step: int) -> Dict[str, float]:
        """stability/... scalars of the knobs that are on (the penalties are logged as losses/...)."""
        st, cfg, out = self.hp.stability, self.hp.train, {}
        if st.d_dropout:
            out["stability/d_dropout"] = st.d_dropout
        if st.hinge_margin != 1.0:
            out["stability/hinge_margin"] = st.hinge_margin
        if self.sigma0_before_clamp is not None:
            out["stability/g_sigma0_before_clamp"] = float(self.sigma0_before_clamp.numpy())
        if cfg.latents == "variance_annealed":
            p = latent_params(cfg)
            out["stability/latent_variance"] = float(annealed_variance(step, p["anneal_steps"], p["sigma_start"],
                                                                       p["sigma_end"]))
        return out


def dropout_keys(seed: int, disc_steps: int):
    """The d_dropout_key part: the key of D's dropout masks in one D call (stream train_d_dropout,
    (step, substep, micro), folded with the replica id): stateless masks (Appendix I), so a resumed
    run draws the same ones."""

    def d_dropout_key(step_t, substep, micro: int = 0):
        counter = tf.cast(step_t, tf.int64) * (disc_steps + 1) + substep
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        key = micro_key(seeds.key("train_d_dropout", seed, counter), micro)
        return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64))
    return d_dropout_key
