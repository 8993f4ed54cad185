"""batch_renorm against a NumPy float64 implementation of Algorithm 1."""
import numpy as np
import pytest
import tensorflow as tf

from batch_renorm import (batch_norm, batch_renorm, global_step, norm_layers,
                          renorm_schedule, use_fast_start)
from batch_renorm import layer as layer_module
from batch_renorm.cpu import has_bfloat16
from batch_renorm.layer import clipping_statistics
from batch_renorm.schedule import check_schedule, short_run_schedule
from resnet.runtime.session_config import onednn_enabled, session_config
from tests import reference

tf1 = tf.compat.v1

EPS = 1e-3
MOMENTUM = 0.9
SHAPES = {"2d": (32, 3), "4d": (4, 3, 5, 3)}
# Batches are drawn with mean 2 and std 3 while the moving statistics start
# at 0 and 1: bounds of 1.2 and 0.5 clip r and d, bounds of 100 never do.
CLIPS = {"clipped": (1.2, 0.5), "unclipped": (100.0, 100.0)}


@pytest.fixture(params=["fused", "reductions"])
def statistics(request, monkeypatch):
    """Batch renorm layers built in the test compute their batch statistics
    by this method, whatever this CPU's default (`statistics_method`)."""
    monkeypatch.setattr(layer_module, "statistics_method",
                        lambda: request.param)
    return request.param


def batches(shape, count, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.normal(2.0, 3.0, size=shape).astype(np.float32)
            for _ in range(count)]


def set_affine(session, channels, seed=1):
    """Gives gamma and beta values other than 1 and 0; returns them."""
    rng = np.random.RandomState(seed)
    gamma = rng.uniform(0.5, 1.5, channels)
    beta = rng.uniform(-1.0, 1.0, channels)
    for var in tf1.trainable_variables():
        var.load(gamma if var.op.name.endswith("gamma") else beta, session)
    return gamma, beta


def follows_the_reference(session, x, y_train, y_infer, reference_step,
                          shape, clip, updates=None, layout=lambda a: a,
                          on_step=None):
    """Trains the first norm layer of the graph on 3 batches of NHWC `shape`
    and checks each output against `reference_step` (a NumPy float64 step
    of `reference`), then the moving statistics and the inference output.
    `updates` (default: all) are the update ops a step runs; `layout` maps
    NHWC arrays to the layer's layout; `on_step(feed, want_r, want_d)`
    checks more before each step. Each step advances the global step; the
    moving statistics move by Algorithm 1's constant alpha = 1 - MOMENTUM.
    Returns the (r, d) wanted at the first step (against the initial 0 and
    1)."""
    layer = norm_layers()[0]
    if updates is None:
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    step_variable, increment = global_step()  # batch norm needs none
    session.run(tf1.variables_initializer([step_variable]))
    gamma, beta = set_affine(session, shape[-1])
    state = (np.zeros(shape[-1]), np.ones(shape[-1]))
    first = None
    for step, batch in enumerate(batches(shape, 3)):
        want, want_r, want_d, state = reference_step(
            batch.astype(np.float64), state, gamma, beta, *clip, MOMENTUM,
            EPS)
        first = first or (want_r, want_d)
        feed = {x: layout(batch)}
        if on_step:
            on_step(feed, want_r, want_d)
        got, _, _ = session.run([y_train, updates, increment], feed)
        np.testing.assert_allclose(got, layout(want), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        session.run([layer.moving_mean, layer.moving_std]), state, rtol=1e-5)
    test_batch = batches(shape, 1, seed=7)[0]
    np.testing.assert_allclose(
        session.run(y_infer, {x: layout(test_batch)}),
        layout(reference.renorm_inference(test_batch, state, gamma, beta)),
        rtol=1e-5, atol=1e-5)
    return first


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("clip", CLIPS.values(), ids=CLIPS.keys())
def test_training_and_inference_follow_algorithm_1(graph, statistics, shape,
                                                  clip):
    rmax, dmax = clip
    x = tf1.placeholder(tf.float32, shape)
    y_train = batch_renorm(x, True, rmax=rmax, dmax=dmax, momentum=MOMENTUM,
                           epsilon=EPS, name="bn")
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        y_infer = batch_renorm(x, False, name="bn")
    layer, = norm_layers()
    assert len(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)) == 2

    def r_and_d(feed, want_r, want_d):
        got_r, got_d = session.run([layer.r, layer.d], feed)
        np.testing.assert_allclose(got_r, want_r, rtol=1e-5)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-5, atol=1e-6)

    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        want_r, want_d = follows_the_reference(
            session, x, y_train, y_infer, reference.renorm_train_step, shape,
            clip, on_step=r_and_d)
    clipped = np.any(want_r == rmax) and np.any(np.abs(want_d) == dmax)
    assert clipped == (rmax < 100)


