"""ConvolutionNN end to end on the embedded digits dataset."""
import dataclasses
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from batch_renorm import norm_layers, step_value
from batch_renorm.schedule import scaled_schedule
from resnet import models
from resnet.train import config as training
from resnet.convolution_nn import ConvolutionNN
from resnet.errors import TrainingDiverged
from resnet.runtime.session_config import session_config
from tests.conftest import needs_nchw

tf1 = tf.compat.v1


def small_resnet(norm, total_steps, depth=8):
    return models.resnet(depth, 10, norm=norm, norm_momentum=0.9,
                         renorm_schedule=scaled_schedule(total_steps))


def moving_statistics(cnn):
    variables = [v for layer in norm_layers(cnn.graph)
                 for v in (layer.moving_mean, layer.moving_std)]
    return variables, cnn.session.run(variables)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    # Batch renorm's clipping: the mean over layers, and a histogram.
    for key in ("r_mean", "d_abs_mean", "r_clipped", "d_clipped"):
        assert tags[f"renorm/{key}"] == tags[f"renorm_layers/{key}"] == [0, 20, 40]


def test_runs_that_train_nothing_chart_nothing(digits, tmp_path):
    """A finished model dir opened again (evaluated, exported) gets no
    events file; a resumed run gets one without a second graph, and no
    test point twice."""
    def open_it():
        return ConvolutionNN(small_resnet("batch_norm", 46), digits,
                             model_dir=str(tmp_path), progress=False)

    def events():
        found = {"files": 0, "graphs": 0, "test": []}
        for path in sorted(tmp_path.glob("events.out.tfevents.*")):
            found["files"] += 1
            for event in tf1.train.summary_iterator(str(path)):
                found["graphs"] += bool(event.graph_def)
                found["test"] += [event.step for value in event.summary.value
                                  if value.tag == "test/accuracy"]
        return found

    with open_it() as cnn:
        cnn.evaluate()  # a fresh model's point at step 0
        cnn.train(batch_size=128, num_epoch=1)
        cnn.evaluate()
        cnn.evaluate()
    assert events() == {"files": 1, "graphs": 1, "test": [0, 12]}
    with open_it() as cnn:
        cnn.train(batch_size=128, num_epoch=0)
        cnn.evaluate()
        cnn.export(str(tmp_path / "exported"))
    assert events() == {"files": 1, "graphs": 1, "test": [0, 12]}
    with open_it() as cnn:
        cnn.train(batch_size=128, num_epoch=1)
        cnn.evaluate()
    assert events() == {"files": 2, "graphs": 1, "test": [0, 12, 24]}


def test_predict_and_evaluate_check_their_arrays(digits):
    images, labels = digits.x_test[:50], digits.y_test[:50]
    nan = images.copy()
    nan[7, 3, 3, 0] = np.nan
    with ConvolutionNN(small_resnet("batch_norm", 10), digits,
                       progress=False) as cnn:
        refused = [  # (exception, message, call)
            (ValueError, r"shape \[N, 8, 8, 1\], got \[2, 28, 28, 1\]",
             lambda: cnn.predict(np.zeros((2, 28, 28, 1)))),
            (ValueError, "non-finite values .* in 1 images, the first at index 7",
             lambda: cnn.predict(nan)),
            (ValueError, r"in \[0, 1\].* \[0, 255\] \(0-255 floats: divide by 255\)",
             lambda: cnn.predict(images * 255)),
            (TypeError, "dtype complex64", lambda: cnn.predict(images + 0j)),
            (TypeError, "dtype int64", lambda: cnn.predict(images.astype(np.int64))),
            (ValueError, "images is empty", lambda: cnn.evaluate(images[:0], labels[:0])),
            (ValueError, "labels are needed", lambda: cnn.evaluate(images)),
            (ValueError, "labels without images", lambda: cnn.evaluate(
                None, labels)),
            (ValueError, r"labels must be in \[0, 10\), got 10 at index 3",
             lambda: cnn.evaluate(images, np.where(np.arange(50) == 3, 10, labels))),
            (ValueError, r"shape \[50\] \(one per image\), got \[49\]",
             lambda: cnn.evaluate(images, labels[:49])),
            (TypeError, "labels must be integers", lambda: cnn.evaluate(
                images, labels + 0.7)),
        ]
        for error, message, call in refused:
            with pytest.raises(error, match=message):
                call()
        # uint8 0-255 is the same picture as floats in [0, 1].
        as_uint8 = np.round(images * 255).astype(np.uint8)
        np.testing.assert_array_equal(cnn.predict(as_uint8),
                                      cnn.predict(as_uint8 / 255.0))
        assert cnn.predict(images[:0]).shape == (0,)
    with pytest.raises(ValueError, match="3 outputs, the dataset 10 classes"):
        ConvolutionNN(models.resnet(8, 3), digits)


