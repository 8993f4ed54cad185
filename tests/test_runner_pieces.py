"""The pieces `ConvolutionNN` composes, each on its own and on tiny graphs:
model assembly without a session's files, the one run check, the trainer's
default hooks, the trigger's one rule for when a job runs."""
import pytest
import tensorflow as tf

from batch_renorm.schedule import short_run_schedule
from resnet import models
from resnet.data.input_pipeline import per_channel_normalizer
from resnet.errors import UsageError
from resnet.train import hooks, trainer
from resnet.train.config import RunConfig, TrainConfig
from resnet.train.model import build_model, signature
from resnet.train.validation import check_run

tf1 = tf.compat.v1


def test_build_model_gives_one_graph_that_trains_without_files(digits):
    network = models.custom("dense:4", digits.num_classes)
    preprocess = per_channel_normalizer(digits.x_train)
    model = build_model(network, digits, TrainConfig(), preprocess)
    # Every piece lives in the one graph; the kernels, gamma and beta of
    # two layers (plus moving statistics) are its variables.
    for tensor in (model.global_step, model.train.train_op,
                   model.inference.logits, model.epochs.epoch,
                   model.input.images):
        assert tensor.graph is model.graph
    trainable = {v.op.name for v in model.graph.get_collection(
        tf1.GraphKeys.TRAINABLE_VARIABLES)}
    assert trainable == {"network/00_dense/kernel",
                         "network/00_dense/batch_renorm/gamma",
                         "network/00_dense/batch_renorm/beta",
                         "network/logits/kernel", "network/logits/bias"}
    assert model.broadcast is None
    with tf1.Session(graph=model.graph) as session:
        session.run(model.init)
        model.input.load(session)
        batches = model.input.start_epoch(session, 0, 64, 0, 0)
        assert batches == -(-len(digits.x_train) // 64)
        session.run(model.train.train_op)
        assert session.run(model.global_step) == 1
        logits = session.run(model.inference.logits,
                             {model.inference.images: digits.x_test[:3]})
        assert logits.shape == (3, digits.num_classes)


def test_build_model_refuses_a_network_of_other_classes(digits):
    network = models.custom("dense:4", 3)
    with pytest.raises(UsageError, match="3 outputs, the dataset 10 classes"):
        build_model(network, digits, TrainConfig(),
                    per_channel_normalizer(digits.x_train))


def test_the_signature_records_the_data_and_its_normalisation(digits):
    network = models.custom("dense:4", 10)
    preprocess = per_channel_normalizer(digits.x_train)
    recorded = signature(network, digits, preprocess)
    assert recorded == {"network": network.signature(), "dataset": "digits",
                        "image_shape": [8, 8, 1], "num_classes": 10,
                        "normalizer": preprocess.as_dict()}


@pytest.mark.parametrize("network, config, arguments, message", [
    (dict(microbatch=4), {}, dict(sync_statistics=True, workers=2),
     "exclude each other"),
    ({}, dict(classes_per_group=11), {}, "at most the data's 10 classes"),
    ({}, {}, dict(batch_size=30, workers=4), "multiple of the 4 workers"),
    (dict(microbatch=4), {}, dict(batch_size=30), "a multiple of 4"),
    ({}, dict(classes_per_group=3, group_size=8), dict(batch_size=32),
     "group_size .8. must be a multiple of classes_per_group .3."),
    (dict(microbatch=1), {}, dict(batch_size=32), "use a larger microbatch"),
    ({}, {}, dict(batch_size=0), "batch_size must be an integer >= 1"),
    ({}, {}, dict(batch_size=32, num_epoch=-1), "num_epoch must be"),
])
def test_check_run_refuses_what_no_run_can_combine(digits, network, config,
                                                   arguments, message):
    net = models.custom("dense:16", 10, **network)
    with pytest.raises(UsageError, match=message):
        check_run(net, TrainConfig(**config), digits, **arguments)


def test_check_run_checks_only_what_it_is_given(digits):
    net = models.custom("dense:16", 10, microbatch=4)
    # Without a batch: nothing of the batch; without data: nothing of it.
    check_run(net, TrainConfig(classes_per_group=11))
    check_run(net, TrainConfig(), digits)
    # 1437 examples in batches of 1436 leave one example in the last
    # batch: the data's part sees it, a check without data cannot.
    dense = models.custom("dense:16", 10)
    check_run(dense, TrainConfig(), None, batch_size=1436)
    with pytest.raises(UsageError, match="leaves one example per worker"):
        check_run(dense, TrainConfig(), digits, batch_size=1436)


class _Store:
    latest = latest_step = None


def _trainer(checkpoints=None, writer=None, progress=False):
    train = type("Train", (), {"cross_entropy": tf.constant(0.0),
                               "summary": tf.constant(""),
                               "fetches": {}})()
    model = type("Model", (), {"train": train})()
    return trainer.Trainer(None, model, None, None, TrainConfig(),
                           RunConfig(checkpoint_steps=7), checkpoints,
                           writer, progress=progress)


def test_the_default_hooks_follow_what_the_run_has(graph):
    kinds = [type(h) for h in _trainer().default_hooks()]
    assert kinds == [hooks.DivergenceHook, hooks.ProgressHook]
    full = _trainer(_Store(), writer=object(), progress=True).default_hooks()
    assert [type(h) for h in full] == [
        hooks.DivergenceHook, hooks.SignalHook, hooks.CheckpointHook,
        hooks.SummaryHook, hooks.ProgressHook]
    assert full[2].trigger.every_steps == 7 and full[-1].bar is True


def test_a_trigger_fires_once_per_step_and_restarts_its_period(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(hooks.time, "monotonic", lambda: now[0])
    trigger = hooks.Trigger(every_steps=3, every_secs=10)
    fired = [step for step in range(1, 8) if trigger.fires(step)]
    assert fired == [3, 6]
    assert not trigger.fires(6, forced=True)  # ran at 6 already
    assert trigger.fires(7, forced=True)
    now[0] = 9.0
    assert not trigger.fires(8)  # 9 s since the firing at step 7
    now[0] = 10.5
    assert trigger.fires(8) and not trigger.fires(8)
    now[0] = 15.0
    assert not trigger.fires(10)  # 4.5 s since step 8's firing


def test_warnings_of_a_short_run_say_what_it_lacks(caplog):
    network = models.custom("dense:16", 10, norm="batch_renorm")
    trainer.warn_if_short(network, True, 40)
    text = caplog.text
    assert "average only the last" in text and "ending at step 40" in text
    assert "this run ends at step 40, so it trains as batch norm" in text
    caplog.clear()
    trainer.warn_if_short(network, False, 40)
    assert f"hold {100 * 0.99 ** 40:.0f}%" in caplog.text
    caplog.clear()
    trainer.warn_if_short(models.custom("dense:16", 10, norm=None), True, 4)
    assert caplog.text == ""
    caplog.clear()
    long_run = models.custom("dense:16", 10,
                             renorm_schedule=short_run_schedule(500))
    trainer.warn_if_short(long_run, True, 500)
    assert caplog.text == ""


def test_a_signal_hook_of_the_callers_own_stops_training_in_one_error(
        digits):
    """Without a model directory nothing is saved: the error says so
    (it read the checkpoints of a run that had none)."""
    import os
    import signal
    from resnet.convolution_nn import ConvolutionNN
    from resnet.errors import TrainingInterrupted

    class Interrupt(hooks.EpochHook):
        def after_run(self, run_context, run_values):
            if run_context.step == 0:
                os.kill(os.getpid(), signal.SIGINT)

    with ConvolutionNN(models.custom("conv:4", 10), digits,
                       progress=False) as cnn:
        with pytest.raises(TrainingInterrupted,
                           match="stopped by SIGINT at step 2; no "
                           "checkpoint saved"):
            cnn.train(64, 1, hooks=[hooks.SignalHook(), Interrupt()])


def test_settings_leave_no_room_for_flags_that_would_be_ignored(graph):
    from resnet import full_layers
    x = tf1.placeholder(tf.float32, [None, 4, 4, 2])
    settings = full_layers.Settings(True, None, "NCHW")
    for flags in (dict(data_format="NHWC"), dict(batch_norm=True)):
        with pytest.raises(ValueError, match="give the norm and the layout "
                           "in them"):
            full_layers.conv_layer(x, 4, settings, **flags)
    with pytest.raises(ValueError, match="data_format must be one of"):
        full_layers.Settings(True, None, "NWHC")