@pytest.mark.parametrize("microbatch", [None, 2], ids=["batch", "groups"])
def test_channels_first_follows_algorithm_1(graph, statistics, microbatch):
    """NCHW: the reference on the NHWC view of the same batches; gradients
    equal to those of the NHWC layer with the same state."""
    nhwc_shape = (4, 3, 5, 3)
    x = tf1.placeholder(tf.float32, [4, 3, 3, 5])  # NCHW
    y_train = batch_renorm(x, True, rmax=1.2, dmax=0.5, momentum=MOMENTUM,
                           epsilon=EPS, microbatch=microbatch,
                           data_format="NCHW", name="bn")
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        y_infer = batch_renorm(x, False, data_format="NCHW", name="bn")
        y_nhwc = batch_renorm(tf.transpose(x, [0, 2, 3, 1]), True, rmax=1.2,
                              dmax=0.5, microbatch=microbatch, name="bn")
    weights = np.random.RandomState(5).normal(size=nhwc_shape)
    grads = [tf.gradients(tf.reduce_sum(weights.astype(np.float32) * y), x)[0]
             for y in (tf.transpose(y_train, [0, 2, 3, 1]), y_nhwc)]
    # The NCHW layer's updates only: the NHWC view shares its variables.
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)[:2]
    step = (reference.renorm_train_step if microbatch is None else
            lambda *a: reference.grouped_train_step(*a, microbatch))

    def same_gradients(feed, want_r, want_d):
        grad, grad_nhwc = session.run(grads, feed)
        np.testing.assert_allclose(grad, grad_nhwc, rtol=1e-4, atol=1e-4)

    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        follows_the_reference(session, x, y_train, y_infer, step, nhwc_shape,
                              (1.2, 0.5), updates,
                              lambda a: a.transpose([0, 3, 1, 2]),
                              same_gradients)