@needs_nchw
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


class Recorder(tf1.train.SessionRunHook):
    """A user's hook: records every call and the step of every run, and
    asks to stop after `stop_at` steps."""

    def __init__(self, stop_at=None):
        self.calls, self.steps, self.stop_at = [], [], stop_at

    def begin(self):
        self.calls.append("begin")
        self.step = step_value()

    def after_create_session(self, session, coord):
        self.calls.append("after_create_session")

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self.step)

    def after_run(self, run_context, run_values):
        self.steps.append(int(run_values.results))
        if self.stop_at and run_values.results + 1 >= self.stop_at:
            run_context.request_stop()

    def end(self, session):
        self.calls.append("end")


@pytest.mark.slow
def test_a_hook_sees_every_step_and_can_stop_training(digits, tmp_path):
    with ConvolutionNN(small_resnet("batch_renorm", 46), digits, seed=0,
                       model_dir=str(tmp_path), progress=False) as cnn:
        hook = Recorder(stop_at=30)
        history = cnn.train(batch_size=64, num_epoch=3, hooks=[hook])
        assert hook.calls == ["begin", "after_create_session", "end"]
        assert hook.steps == list(range(30))
        # Epoch 1 whole (23 steps), epoch 2 stopped after 7 of its steps.
        assert [(h["epoch"], h["step"], h["batches"]) for h in history] == [
            (1, 23, 23), (2, 30, 7)]
        assert cnn.epochs_done == 1
        assert cnn.session.run(cnn.global_step) == 30
        # Saved where it stopped; the next call finishes epoch 2.
        assert (tmp_path / "model.ckpt-30.index").exists()
        rest = Recorder()
        assert cnn.train(batch_size=64, num_epoch=1, hooks=[rest])[0]["step"] == 46
        assert rest.steps == list(range(30, 46))


def test_tensorflows_own_hooks_run_in_the_loop(digits):
    with ConvolutionNN(small_resnet("batch_norm", 10), digits,
                       progress=False) as cnn:
        stop = tf1.train.StopAtStepHook(last_step=5)
        cnn.train(batch_size=64, num_epoch=1, hooks=[stop])
        assert cnn.session.run(cnn.global_step) == 5


def test_the_evaluation_hook_equals_evaluate_at_the_same_step(digits, tmp_path):
    class EvaluateToo(tf1.train.SessionRunHook):
        """Calls cnn.evaluate() at the steps the evaluation hook does."""
        seen = []

        def begin(self):
            self.step = step_value()

        def before_run(self, run_context):
            return tf1.train.SessionRunArgs(self.step)

        def after_run(self, run_context, run_values):
            if (run_values.results + 1) % 10 == 0:
                self.seen.append({"step": run_values.results + 1,
                                  **cnn.evaluate()})

    with ConvolutionNN(small_resnet("batch_renorm", 46), digits, seed=0,
                       model_dir=str(tmp_path), progress=False) as cnn:
        hook = cnn.evaluation_hook(every_steps=10, every_epochs=1)
        history = cnn.train(batch_size=64, num_epoch=2,
                            hooks=[hook, EvaluateToo()])
        final = cnn.evaluate()
    assert [h["step"] for h in hook.history] == [10, 20, 23, 30, 40, 46]
    by_step = {h["step"]: h for h in hook.history}
    assert [by_step[h["step"]] for h in EvaluateToo.seen] == EvaluateToo.seen
    assert by_step[46] == {"step": 46, **final}
    assert [h["test_accuracy"] for h in history] == [
        by_step[23]["accuracy"], final["accuracy"]]
    steps = [event.step for path in tmp_path.glob("events.out.tfevents.*")
             for event in tf1.train.summary_iterator(str(path))
             for value in event.summary.value if value.tag == "test/accuracy"]
    assert steps == [10, 20, 23, 30, 40, 46]  # the end's once
    with pytest.raises(ValueError, match="every_steps"):
        cnn.evaluation_hook(every_steps=0)


