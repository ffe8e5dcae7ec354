"""Memory of the sigma monitoring (Appendix F; issue 14): singular values of a wide kernel come from the
fan_in x fan_in Gram (G's first linear layer at 128 px is 20 x 24,576) and still equal an SVD's."""

import numpy as np
import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNDense, top_singular_values


def _wide_kernel(rng, fan_in=12, fan_out=200):
    u, _ = np.linalg.qr(rng.randn(fan_in, fan_in))
    v, _ = np.linalg.qr(rng.randn(fan_out, fan_in))
    s = np.linspace(4.0, 0.5, fan_in)
    return (u @ np.diag(s) @ v.T).astype(np.float32), s


def test_wide_kernel_singular_values_match_svd_with_and_without_the_sn_vector():
    kernel, s = _wide_kernel(np.random.RandomState(5))
    np.testing.assert_allclose(top_singular_values(tf.constant(kernel), k=3).numpy(), s[:3], rtol=1e-4)
    layer = SNDense(kernel.shape[1])
    layer(tf.zeros((1, kernel.shape[0])))
    layer.kernel.assign(kernel)
    for _ in range(3):  # a few power iterations: u now points along sigma_0's right vector
        layer(tf.zeros((1, kernel.shape[0])), training=True)
    np.testing.assert_allclose(layer.singular_values().numpy(), s[:3], rtol=1e-4)


def test_wide_kernel_monitoring_never_builds_the_fan_out_gram():
    spec = tf.TensorSpec((20, 24576), tf.float32)
    graph = tf.function(lambda w: top_singular_values(w, k=3)).get_concrete_function(spec).graph
    sizes = [int(np.prod(out.shape)) for op in graph.get_operations() for out in op.outputs
             if out.shape.is_fully_defined()]
    assert max(sizes) == 20 * 24576


def _attention_inputs(rng, batch=3, n=64, m=16, c8=4, c2=8):
    return [tf.constant(rng.randn(batch, *shape), tf.float32) for shape in ((n, c8), (m, c8), (m, c2), (n, c2))]


def test_per_image_attention_equals_the_formula_with_first_and_second_order_gradients():
    """The memory-lean attention (training calls) is softmax(theta phi^T) g (numpy), and its gradients,
    including the gradient of an input-gradient penalty (R1 differentiates through D), equal autodiff of
    the batched form."""
    from tf_biggan.layers.attention import attend

    theta, phi, g, w = _attention_inputs(np.random.RandomState(0))
    logits = np.einsum("bnc,bmc->bnm", theta.numpy(), phi.numpy())
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    np.testing.assert_allclose(attend(theta, phi, g, per_image=True).numpy(), soft @ g.numpy(), rtol=1e-5, atol=1e-5)

    @tf.function
    def grads(per_image):
        with tf.GradientTape() as outer:
            outer.watch([theta, phi, g])
            with tf.GradientTape() as inner:
                inner.watch([theta, phi, g])
                loss = tf.reduce_sum(attend(theta, phi, g, per_image=per_image) * w)
            first = inner.gradient(loss, [theta, phi, g])
            penalty = tf.reduce_sum(tf.square(first[0]))
        return first, outer.gradient(penalty, [theta, phi, g])

    for lean, batched in zip(tf.nest.flatten(grads(True)), tf.nest.flatten(grads(False))):
        assert float(tf.norm(batched)) > 0
        np.testing.assert_allclose(lean.numpy(), batched.numpy(), rtol=1e-5, atol=1e-6)


def test_training_attention_never_holds_a_batch_of_attention_maps():
    """model.attention_per_image: at 64 px a (batch, 4096, 1024) map is 16 MB per image; the training
    graph (forward and backward) builds maps of one image only; inference keeps the batched form."""
    from tf_biggan.layers.attention import SelfAttention

    layer = SelfAttention(per_image=True)
    x = tf.random.normal((4, 16, 16, 16))
    layer(x)

    def largest_map(training):
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x, training=training))
            return tape.gradient(loss, layer.trainable_variables)

        graph = tf.function(step).get_concrete_function(tf.TensorSpec(x.shape)).graph
        sizes = []
        for g in [graph] + [f.graph for f in graph._functions.values() if hasattr(f, "graph")]:
            sizes += [out.shape.as_list() for op in g.get_operations() for out in op.outputs
                      if out.shape.rank == 3 and out.shape.is_fully_defined() and out.shape[-2:] == (256, 64)]
        return sizes

    assert [4, 256, 64] in largest_map(training=False)
    assert largest_map(training=True) == []


def test_freed_tensors_leave_the_process_resident_set():
    """tf_biggan's host settings (host/memory.py): a step's freed activations go back to the OS
    (TF's default oneDNN BFC arena kept every byte it ever held)."""
    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

    before = rss_mb()
    xs = [tf.fill((4 * 1024 * 1024 + i,), float(i)) for i in range(24)]  # 24 activations of 16 MB
    held = rss_mb()
    del xs
    assert held - before > 300, (before, held)  # they were resident
    assert rss_mb() - before < 50, (before, held, rss_mb())  # and freeing them released the memory


def test_training_step_turns_constant_folding_off():
    """host/grappler.py: Grappler's constant folding baked the memory optimizer's zero
    accumulators of G's kernel gradients into 281 MB of resident Consts at BigGAN-128 (measured
    offline on the optimised step graph; the tiny models here never trigger that rewrite, so the
    wiring is what a test can check): the step's compile() turns it off, whatever was set before."""
    tf.config.optimizer.set_experimental_options({"constant_folding": True})
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    trainer = GANTrainer(load_hparams(None, "model.ch=4,train.batch_size=4,train.steps_per_loop=1"), verbose=False)
    trainer.train_step.compile()
    assert tf.config.optimizer.get_experimental_options()["constant_folding"] is False


def test_sigma_monitoring_takes_one_layer_at_a_time_and_matches_svd():
    """training/monitor.py: each layer's singular values start after the previous layer's are done
    (its kernel read waits on them), so only one Gram matrix is alive at a time; the values are an
    SVD's top three for every layer."""
    from tf_biggan.config import load_hparams
    from tf_biggan.models import build_models
    from tf_biggan.training.monitor import SingularValues

    hp = load_hparams(None, "model.ch=4")
    g, d = build_models(hp)
    g.build_for_input(1)
    d.build_for_input(1)
    monitor = SingularValues(g, d)
    graph = monitor._fn.get_concrete_function().graph
    outputs = tf.nest.flatten(graph.structured_outputs)
    assert len(outputs) == len(monitor.layers) > 10
    handles = {id(l.kernel): graph.capture(l.kernel.handle if isinstance(l.kernel, tf.Variable)
                                           else l.kernel.value.handle) for _, l in monitor.layers}
    # tf.function returns Identity copies of the values; the chain waits on the values themselves.
    values = [t.op.inputs[0] if t.op.type == "Identity" else t for t in outputs]
    for i, (_, layer) in enumerate(monitor.layers[1:], start=1):
        reads = [op for op in graph.get_operations()
                 if op.type == "ReadVariableOp" and op.inputs[0] is handles[id(layer.kernel)]]
        assert reads and all(values[i - 1].op in op.control_inputs for op in reads), (i, layer.name)
    for name, values in monitor().items():
        layer = next(l for net, l in monitor.layers if f"{net}/{l.kernel.path}" == name)
        w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        np.testing.assert_allclose(values, np.linalg.svd(w, compute_uv=False)[:3], rtol=2e-3, err_msg=name)