def test_training_tensor_chooses_the_branch_at_run_time(graph, statistics):
    x = tf1.placeholder(tf.float32, (8, 2, 2, 3))
    training = tf1.placeholder(tf.bool, [])
    y = batch_renorm(x, training, rmax=1.5, dmax=1.0, momentum=MOMENTUM,
                     epsilon=EPS)
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    layer, = norm_layers()
    moving = [layer.moving_mean, layer.moving_std]
    batch = batches((8, 2, 2, 3), 1)[0]
    # Its gradient in training: the layer built with training=True's.
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        y_fixed = batch_renorm(x, True, rmax=1.5, dmax=1.0,
                               momentum=MOMENTUM, epsilon=EPS,
                               name="batch_renorm")
    weights = np.random.RandomState(7).normal(size=batch.shape)
    grads = [tf.gradients(tf.reduce_sum(weights.astype(np.float32) * out),
                          x)[0] for out in (y, y_fixed)]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        gamma, beta = set_affine(session, 3)
        got, want = session.run(grads, {x: batch, training: True})
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.abs(got).max() > 1e-3
        start = (np.zeros(3), np.ones(3))
        got, _ = session.run([y, updates], {x: batch, training: False})
        np.testing.assert_allclose(
            got, reference.renorm_inference(batch, start, gamma, beta),
            rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(session.run(moving), start)
        got, _ = session.run([y, updates], {x: batch, training: True})
        want, _, _, state = reference.renorm_train_step(
            batch.astype(np.float64), start, gamma, beta, 1.5, 1.0,
            MOMENTUM, EPS)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(session.run(moving), state, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_gradients_hold_r_and_d_constant(graph, statistics, shape):
    rng = np.random.RandomState(3)
    batch = rng.normal(1.0, 2.0, size=shape)
    weights = rng.normal(size=shape)
    x = tf1.placeholder(tf.float32, shape)
    # Start the moving statistics away from the batch's so r, d != 1, 0.
    y = batch_renorm(x, True, rmax=1.5, dmax=0.3, epsilon=EPS, name="bn")
    loss = tf.reduce_sum(weights.astype(np.float32) * y)
    layer, = norm_layers()
    gamma, beta, r, d = layer.gamma, layer.beta, layer.r, layer.d
    grads = tf.gradients(loss, [x, gamma, beta])
    # The unfused formula, built from unfused ops.
    mean, var = tf.nn.moments(x, axes=list(range(len(shape) - 1)))
    y_unfused = gamma * ((x - mean) / tf.sqrt(var + EPS) * r + d) + beta
    grads_unfused = tf.gradients(
        tf.reduce_sum(weights.astype(np.float32) * y_unfused),
        [x, gamma, beta])
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        g, b = set_affine(session, shape[-1])
        feed = {x: batch.astype(np.float32)}
        got, unfused, r_value, d_value = session.run(
            [grads, grads_unfused, r, d], feed)
    assert np.all(r_value == 1.5) and np.any(d_value != 0)
    for fused, plain in zip(got, unfused):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-4)
    numeric = [
        reference.numeric_gradient(lambda v: reference.renorm_loss(
            v, weights, g, b, r_value, d_value, EPS), batch.copy()),
        reference.numeric_gradient(lambda v: reference.renorm_loss(
            batch, weights, v, b, r_value, d_value, EPS), g.copy()),
        reference.numeric_gradient(lambda v: reference.renorm_loss(
            batch, weights, g, v, r_value, d_value, EPS), b.copy())]
    for fused, want in zip(got, numeric):
        np.testing.assert_allclose(fused, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_rmax_1_dmax_0_is_plain_batch_norm(graph, statistics, shape):
    x = tf1.placeholder(tf.float32, shape)
    renorm = batch_renorm(x, True, rmax=1.0, dmax=0.0, epsilon=EPS)
    norm = batch_norm(x, True, epsilon=EPS)
    mean, var = tf.nn.moments(x, axes=list(range(len(shape) - 1)))
    textbook = tf.nn.batch_normalization(x, mean, var, None, None, EPS)
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        # Later steps too: the moving statistics no longer match the batch's.
        for batch in batches(shape, 3):
            a, b, c, _ = session.run([renorm, norm, textbook, updates],
                                     {x: batch})
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-5)
        renorm_state, norm_state = [
            session.run([layer.moving_mean, layer.moving_std])
            for layer in norm_layers()]
    np.testing.assert_allclose(renorm_state, norm_state, rtol=1e-5)


@pytest.mark.parametrize("step, want_rmax, want_dmax", [
    (0, 1.0, 0.0),
    (5000, 1.0, 0.0),
    (15000, 1.0 + 2.0 * 10000 / 35000, 5.0 * 10000 / 20000),
    (22500, 2.0, 4.375),
    (25000, 1.0 + 2.0 * 20000 / 35000, 5.0),
    (40000, 3.0, 5.0),
    (10 ** 6, 3.0, 5.0)])
def test_schedule_follows_the_paper(graph, step, want_rmax, want_dmax):
    rmax, dmax = renorm_schedule(tf.constant(step, tf.int64))
    with tf1.Session() as session:
        got = session.run([rmax, dmax])
    np.testing.assert_allclose(got, [want_rmax, want_dmax], rtol=1e-6)


@pytest.mark.parametrize("total, momentum, warmup, end", [
    (1876, 0.99, 300, 938),  # the experiments: 3 / alpha, then half-way
    (200, 0.99, 50, 100),    # short: the warm-up is at most a quarter
    (69, 0.9, 17, 34),       # alpha 0.1: 30 steps would be more than that
    (100000, 0.9, 30, 50000),
    (1, 0.99, 0, 0)])
def test_short_run_schedule(total, momentum, warmup, end):
    assert short_run_schedule(total, momentum) == dict(
        rmax=3.0, dmax=5.0, warmup_steps=warmup, rmax_steps=end,
        dmax_steps=end)
    check_schedule(**short_run_schedule(total, momentum))
    for bad in (dict(total_steps=0), dict(total_steps=10, momentum=1.0)):
        with pytest.raises(ValueError):
            short_run_schedule(**bad)


@pytest.mark.parametrize("norm", [batch_norm, batch_renorm])
@pytest.mark.parametrize("clip", CLIPS.values(), ids=CLIPS.keys())
def test_the_defaults_move_by_algorithm_1s_constant_alpha_bit_for_bit(
        graph, norm, clip):
    """With its default arguments the layer moves mu and sigma by
    alpha = 1 - momentum at every step, from the first (no fast start):
    the same float32 bits as NumPy's mu + alpha * (mu_B - mu) from the
    layer's own batch statistics, at steps 0, 1, 2 and 50 (where a fast
    start's alpha would be 0.9, 0.82, 0.75, 0.17), r and d clipped or not."""
    x = tf1.placeholder(tf.float32, (8, 2, 2, 3))
    extra = {} if norm is batch_norm else dict(zip(("rmax", "dmax"), clip))
    y = norm(x, True, **extra)
    layer, = norm_layers()
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    alpha = np.float32(1.0 - 0.99)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for step, batch in zip((0, 1, 2, 50), batches((8, 2, 2, 3), 4)):
            global_step()[0].load(step, session)
            mu, sigma = session.run([layer.moving_mean, layer.moving_std])
            batch_mean, batch_std, _, _ = session.run(
                [layer.batch_mean, layer.batch_std, y, updates], {x: batch})
            got = session.run([layer.moving_mean, layer.moving_std])
            np.testing.assert_array_equal(got[0], mu + alpha * (batch_mean - mu))
            np.testing.assert_array_equal(got[1],
                                          sigma + alpha * (batch_std - sigma))
            # And the statistics are the batch's (float64 reference).
            np.testing.assert_allclose(batch_mean, batch.mean((0, 1, 2)),
                                       rtol=1e-5)
            np.testing.assert_allclose(
                batch_std, np.sqrt(batch.astype(np.float64).var((0, 1, 2))
                                   + 1e-3), rtol=1e-5)
    assert not [op for op in tf1.get_default_graph().get_operations()
                if op.name.endswith("average_decay")]


@pytest.mark.parametrize("ask", ["argument", "graph"])
@pytest.mark.parametrize("step, alpha", [(0, 0.9), (8, 0.5), (890, 0.01),
                                         (5000, 0.01)])
def test_fast_start_moves_by_its_formula_then_by_alpha(graph, ask, step,
                                                       alpha):
    """fast_start=True (or `use_fast_start` for the graph): alpha = 1 -
    min(0.99, (1 + t) / (10 + t)), hand-computed: the paper's constant 0.01
    from step 890 on, one decay tensor for all layers; fast_start=False
    in the same graph keeps the constant."""
    x = tf1.placeholder(tf.float32, (16, 3))
    if ask == "graph":
        use_fast_start()
    fast = True if ask == "argument" else None
    y = batch_norm(batch_renorm(x, True, momentum=0.99, fast_start=fast),
                   True, momentum=0.99, fast_start=fast)
    constant = batch_norm(x, True, momentum=0.99, fast_start=False)
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    decays = [op for op in tf1.get_default_graph().get_operations()
              if op.name.endswith("average_decay")]
    assert len(decays) == 1
    first, last = norm_layers()[0], norm_layers()[-1]
    batch = batches((16, 3), 1)[0]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        global_step()[0].load(step, session)
        session.run([y, constant, updates], {x: batch})
        mean, std = session.run([first.moving_mean, first.moving_std])
        kept = session.run(last.moving_mean)
    np.testing.assert_allclose(mean, alpha * batch.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        std, 1 + alpha * (np.sqrt(batch.var(0) + 1e-3) - 1), rtol=1e-5)
    np.testing.assert_allclose(kept, 0.01 * batch.mean(0), rtol=1e-5)


def test_layers_inside_and_outside_a_loop_share_the_decay(graph):
    """The decay is built in the outermost graph: a layer in a while
    loop's body first, one outside after (it was the body's tensor)."""
    use_fast_start()
    x = tf1.placeholder(tf.float32, [4, 3])
    tf.while_loop(lambda i, h: i < 2,
                  lambda i, h: (i + 1, batch_norm(h, True, name="inner")),
                  [0, x])
    y = batch_norm(x, True, name="outer")
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        session.run([y, tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)[-2:]],
                    {x: np.ones((4, 3))})


