"""Evaluation with other statistics than the moving averages: each group's
own batch statistics, and population statistics recomputed over the
training set, against NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from batch_renorm import batch_norm, norm_layers
from resnet import models
from resnet.train import graphs
from resnet.train import config, loop
from resnet.convolution_nn import ConvolutionNN
from resnet.runtime.session_config import session_config

tf1 = tf.compat.v1
EPSILON = 1e-3  # the layers' default


def test_population_statistics_are_the_whole_sets(graph):
    rng = np.random.RandomState(0)
    # Channels far from zero and of unequal spread; 7 batches of 50 and a
    # partial one that is left out.
    data = (rng.randn(370, 2, 2, 3) * [1.0, 5.0, 0.1] + [3.0, -40.0, 0.5]
            ).astype(np.float32)
    images = tf1.placeholder(tf.float32, [None, 2, 2, 3])
    batch_norm(images, training=True)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        (mean, std), = loop.population_statistics(session, images,
                                                  norm_layers(), data, 50)
    whole = data[:350].astype(np.float64)
    np.testing.assert_allclose(mean, whole.mean(axis=(0, 1, 2)), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(
        std, np.sqrt(whole.var(axis=(0, 1, 2)) + EPSILON), rtol=1e-4)
    with pytest.raises(ValueError, match="at least one batch of 500"):
        loop.population_statistics(session, images, norm_layers(), data)


def test_batch_statistics_normalise_each_group_alone(graph):
    network = models.custom("dense:6", 10, norm="batch_norm", microbatch=4)
    inference = graphs.build_inference(network, (8, 8, 1),
                                       batch_statistics=True)
    x = np.random.RandomState(1).rand(12, 8, 8, 1).astype(np.float32)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        logits = session.run(inference.logits, {inference.images: x})
        values = {v.op.name: session.run(v)
                  for v in tf1.trainable_variables()}
    kernel, out_kernel = (values[n] for n in sorted(values) if "kernel" in n)
    gamma, = (values[n] for n in values if n.endswith("gamma"))
    beta, = (values[n] for n in values if n.endswith("beta"))
    bias, = (values[n] for n in values if n.endswith("bias"))
    h = (x.reshape(12, 64) @ kernel).reshape(3, 4, 6)  # 3 groups of 4
    h = (h - h.mean(axis=1, keepdims=True)) / np.sqrt(
        h.var(axis=1, keepdims=True) + EPSILON)
    h = np.maximum(gamma * h + beta, 0.0).reshape(12, 6)
    np.testing.assert_allclose(logits, h @ out_kernel + bias, rtol=1e-4,
                               atol=1e-5)


def test_a_short_run_gives_a_model_in_every_statistics(digits):
    # 24 steps: with Algorithm 1's constant alpha = 0.01 the moving
    # averages would hold 79% of their initial 0 and 1 (test accuracy
    # 0.10); they start fast, and the population statistics agree.
    network = models.resnet(8, 10, norm="batch_norm")
    with ConvolutionNN(network, digits, progress=False) as cnn:
        cnn.train(batch_size=128, num_epoch=2)
        before = cnn.evaluate()
        population = cnn.evaluate(statistics="population")
        assert cnn.evaluate() == before  # the moving averages are back
        ordered = cnn.evaluate(statistics="batch")
        with pytest.raises(ValueError, match="statistics must be one of"):
            cnn.evaluate(statistics="running")
    for metrics in (before, population, ordered):
        assert metrics["accuracy"] > 0.9, (before, population, ordered)


def test_other_statistics_refuse_what_they_cannot_use(digits):
    grouped = models.resnet(8, 10, norm="batch_norm", microbatch=4,
                            dropout_rate=0.5)
    with ConvolutionNN(grouped, digits, progress=False) as cnn:
        with pytest.raises(ValueError, match="give a multiple of 4 images, "
                           "got 10"):
            cnn.evaluate(digits.x_test[:10], digits.y_test[:10],
                         statistics="batch")
        # Normalised by batch statistics, but without dropout: the same
        # result twice.
        once = cnn.evaluate(digits.x_test[:100], digits.y_test[:100],
                            statistics="batch")
        assert cnn.evaluate(digits.x_test[:100], digits.y_test[:100],
                            statistics="batch") == once
    with ConvolutionNN(models.resnet(8, 10, norm=None), digits,
                       progress=False) as cnn:
        # No norms: nothing to recompute.
        assert cnn.evaluate(statistics="population") == cnn.evaluate()


def test_a_short_run_says_what_it_cannot_do(digits, caplog):
    """24 steps: one warning that batch renorm's ramp stays shut (from step
    5,000), one that the moving statistics average ~(10 + 24) / 9 = 4
    steps; a run of its length's schedule and 10-step averages warns of
    neither. The runners ask for the intra-op threads this process has
    (an earlier test's runner may have fixed them, `use_threads`), so
    that the warnings are the schedule's only, in any test order."""
    threads = session_config(
        tf.config.threading.get_intra_op_parallelism_threads() or None)
    with ConvolutionNN(models.resnet(8, 10, norm="batch_renorm"), digits,
                       progress=False, session_config=threads) as cnn:
        cnn.train(batch_size=128, num_epoch=2)
    assert [record.getMessage().split(",")[0] for record in caplog.records
            if record.levelname == "WARNING"] == [
        "the norms' moving statistics",
        "batch renorm: r = 1 and d = 0 until step 5000 (the network's "
        "renorm_schedule)"]
    assert "average only the last ~4 steps of a run ending at step 24" in (
        caplog.text)
    caplog.clear()
    fitted = models.resnet(8, 10, norm="batch_renorm", norm_momentum=0.9,
                           **config.run_length_defaults(24, 0.9)["network"])
    with ConvolutionNN(fitted, digits, progress=False,
                       session_config=threads) as cnn:
        cnn.train(batch_size=128, num_epoch=2)
    assert not [record for record in caplog.records
                if record.levelname == "WARNING"], caplog.text
