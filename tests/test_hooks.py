"""The loop and its hooks in-process, on a graph of a few ops: the order of
the calls, the triggers' periods, stopping, evaluation and checkpoint
points. (Whole training runs: test_convolution_nn.py.)"""
import types

import pytest
import tensorflow as tf

from batch_renorm import global_step
from resnet.train import graphs, hooks, loop

tf1 = tf.compat.v1


class Batches:
    """A stand-in for `TrainInput`: `per_epoch` batches of 2 images."""

    def __init__(self, per_epoch):
        self.per_epoch, self.started = per_epoch, []

    def start_epoch(self, session, epoch, batch_size, position, first_step):
        self.started.append((epoch, position, first_step))
        return self.per_epoch - position


@pytest.fixture
def tiny(graph):
    """A train graph whose step counts itself and reports a loss of 0.5."""
    step, increment = global_step()
    fetches = {"train": increment, "loss": tf.constant(0.5),
               "correct": tf.constant(1, tf.int64),
               "count": tf.constant(2, tf.int32)}
    train_graph = types.SimpleNamespace(fetches=fetches)
    epochs = graphs.build_epoch_state()
    session = tf1.Session()
    session.run(tf1.global_variables_initializer())
    yield session, train_graph, epochs
    session.close()


class Calls(hooks.EpochHook):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def begin(self):
        self.calls.append("begin")

    def after_create_session(self, session, coord):
        self.calls.append("session")

    def begin_epoch(self, session, epoch, batches):
        self.calls.append(f"epoch {epoch}: {batches}")

    def after_run(self, run_context, run_values):
        self.calls.append("step")
        if self.calls.count("step") == self.stop_at:
            run_context.request_stop()

    def end_epoch(self, session, record):
        self.calls.append(f"end {record['epoch']}")

    def end(self, session):
        self.calls.append("end")

    def close(self):
        self.calls.append("close")


def test_the_loop_calls_each_hook_in_order(tiny):
    session, train_graph, epochs = tiny
    calls = Calls()
    history = loop.train(session, train_graph, epochs, Batches(3), 2, 2,
                         [calls])
    assert calls.calls == ["begin", "session", "epoch 0: 3", *["step"] * 3,
                           "end 1", "epoch 1: 3", *["step"] * 3, "end 2",
                           "end", "close"]
    assert [(h["epoch"], h["step"], h["batches"]) for h in history] == [
        (1, 3, 3), (2, 6, 3)]
    assert history[0]["loss"] == 0.5 and history[0]["accuracy"] == 0.5


def test_a_stop_ends_after_the_step_and_the_epoch_resumes(tiny):
    session, train_graph, epochs = tiny
    calls, batches = Calls(stop_at=2), Batches(3)
    history = loop.train(session, train_graph, epochs, batches, 2, 5, [calls])
    assert calls.calls[-3:] == ["step", "end", "close"]  # no epoch end
    assert history[-1]["batches"] == 2
    loop.train(session, train_graph, epochs, batches, 2, 1, [])
    # The epoch under way goes on at its third batch, global step 2.
    assert batches.started == [(0, 0, 0), (0, 2, 2)]
    assert session.run(epochs.epoch) == 1


def test_an_exception_still_closes_every_hook(tiny):
    session, train_graph, epochs = tiny

    class Broken(hooks.EpochHook):
        def after_run(self, run_context, run_values):
            raise RuntimeError("broken")

    calls = Calls()
    with pytest.raises(RuntimeError, match="broken"):
        loop.train(session, train_graph, epochs, Batches(3), 2, 1,
                   [calls, Broken()])
    assert calls.calls[-1] == "close" and "end" not in calls.calls


def test_the_evaluation_trigger_by_steps_and_epochs(tiny):
    session, train_graph, epochs = tiny
    points = []
    evaluations = iter(range(100))
    hook = hooks.EvaluationHook(
        lambda session: {"accuracy": float(next(evaluations))},
        hooks.Trigger(every_steps=4, every_epochs=2),
        hooks.Metrics(listeners=[lambda *point: points.append(point)]))
    history = loop.train(session, train_graph, epochs, Batches(3), 2, 4,
                         [hook])
    # Steps 4, 8, 12 and the ends of epochs 2 and 4 (steps 6 and 12: the
    # evaluation of step 12 is not repeated).
    assert [p["step"] for p in hook.history] == [4, 6, 8, 12]
    assert points == [(p["step"], "test", {"accuracy": p["accuracy"]})
                      for p in hook.history]
    assert history[1]["test_accuracy"] == 1.0 and "test_accuracy" not in history[0]


def test_a_time_trigger_counts_from_its_last_run(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(hooks.time, "monotonic", lambda: now[0])
    trigger = hooks.Trigger(every_secs=30)
    assert not trigger.due(1)
    now[0] = 131.0
    assert trigger.due(2)
    trigger.restart()
    assert not trigger.due(3)
    both = hooks.Trigger(every_steps=5, every_secs=float("inf"))
    assert [s for s in range(1, 12) if both.due(s)] == [5, 10]
    assert not both.due_epoch(1)


@pytest.mark.parametrize("arguments, message", [
    ({}, "give every_steps, every_secs"),
    ({"every_steps": 0}, "every_steps must be an integer >= 1"),
    ({"every_steps": True}, "every_steps must be an integer"),
    ({"every_secs": float("nan")}, "every_secs must be a number > 0"),
    ({"every_epochs": 1.5}, "every_epochs must be an integer")])
def test_a_trigger_refuses_what_no_run_can_use(arguments, message):
    with pytest.raises(ValueError, match=message):
        hooks.Trigger(**arguments)


def test_checkpoints_by_steps_and_at_each_epochs_end(tiny):
    session, train_graph, epochs = tiny

    class Store:
        latest_step = latest = None
        all_finite = tf.constant(True)

        def __init__(self):
            self.saved = []

        def save(self, session, step):
            self.saved.append(step)
            self.latest_step = step

    store = Store()
    hook = hooks.CheckpointHook(store, hooks.Trigger(every_steps=2,
                                                     every_secs=float("inf")))
    loop.train(session, train_graph, epochs, Batches(5), 2, 2, [hook])
    # Every 2 steps, and at the ends of the epochs (5, 10), not twice.
    assert store.saved == [2, 4, 5, 6, 8, 10]


def test_an_experiment_curve_has_no_point_where_a_signal_stopped_it(tiny):
    from resnet.experiments.harness import CurveHook
    session, train_graph, epochs = tiny
    train_graph.renorm = {}

    class StopAt(hooks.EpochHook):
        def after_run(self, run_context, run_values):
            if session.run(tf1.train.get_global_step()) == 7:
                run_context.request_stop()  # as SignalHook does

    def curve_of(runs):
        curve, saved = [], []
        for stop in runs:
            hook = CurveHook(lambda session: 0.5, train_graph, 4,
                             last_epoch=2, curve=curve, metrics=hooks.Metrics(
                                 listeners=[lambda *p: saved.append(1)]))
            loop.train(session, train_graph, epochs, Batches(5), 2,
                       2 - int(session.run(epochs.epoch)),
                       [hook] + ([StopAt()] if stop else []))
        return [p["step"] for p in curve], len(saved)

    # Stopped at step 7 and resumed: points every 4 steps and at the end of
    # the last epoch (10), as without the stop; none at 7.
    assert curve_of([True, False]) == ([4, 8, 10], 3)