def test_one_step_per_training_step_whatever_the_layer_count(graph):
    layers, steps = 5, 7
    x = tf.constant(batches((16, 4), 1)[0])
    h = x
    for _ in range(layers):
        h = batch_renorm(h, True)  # rmax, dmax from the global step
    loss = tf.reduce_sum(tf.square(h))
    step, increment = global_step()
    assert global_step(graph) == (step, increment)
    assert tf1.train.get_global_step() is step
    minimize = tf1.train.GradientDescentOptimizer(0.01).minimize(loss)
    train_op = tf.group(minimize, increment,
                        *tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
    increments = [op for op in graph.get_operations()
                  if op.type == "AssignVariableOp"
                  and op.inputs[0] is step.handle
                  and op.name != step.initializer.name]
    assert increments == [increment]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for _ in range(steps):
            session.run(train_op)
        assert session.run(step) == steps


def test_a_run_reads_the_step_it_started_from(graph):
    step, increment = global_step()
    rmax, _ = renorm_schedule(graph.get_tensor_by_name(
        "global_step_ops/value:0"), rmax=11.0, warmup_steps=0, rmax_steps=10)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        seen = [session.run([rmax, increment])[0] for _ in range(10)]
    np.testing.assert_allclose(seen, 1.0 + np.arange(10), rtol=1e-6)


def test_state_variables_are_saved_and_restored(graph, tmp_path):
    x = tf.constant(batches((8, 3), 1)[0])
    batch_renorm(x, True, rmax=2.0, dmax=1.0, name="bn")
    trainable = {v.op.name for v in tf1.trainable_variables()}
    step, _ = global_step()  # the decay of the moving statistics reads it
    moving = [v for v in tf1.global_variables()
              if v.op.name not in trainable and v is not step]
    assert trainable == {"bn/gamma", "bn/beta"}
    assert {v.op.name for v in moving} == {"bn/moving_mean", "bn/moving_std"}
    saver = tf1.train.Saver()
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        session.run(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
        saved = session.run(moving)
        path = saver.save(session, str(tmp_path / "model"))
    with tf1.Session() as session:
        saver.restore(session, path)
        np.testing.assert_array_equal(session.run(moving), saved)
    assert not np.allclose(saved[0], 0.0)


@pytest.mark.parametrize("make, message", [
    (lambda: batch_renorm(tf.zeros([2, 3, 4]), True), "2-D"),
    (lambda: batch_renorm(tf1.placeholder(tf.float32, [2, None]), True),
     "channel"),
    (lambda: batch_renorm(tf.zeros([2, 3], tf.int32), True), "float32"),
    (lambda: batch_renorm(tf.zeros([2, 3]), True, momentum=1.0), "momentum"),
    (lambda: batch_renorm(tf.zeros([2, 3]), True, momentum=-0.1), "momentum"),
    (lambda: batch_renorm(tf.zeros([2, 3]), True, epsilon=0.0), "epsilon"),
    (lambda: batch_renorm(tf.zeros([2, 3]), True, rmax=0.5), "rmax"),
    (lambda: batch_renorm(tf.zeros([2, 3]), True, dmax=-1.0), "dmax"),
    (lambda: batch_norm(tf.zeros([2, 3, 4, 5, 6]), True), "2-D"),
    (lambda: batch_norm(tf.zeros([2, 3, 4, 5]), True, data_format="NCWH"),
     "data_format"),
    (lambda: renorm_schedule(tf.constant(0), rmax=0.9), "rmax"),
    (lambda: renorm_schedule(tf.constant(0), warmup_steps=10, dmax_steps=5),
     "dmax_steps"),
])
def test_bad_arguments_raise_value_error(graph, make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("shape, unknown", [
    (SHAPES["2d"], 1), (SHAPES["4d"], 1), (SHAPES["4d"], 3)],
    ids=["2d", "4d", "4d-size-unknown"])
@pytest.mark.parametrize("renorm", [True, False], ids=["renorm", "norm"])
def test_microbatches_normalise_each_group(graph, statistics, shape, unknown,
                                           renorm):
    """`unknown`: the leading sizes unknown when the graph is built."""
    group = 2 if len(shape) == 4 else 4
    x = tf1.placeholder(tf.float32, [None] * unknown + list(shape[unknown:]))
    clip = (1.2, 0.5) if renorm else (1.0, 0.0)
    if renorm:
        y = batch_renorm(x, True, *clip, momentum=MOMENTUM, epsilon=EPS,
                         microbatch=group, name="bn")
    else:
        y = batch_norm(x, True, momentum=MOMENTUM, epsilon=EPS,
                       microbatch=group, name="bn")
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        y_infer = batch_norm(x, False, name="bn")
    layer, = norm_layers()
    assert (layer.r is None) == (not renorm)

    def r_per_group(feed, want_r, want_d):
        if renorm:
            got_r = session.run(layer.r, feed)
            np.testing.assert_allclose(got_r.reshape(want_r.shape), want_r,
                                       rtol=1e-5)

    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        want_r, _ = follows_the_reference(
            session, x, y, y_infer,
            lambda *a: reference.grouped_train_step(*a, group), shape, clip,
            on_step=r_per_group)
        if renorm:  # the clipping was exercised
            assert np.any(want_r == 1.2)
        with pytest.raises(tf.errors.InvalidArgumentError, match="multiple"):
            session.run(y, {x: np.zeros((shape[0] - 1, *shape[1:]))})


def test_training_kernels(graph, statistics):
    """A layer's training step: a gradient-free pass for the statistics
    (the fused kernel in training mode, or sums), the fused kernel in
    inference mode with them, and the fused gradient kernel; no unfused
    moments. In the graph and in what the session executes."""
    x = tf.constant(batches((8, 4, 4, 3), 1)[0])
    h = x
    for _ in range(3):
        h = batch_renorm(h, True, rmax=2.0, dmax=1.0)
    minimize = tf1.train.GradientDescentOptimizer(0.1).minimize(
        tf.reduce_sum(tf.square(h)))
    ops = graph.get_operations()
    types = [op.type for op in ops]
    kernels = [op.get_attr("is_training") for op in ops
               if op.type == "FusedBatchNormV3"]
    passes = 3 if statistics == "fused" else 0
    assert kernels.count(False) == 3 and kernels.count(True) == passes
    assert types.count("FusedBatchNormGradV3") == 3
    assert "SquaredDifference" not in types and "Mean" not in types
    metadata = tf1.RunMetadata()
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        session.run(minimize, options=tf1.RunOptions(
            trace_level=tf1.RunOptions.FULL_TRACE), run_metadata=metadata)
    executed = " ".join(node.timeline_label for device in
                        metadata.step_stats.dev_stats
                        for node in device.node_stats)
    assert executed.count("FusedBatchNorm") >= 3 + passes + 3
    assert "SquaredDifference" not in executed


@pytest.mark.parametrize("microbatch", [None, 4])
def test_clipping_statistics_against_numpy(graph, microbatch):
    """The fractions of r and d at their bounds, mean r and mean |d|, on a
    fixed batch whose channels sit inside and outside the bounds."""
    rng = np.random.RandomState(0)
    # Channel scales and shifts spread r and d across the bounds.
    batch = (rng.normal(size=(16, 2, 2, 6)) * [0.5, 0.9, 1.0, 1.1, 1.6, 3.0]
             + [0.0, 0.1, -0.3, 0.45, -0.6, 2.0]).astype(np.float32)
    rmax, dmax = 1.5, 0.4
    batch_renorm(tf.constant(batch), True, rmax=rmax, dmax=dmax,
                 epsilon=EPS, microbatch=microbatch, name="bn")
    layer, = norm_layers()
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        got = session.run(clipping_statistics(layer))
    state = (np.zeros(6), np.ones(6))
    if microbatch:
        _, r, d, _ = reference.grouped_train_step(
            batch.astype(np.float64), state, 1.0, 0.0, rmax, dmax, 0.0, EPS,
            microbatch)
    else:
        _, r, d, _ = reference.renorm_train_step(
            batch.astype(np.float64), state, 1.0, 0.0, rmax, dmax, 0.0, EPS)
    want = {"r_mean": r.mean(), "d_abs_mean": np.abs(d).mean(),
            "r_clipped": np.mean((r == rmax) | (r == 1 / rmax)),
            "d_clipped": np.mean(np.abs(d) == dmax)}
    assert 0.0 < want["r_clipped"] < 1.0 and 0.0 < want["d_clipped"] < 1.0
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


@pytest.mark.parametrize("renorm", [True, False], ids=["renorm", "norm"])
def test_microbatch_gradients_hold_r_and_d_constant(graph, statistics, renorm):
    """The fused microbatch path (groups folded into channels) against the
    unfused formula per group, r and d constant: outputs and gradients."""
    shape, group = (8, 3, 3, 4), 2
    rng = np.random.RandomState(4)
    batch = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    weights = rng.normal(size=shape).astype(np.float32)
    x = tf.constant(batch)
    layer_fn = (lambda v: batch_renorm(v, True, rmax=1.5, dmax=0.3,
                                       epsilon=EPS, microbatch=group))
    y = layer_fn(x) if renorm else batch_norm(x, True, epsilon=EPS,
                                              microbatch=group)
    layer, = norm_layers()
    groups = tf.reshape(x, [-1, group, *shape[1:]])
    mean, var = tf.nn.moments(groups, axes=[1, 2, 3], keepdims=True)
    x_hat = (groups - mean) / tf.sqrt(var + EPS)
    if renorm:
        x_hat = (x_hat * tf.reshape(layer.r, [-1, 1, 1, 1, 4])
                 + tf.reshape(layer.d, [-1, 1, 1, 1, 4]))
    y_unfused = tf.reshape(layer.gamma * x_hat + layer.beta, shape)
    variables = [x, layer.gamma, layer.beta]
    grads, grads_unfused = [
        tf.gradients(tf.reduce_sum(weights * out), variables)
        for out in (y, y_unfused)]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        set_affine(session, 4)
        got, want, outputs = session.run([grads, grads_unfused,
                                          [y, y_unfused]])
        if renorm:
            assert np.any(session.run(layer.r) == 1.5)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for fused, plain in zip(got, want):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("ratios", [[0.0, 1.0, 2.0, 3.0],
                                    [0.0, 10.0, 100.0, 1000.0]],
                         ids=["near", "far"])
def test_statistics_of_channels_far_from_zero(graph, statistics, ratios,
                                              data_format):
    """The statistics pass against float64 on channels whose mean is up to
    1000 times their std, 131,072 values each (E[x^2] - E[x]^2 in float32,
    tried as a faster pass, was 16% off at 100). The sums keep their one
    pass "near" (every mean within 4 stds of zero) and sum again around
    the mean "far"."""
    from batch_renorm.layer import _batch_statistics
    rng = np.random.RandomState(5)
    batch = ((rng.normal(size=(128, 32, 32, 4)) + ratios) * 0.1
             ).astype(np.float32)
    exact = batch.astype(np.float64)
    if data_format == "NCHW":
        batch = batch.transpose([0, 3, 1, 2])
    x = tf1.placeholder(tf.float32, [None, *batch.shape[1:]])
    stats = _batch_statistics(x, EPS, data_format)
    metadata = tf1.RunMetadata()
    with tf1.Session() as session:
        mean, variance = session.run(
            [stats.mean, stats.variance], {x: batch}, options=tf1.RunOptions(
                trace_level=tf1.RunOptions.FULL_TRACE), run_metadata=metadata)
    np.testing.assert_allclose(mean, exact.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(variance, exact.var(axis=(0, 1, 2)), rtol=1e-4)
    executed = [node.node_name for device in metadata.step_stats.dev_stats
                for node in device.node_stats]
    again = any("around_mean" in name for name in executed)
    assert again == (statistics == "reductions" and ratios[-1] > 4)


@pytest.mark.parametrize("flags, gpus, want", [
    ({"avx2"}, [], "reductions"),
    ({"avx2", "avx512f"}, [], "fused"),
    ({"avx2", "avx512f", "avx512_bf16"}, [], "fused"),
    (set(), [], "fused"),
    ({"avx2"}, ["GPU:0"], "fused"),
])
def test_statistics_by_sums_only_on_avx2_cpus(monkeypatch, flags, gpus, want):
    """Where oneDNN stops at AVX2 (its training kernel slow) and no GPU is
    visible; the fused pass on AVX-512, in bfloat16 and on a GPU."""
    monkeypatch.setattr(layer_module, "cpu_flags", lambda: flags)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    assert layer_module.statistics_method() == want


@pytest.mark.parametrize("layer, microbatch", [
    (batch_norm, None), (batch_renorm, None), (batch_renorm, 2)])
@pytest.mark.parametrize("shape", [[None, 8, 8, 3], [None, None, None, 3]])
def test_the_bfloat16_rewrite_casts_no_input_to_float32(layer, microbatch,
                                                        shape):
    """A layer counts its values per channel from its input's shape, never
    its size: for a Size op the bfloat16 rewrite would cast the whole input
    to float32, a pass over it in every layer whose input's shape is not
    fully known when the graph is built (a training batch's size)."""
    if not (has_bfloat16() and onednn_enabled()):
        pytest.skip("no bfloat16 rewrite here: it needs oneDNN and a CPU "
                    "that computes bfloat16")
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, shape)
        kernel = tf1.get_variable("kernel", [3, 3, 3, 4])
        features = tf.nn.conv2d(images, kernel, 1, "SAME", name="conv")
        options = {"microbatch": microbatch} if microbatch else {}
        loss = tf.reduce_sum(layer(features, training=True, **options))
        step = [tf1.train.GradientDescentOptimizer(0.1).minimize(loss),
                tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)]
        metadata = tf1.RunMetadata()
        config = session_config(1, 1, precision="bfloat16")
        with tf1.Session(config=config) as session:
            session.run(tf1.global_variables_initializer())
            session.run(step, {images: np.ones([4, 8, 8, 3], np.float32)},
                        options=tf1.RunOptions(output_partition_graphs=True),
                        run_metadata=metadata)
    nodes = {node.name: node for graph in metadata.partition_graphs
             for node in graph.node}
    casts = [node for node in nodes.values() if node.op == "Cast"]
    assert any(node.attr["DstT"].type == tf.bfloat16 for node in casts)
    # What a copy of the input would come from: the conv, or the ops the
    # layer passes it through before its statistics.
    activations = ("Conv2D", "StopGradient", "Identity", "Reshape",
                   "Transpose")
    to_float = [node.name for node in casts
                if node.attr["DstT"].type == tf.float32
                and nodes[node.input[0].split(":")[0]].op.replace(
                    "_MklNative", "").replace("_Mkl", "") in activations]
    assert to_float == []
