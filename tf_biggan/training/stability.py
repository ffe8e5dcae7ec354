"""The stability knobs as the training step applies them (paper Section 4, Appendices E, G-I).

One object, `StabilityKnobs(hp, g, d, num_replicas, global_batch)`, gives the step everything it
needs, each piece a no-op when its hparam is at its default (so today's runs are unchanged):

  sample_z(shape, key, step)     training latents of train.latents (Appendix E)
  d_loss(...)                    hinge loss with stability.hinge_margin (G.2) + R1 (Eq. 5)
  g_penalty()                    σ0 regulariser (Section 4.1) + shared-embedding decay (App. H)
  clip(grads)                    global / per-parameter gradient clipping (Appendix H)
  clamp()                        Eq. (4) σ0 clamp of G's weights, after each G update
  freeze_g / freeze_d            Appendix G.1 interventions: skip that network's update
  dropout_key(step, substep)     the stateless key of D's dropout mask (Appendix I)

Everything returned for logging ("r1", "sigma0_reg", "sigma0_clamped", ...) is named in METRICS
so the loop writes it to TensorBoard where it acts (stability/...).
"""

from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.layers import conditioning
from tf_biggan.sampling.latents import sample_latents
from tf_biggan.training import penalties
from tf_biggan.training.losses import hinge_d_loss

# Metrics the step adds when the matching knob is on (always present, 0 when off).
METRICS = ("r1", "sigma0_reg", "g_sigma0_max", "embedding_decay")


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


class StabilityKnobs:
    def __init__(self, hp, g, d, num_replicas: int, global_batch: int):
        self.hp = hp
        self.st = hp.stability
        self.train = hp.train
        self.g, self.d = g, d
        self.num_replicas = num_replicas
        self.global_batch = global_batch
        self._latent_params = latent_params(hp.train)
        self.freeze_g = self.st.freeze == "g"
        self.freeze_d = self.st.freeze == "d"

    def scalars(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """TensorBoard scalars (stability/...) of the knobs that are on, where they act."""
        st, out = self.st, {}
        if self.train.r1_gamma:
            out["stability/r1"] = metrics["r1"]
        if st.g_sigma0_reg:
            out["stability/sigma0_reg"] = metrics["sigma0_reg"]
            out["stability/g_sigma0_max"] = metrics["g_sigma0_max"]
        if st.g_sigma0_clamp:
            out["stability/sigma0_before_clamp"] = metrics["sigma0_clamped"]
        if st.shared_embedding_decay:
            out["stability/embedding_decay"] = metrics["embedding_decay"]
        if st.d_dropout:
            out["stability/d_dropout"] = st.d_dropout
        if st.hinge_margin != 1.0:
            out["stability/hinge_margin"] = st.hinge_margin
        if self.train.latents == "variance_annealed":
            from tf_biggan.sampling.latents import annealed_variance

            p = self._latent_params
            out["stability/latent_variance"] = float(annealed_variance(
                metrics["step"], p["anneal_steps"], p["sigma_start"], p["sigma_end"]))
        return out

    # ------------------------------------------------------------------ latents (Appendix E)
    def sample_z(self, shape, key, step) -> tf.Tensor:
        """z of the global batch from train.latents; "normal" draws exactly stateless_normal(key)."""
        params = dict(self._latent_params)
        if self.train.latents == "variance_annealed":
            params["step"] = step
        return sample_latents(self.train.latents, shape, key, **params)

    # ------------------------------------------------------------------ D (Section 4.2, G.2, App. I)
    def dropout_key(self, step, substep):
        """Stateless key of D's dropout mask for this step, sub-step and replica (None when off)."""
        if not self.st.d_dropout:
            return None
        counter = tf.cast(step, tf.int64) * (self.train.disc_steps + 1) + substep
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        key = seeds.key("train_d_dropout", self.train.seed, counter)
        return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64))

    def r1_active(self, d_step_index) -> tf.Tensor:
        """Whether R1 applies on this D step (every r1_every-th; always when r1_every = 1)."""
        return tf.equal(tf.math.floormod(tf.cast(d_step_index, tf.int64), self.train.r1_every), 0)

    def d_loss(self, x_real, y_real, x_fake, y_fake, local_batch: int, dropout_seed=None, with_r1: bool = False):
        """(loss to differentiate, metrics) of one D step: ONE D call on [real; fake] (as the trainer
        always did), the hinge with stability.hinge_margin, plus R1 on the real half when asked.

        R1's weight is γ · r1_every (lazy regularisation keeps the average strength); its logged
        value "r1" is the penalty γ/2 E||∇D||² itself.
        """
        x = tf.concat([x_real, x_fake], 0)
        y = tf.concat([y_real, y_fake], 0)
        if with_r1:
            with tf.GradientTape() as inner:
                inner.watch(x)
                logits = self.d((x, y), training=True, dropout_seed=dropout_seed)
                real_sum = tf.reduce_sum(tf.cast(logits[:local_batch], tf.float32))
            grad_real = inner.gradient(real_sum, x)[:local_batch]
            r1 = penalties.r1_from_gradients(grad_real, self.train.r1_gamma, self.global_batch)
        else:
            logits = self.d((x, y), training=True, dropout_seed=dropout_seed)
            r1 = tf.constant(0.0, tf.float32)
        real_logits, fake_logits = logits[:local_batch], logits[local_batch:]
        loss, real_part, fake_part = hinge_d_loss(real_logits, fake_logits, self.global_batch,
                                                  margin=self.st.hinge_margin)
        total = loss + float(self.train.r1_every) * r1
        return total, {"d_loss": loss, "d_loss_real": real_part, "d_loss_fake": fake_part, "r1": r1,
                       "real_logits": real_logits, "fake_logits": fake_logits}

    # ------------------------------------------------------------------ G (Section 4.1, App. H)
    def g_penalty(self) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """(σ0 regulariser + embedding decay, this replica's share; their metrics)."""
        zero = tf.constant(0.0, tf.float32)
        reg, largest = zero, zero
        if self.st.g_sigma0_reg:
            reg, largest = conditioning.sigma0_penalty(
                self.g.ortho_reg_kernels(), self.st.g_sigma0_reg, self.st.sigma0_target, self.st.sigma_reg,
                self.st.sigma_ratio, self.st.sigma_iterations)
            reg = reg / self.num_replicas
        decay = zero
        if self.st.shared_embedding_decay and self.g.shared is not None:
            decay = penalties.embedding_decay(self.g.shared.kernel, self.st.shared_embedding_decay,
                                              self.num_replicas)
        return reg + decay, {"sigma0_reg": reg, "g_sigma0_max": largest, "embedding_decay": decay}

    def clip(self, grads):
        return penalties.clip_gradients(grads, self.st.grad_clip_global, self.st.grad_clip_per_param,
                                        self.num_replicas)

    def clamp(self) -> tf.Tensor:
        """Eq. (4) on every G weight matrix (cross-replica context: one value for every copy);
        returns the largest σ0 before clamping (0 when the clamp is off)."""
        if not self.st.g_sigma0_clamp:
            return tf.constant(0.0, tf.float32)
        return conditioning.clamp_all(self.g.ortho_reg_kernels(), self.st.sigma0_target, self.st.sigma_reg,
                                      self.st.sigma_ratio, self.st.sigma_iterations)
