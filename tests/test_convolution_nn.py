"""ConvolutionNN end to end on the embedded digits dataset."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from batch_renorm.schedule import scaled_schedule
from resnet import datasets, models
from resnet.convolution_nn import ConvolutionNN
from resnet.session_config import session_config

tf1 = tf.compat.v1


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def small_resnet(norm, total_steps, depth=8):
    return models.resnet(depth, 10, norm=norm, norm_momentum=0.9,
                         renorm_schedule=scaled_schedule(total_steps))


def moving_statistics(cnn):
    names = [v for v in cnn.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
             if "/moving_" in v.op.name]
    return names, cnn.session.run(names)


@pytest.mark.parametrize("norm", ["batch_renorm", "batch_norm"])
def test_small_resnet_learns_digits(digits, norm):
    epochs, batch_size = 15, 64
    steps = epochs * 23  # ceil(1437 / 64) = 23 batches an epoch
    with ConvolutionNN(small_resnet(norm, steps), digits,
                       lr_boundaries=(steps // 2, steps * 3 // 4), seed=0,
                       progress=False) as cnn:
        history = cnn.train(batch_size, epochs)
        assert [h["step"] for h in history] == [23 * (i + 1) for i in range(epochs)]
        assert cnn.session.run(cnn.global_step) == steps
        metrics = cnn.evaluate()
        assert metrics["accuracy"] >= 0.95, metrics
        assert history[-1]["accuracy"] > history[0]["accuracy"]

        variables, trained = moving_statistics(cnn)
        assert all(not np.allclose(v, 0.0) and not np.allclose(v, 1.0)
                   for v in trained)
        # Inference uses the moving statistics, not the batch's: an image
        # gets the same label alone as in a batch ...
        labels = cnn.predict(digits.x_test)
        assert np.mean(labels == digits.y_test) == metrics["accuracy"]
        alone = [cnn.predict(digits.x_test[i:i + 1])[0] for i in range(10)]
        np.testing.assert_array_equal(alone, labels[:10])
        # ... and back at their initial values they give other labels.
        with cnn.graph.as_default():
            for var, value in zip(variables, trained):
                var.load(np.zeros_like(value) if "mean" in var.op.name
                         else np.ones_like(value), cnn.session)
        assert cnn.evaluate()["accuracy"] < metrics["accuracy"] - 0.2


@pytest.mark.parametrize("depth", [8, 14])
def test_one_global_step_per_batch_whatever_the_depth(digits, depth):
    with ConvolutionNN(small_resnet("batch_renorm", 100, depth), digits,
                       seed=0, progress=False) as cnn:
        cnn.train(batch_size=100, num_epoch=2)
        assert cnn.session.run(cnn.global_step) == 2 * 15  # ceil(1437/100)
        history = cnn.train(batch_size=100, num_epoch=1)
        assert cnn.session.run(cnn.global_step) == 3 * 15
        assert history == [dict(history[0], epoch=3, step=45)]
        assert cnn.graph.get_collection("batch_renorm_global_step_increment") \
            == [cnn.increment_op]


def test_tensorboard_summaries_are_written(digits, tmp_path):
    with ConvolutionNN(small_resnet("batch_renorm", 46), digits, seed=0,
                       model_dir=str(tmp_path), progress=False) as cnn:
        cnn.train(batch_size=64, num_epoch=2)
        cnn.evaluate()
    tags = {}
    for path in tmp_path.glob("events.out.tfevents.*"):
        for event in tf1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["train/loss"] == [0, 20, 40]
    assert {"train/accuracy", "train/learning_rate", "renorm/rmax",
            "renorm/dmax", "test/accuracy", "test/loss"} <= tags.keys()


def test_predict_checks_the_image_shape(digits):
    with ConvolutionNN(small_resnet("batch_norm", 10), digits,
                       progress=False) as cnn:
        with pytest.raises(ValueError, match=r"shape \[N, 8, 8, 1\]"):
            cnn.predict(np.zeros((2, 28, 28, 1)))


def test_a_checkpoint_serves_both_layouts(digits, tmp_path):
    """Trained channels-last, restored channels-first: the same test loss."""
    network = small_resnet("batch_renorm", 12)
    float32 = session_config(precision="float32")
    with ConvolutionNN(network, digits, model_dir=str(tmp_path),
                       session_config=float32, progress=False) as cnn:
        cnn.train(batch_size=128, num_epoch=1)
        want = cnn.evaluate()
    channels_first = dataclasses.replace(network, data_format="NCHW")
    with ConvolutionNN(channels_first, digits, model_dir=str(tmp_path),
                       session_config=float32, progress=False) as cnn:
        assert cnn.epochs_done == 1
        got = cnn.evaluate()
    assert got["accuracy"] == want["accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_threads_are_sized_to_the_step(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)

    def threads(**kwargs):
        config = session_config(**kwargs)
        return (config.intra_op_parallelism_threads,
                config.inter_op_parallelism_threads)

    assert threads() == (4, 2)
    # 8 * 32 * 32 pixels per core at most: half the cores per op.
    assert threads(batch_size=32, image_shape=(32, 32, 3)) == (2, 2)
    assert threads(batch_size=33, image_shape=(32, 32, 3)) == (4, 2)
    assert threads(batch_size=512, image_shape=(8, 8, 1)) == (2, 2)
    assert threads(batch_size=8, image_shape=(32, 32, 3), intra_threads=3,
                   inter_threads=1) == (3, 1)
    with pytest.raises(ValueError, match="inter_threads must be"):
        session_config(inter_threads=0)


def test_channels_first_needs_onednn_or_a_gpu(digits, monkeypatch):
    monkeypatch.setattr("resnet.session_config.onednn_enabled", lambda: False)
    network = dataclasses.replace(small_resnet("batch_norm", 10),
                                  data_format="NCHW")
    with pytest.raises(ValueError, match="NCHW needs a GPU, or oneDNN"):
        ConvolutionNN(network, digits)