def test_no_checkpoint_of_a_diverged_state(digits, tmp_path):
    """A moving std gone infinite leaves batch norm's loss finite (training
    reads the batch's statistics, and the update makes it NaN); the
    checkpoint would still be poison. None is written. (Batch renorm reads
    it for r and d: whether a NaN clipped to [1, 1] stays NaN differs
    between CPUs' kernels.)"""
    with ConvolutionNN(small_resnet("batch_norm", 1000), digits,
                       model_dir=str(tmp_path), progress=False) as cnn:
        cnn.train(batch_size=128, num_epoch=1)
        files = sorted(os.listdir(tmp_path))
        layer = norm_layers(cnn.graph)[0]
        with cnn.graph.as_default():
            layer.moving_std.load(np.full(layer.moving_std.shape, np.inf),
                                  cnn.session)
        with pytest.raises(TrainingDiverged,
                           match=r"not finite at step 24.*model\.ckpt-12"):
            cnn.train(batch_size=128, num_epoch=1)
    assert sorted(f for f in os.listdir(tmp_path) if "tfevents" not in f) == \
        [f for f in files if "tfevents" not in f]


def test_hyperparameters_are_one_validated_config(digits):
    config = training.TrainConfig(learning_rate=0.05, seed=3)
    with ConvolutionNN(small_resnet("batch_norm", 10), digits, config,
                       momentum=0.8, progress=False) as cnn:
        assert cnn.config == training.TrainConfig(learning_rate=0.05, seed=3,
                                                  momentum=0.8)
    with pytest.raises(ValueError, match="seed must be"):
        training.TrainConfig(seed=-1)
    with pytest.raises(ValueError, match="classes_per_group must be at most"):
        ConvolutionNN(small_resnet("batch_norm", 10), digits,
                      classes_per_group=11)
    with pytest.raises(ValueError, match="group_size needs classes_per_group"):
        training.TrainConfig(group_size=4)
    with pytest.raises(TypeError, match="NetworkLike"):
        ConvolutionNN(lambda images, training: images, digits)
    # Wrong types are named, not met deep inside.
    network = small_resnet("batch_norm", 10)
    with pytest.raises(TypeError, match="dataset must be a datasets.Dataset"):
        ConvolutionNN(network, "digits")
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        ConvolutionNN(network, digits, {"learning_rate": 0.1})
    with pytest.raises(TypeError, match="unknown argument.*learning_rat"):
        ConvolutionNN(network, digits, learning_rat=0.1)
    with pytest.raises(TypeError, match="depth and num_classes must be "
                       "integers, got '20'"):
        models.resnet("20", 10)
    with ConvolutionNN(network, digits, progress=False) as cnn:
        with pytest.raises(TypeError, match="hooks must be"):
            cnn.train(64, 1, hooks=[object()])


def test_the_network_says_what_its_checkpoints_must_agree_on():
    fields = dataclasses.fields(models.Network)
    assert all("checkpoint" in field.metadata for field in fields)
    a = models.resnet(8, 10, norm="batch_renorm")
    b = dataclasses.replace(a, norm_momentum=0.9, microbatch=4,
                            data_format="NCHW",
                            renorm_schedule=scaled_schedule(100))
    assert a.signature() == b.signature()
    assert set(a.signature()) == {"layers", "num_classes", "norm",
                                  "shortcut", "name"}
    assert a.signature() != models.resnet(14, 10).signature()
    assert a.signature()["layers"][0] == {
        "kind": "conv", "size": 16, "strides": 1, "kernel_size": 3,
        "dropout_rate": 0.0, "pool": None}


def test_signal_handlers_are_restored_whatever_a_hook_raises(digits, tmp_path):
    class Broken(tf1.train.SessionRunHook):
        def begin(self):
            raise RuntimeError("broken hook")

    before = signal.getsignal(signal.SIGINT)
    with ConvolutionNN(small_resnet("batch_norm", 10), digits,
                       model_dir=str(tmp_path), progress=False) as cnn:
        with pytest.raises(RuntimeError, match="broken hook"):
            cnn.train(batch_size=64, num_epoch=1, hooks=[Broken()])
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("norm", ["batch_norm", "batch_renorm"])
def test_the_runner_starts_the_moving_statistics_fast_by_default(digits,
                                                                 norm):
    """ConvolutionNN turns the layers' fast start on unless told: after
    one step (the whole training set as the batch) from the same weights
    and batch, the moving means moved by alpha = 0.9 (step 0's fast
    start), 90 times Algorithm 1's 0.01 (fast_start=False)."""
    network = models.custom("conv:4", 10, norm=norm, norm_momentum=0.99)
    means = {}
    for fast_start in (None, False):
        fields = {} if fast_start is None else {"fast_start": fast_start}
        with ConvolutionNN(network, digits, seed=0, progress=False,
                           **fields) as cnn:
            cnn.train(digits.train_size, 1)
            means[fast_start] = cnn.session.run(
                norm_layers(cnn.graph)[0].moving_mean)
    assert np.all(np.abs(means[False]) > 1e-4), means
    np.testing.assert_allclose(means[None], means[False] * 90.0, rtol=1e-4)
