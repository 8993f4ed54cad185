"""Layer wrappers and networks: sizes, parameter counts, what flags add."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from resnet import full_layers, models
from tests.conftest import needs_nchw

tf1 = tf.compat.v1


def parameter_count():
    return sum(v.shape.num_elements() for v in tf1.trainable_variables())


def resnet_parameters(depth, filters=(16, 32, 64), classes=10):
    """Hand count for option A: 3x3 kernels plus gamma and beta per conv."""
    n = (depth - 2) // 6
    total = 3 * 3 * 3 * filters[0] + 2 * filters[0]
    previous = filters[0]
    for f in filters:
        for _ in range(2 * n):
            total += 3 * 3 * previous * f + 2 * f
            previous = f
    return total + filters[-1] * classes + classes


@pytest.mark.slow
@pytest.mark.parametrize("depth, paper_millions", [
    (20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_resnet_has_the_papers_parameter_count(graph, depth, paper_millions):
    models.resnet(depth, 10)(tf1.placeholder(tf.float32, [None, 32, 32, 3]), True)
    count = parameter_count()
    assert count == resnet_parameters(depth)
    assert round(count / 1e6, 2 if depth < 110 else 1) == paper_millions
    if depth == 20:
        assert count == 269722


def test_option_b_adds_projections(graph):
    models.resnet(20, 10, shortcut="B")(
        tf1.placeholder(tf.float32, [None, 32, 32, 3]), True)
    # Two 1x1 projections (16->32, 32->64), each with gamma and beta.
    projections = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert parameter_count() == 269722 + projections


def test_endpoint_shapes_and_shared_variables(graph):
    images = tf1.placeholder(tf.float32, [None, 32, 32, 3])
    network = models.resnet(20, 7, norm="batch_renorm")
    logits = network(images, True)
    count = len(tf1.global_variables())
    logits_eval = network(images, False)
    assert len(tf1.global_variables()) == count  # shared, not copied
    assert logits.shape.as_list() == logits_eval.shape.as_list() == [None, 7]
    block_outputs = [graph.get_tensor_by_name(f"resnet20/{i:02d}_block/output:0")
                     for i in (3, 4, 9)]
    assert [t.shape.as_list() for t in block_outputs] == [
        [None, 32, 32, 16], [None, 16, 16, 32], [None, 8, 8, 64]]
    # 19 conv layers with a norm each: 2 update ops per norm, training only.
    assert len(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)) == 2 * 19
    # Weight decay applies to the 19 conv kernels and the dense kernel only.
    weights = tf1.get_collection(tf1.GraphKeys.WEIGHTS)
    assert len(weights) == 20 and all(w.op.name.endswith("kernel") for w in weights)


def test_dropout_is_active_in_training_only(graph):
    x = tf.constant(np.random.RandomState(0).rand(4, 6, 6, 3), tf.float32)
    with tf1.variable_scope("net", reuse=tf1.AUTO_REUSE):
        train = full_layers.conv_layer(x, 8, True, dropout_rate=0.5, name="c")
        infer = full_layers.conv_layer(x, 8, False, dropout_rate=0.5, name="c")
        plain = full_layers.conv_layer(x, 8, True, name="c")
    from batch_renorm import global_step
    _, increment = global_step()
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        a, b, c = session.run([train, infer, plain])
        again = session.run(train)
        session.run(increment)
        next_step = session.run(train)
    np.testing.assert_array_equal(b, c)          # inference: no dropout
    dropped = a == 0
    assert 0.3 < (dropped & (c != 0)).mean() / (c != 0).mean() < 0.7
    np.testing.assert_allclose(a[~dropped], 2 * c[~dropped], rtol=1e-6)
    np.testing.assert_array_equal(a, again)      # same step, same mask
    assert not np.array_equal(a == 0, next_step == 0)


def test_pooling_and_flags(graph):
    x = tf1.placeholder(tf.float32, [None, 8, 8, 3])
    assert full_layers.conv_layer(x, 4, True, pool="max", name="a").shape.as_list() == [None, 4, 4, 4]
    assert full_layers.conv_layer(x, 4, True, pool="avg", strides=2, name="b").shape.as_list() == [None, 2, 2, 4]
    dense = full_layers.dense_layer(x, 5, True, batch_norm=True, name="d")
    assert dense.shape.as_list() == [None, 5]
    names = {v.op.name for v in tf1.global_variables()}
    assert {"a/bias", "d/kernel", "d/batch_norm/moving_std"} <= names
    assert "d/bias" not in names  # the norm's beta takes its place
    with pytest.raises(ValueError, match="exclusive"):
        full_layers.conv_layer(x, 4, True, batch_norm=True, batch_renorm=True)
    with pytest.raises(ValueError, match="pool"):
        full_layers.conv_layer(x, 4, True, pool="min")
    with pytest.raises(ValueError, match="dropout_rate"):
        full_layers.dense_layer(x, 4, True, dropout_rate=1.0)


def test_option_a_shortcut_is_a_padded_subsampled_identity(graph):
    x_value = np.random.RandomState(0).rand(2, 4, 4, 2)
    y = full_layers.resnet_block(tf.constant(x_value, tf.float32), 4, True,
                                 strides=2, name="block")
    # Zero the residual branch's last conv: what is left is relu(shortcut).
    kernel = [v for v in tf1.global_variables() if v.op.name == "block/conv2/kernel"][0]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        kernel.load(np.zeros(kernel.shape), session)
        got = session.run(y)
    want = np.zeros((2, 2, 2, 4))
    want[..., 1:3] = x_value[:, ::2, ::2, :]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n"):
        models.resnet(21, 10)


def test_layer_specs_parse_and_build(graph):
    layers = models.parse_layers("conv:8:pool=max,block:16:strides=2,dense:32:dropout=0.5")
    assert layers == (models.Layer("conv", 8, pool="max"),
                      models.Layer("block", 16, strides=2),
                      models.Layer("dense", 32, dropout_rate=0.5))
    logits = models.custom("mnist_small", 10)(
        tf1.placeholder(tf.float32, [None, 28, 28, 1]), True)
    assert logits.shape.as_list() == [None, 10]
    for bad in ("conv", "conv:x", "pool:3", "conv:8:colour=red", "conv:8:pool=min"):
        with pytest.raises(ValueError):
            models.parse_layers(bad)


@pytest.mark.parametrize("network", [
    models.resnet(8, 10, norm="batch_renorm"),
    models.custom("conv:8:pool=max,block:16:strides=2,block:16:pool=avg", 10,
                  norm=None, shortcut="B"),
    models.custom("conv:8:pool=max,dense:16", 10, norm="batch_norm"),
], ids=["resnet8-renorm", "pools-projection-bias", "hidden-dense-flattens"])
@needs_nchw
def test_channels_first_computes_the_same_function(graph, network):
    """NCHW shares the NHWC network's variables and gives its logits and
    gradients, in training and in inference."""
    images = tf.constant(np.random.RandomState(0).rand(4, 16, 16, 3),
                         tf.float32)
    nchw = dataclasses.replace(network, data_format="NCHW")
    pairs = []
    for training in (True, False):
        logits = [net(images, training) for net in (network, nchw)]
        pairs.append(logits)
        grads = [tf.gradients(tf.reduce_sum(y ** 2), tf1.trainable_variables())
                 for y in logits]
        pairs += zip(*grads)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for nhwc_value, nchw_value in session.run(pairs):
            # Summation orders differ: a tolerance on the tensor's scale.
            scale = max(1.0, float(np.abs(nhwc_value).max()))
            np.testing.assert_allclose(nchw_value, nhwc_value, rtol=1e-4,
                                       atol=1e-5 * scale)
    assert len(tf1.trainable_variables()) == len(pairs) // 2 - 1  # shared
    with pytest.raises(ValueError, match="data_format"):
        dataclasses.replace(network, data_format="CHWN")


@pytest.mark.parametrize("network, image_shape", [
    (models.resnet(20, 10, norm="batch_renorm"), (32, 32, 3)),
    (models.custom("conv:8:pool=max:strides=2,block:16:strides=2,"
                   "block:16:pool=avg,dense:32,dense:16", 10, norm=None,
                   shortcut="B"), (28, 28, 1)),
    (models.custom("conv:8:kernel_size=5,block:16:strides=2,dense:24", 10,
                   norm="batch_norm", shortcut="B"), (9, 9, 1))])
def test_size_counts_the_parameters_the_graph_will_have(graph, network,
                                                        image_shape):
    params, _ = network.size(image_shape)
    network(tf1.placeholder(tf.float32, [None, *image_shape]), True)
    assert params == sum(int(np.prod(v.shape))
                         for v in tf1.trainable_variables())
    if network.name == "resnet20":
        assert params == 269_722  # He et al. 2015: 0.27 M


@pytest.mark.parametrize("depth, published", [
    (18, 11_689_512), (34, 21_797_672), (50, 25_557_032),
    pytest.param(101, 44_549_160, marks=pytest.mark.slow),
    pytest.param(152, 60_192_808, marks=pytest.mark.slow)])
def test_imagenet_resnets_have_the_published_parameter_counts(
        graph, depth, published):
    """He et al.'s Table 1 networks with 1,000 classes, option B: the
    counts published for torchvision's resnet18-152 (the same layers:
    convolutions without biases, gamma and beta per norm, a dense layer
    with biases), in the built graph and in `Network.size`."""
    network = models.imagenet_resnet(depth)
    logits = network(tf1.placeholder(tf.float32, [None, 224, 224, 3]), True)
    assert logits.shape.as_list() == [None, 1000]
    assert parameter_count() == published
    assert network.size((224, 224, 3))[0] == published


def test_resnet50_stages_and_bottlenecks(graph):
    """224x224 images: 56, 28, 14 and 7 pixel maps of 256 to 2048 channels
    after the stem's 7x7 / 2 convolution and 3x3 / 2 pooling; a bottleneck
    is 1x1, 3x3 (with the stride), 1x1 to 4x its inner width."""
    models.imagenet_resnet(50)(tf1.placeholder(tf.float32, [2, 224, 224, 3]),
                               True)
    for index, side, filters in ((3, 56, 256), (7, 28, 512), (13, 14, 1024),
                                 (16, 7, 2048)):
        name = f"resnet50/{index:02d}_bottleneck/output:0"
        shape = graph.get_tensor_by_name(name).shape.as_list()
        assert shape == [2, side, side, filters]
    kernels = {v.op.name: v.shape.as_list() for v in tf1.trainable_variables()
               if v.op.name.startswith("resnet50/04_bottleneck/")
               and v.op.name.endswith("kernel")}
    assert kernels == {"resnet50/04_bottleneck/conv1/kernel": [1, 1, 256, 128],
                       "resnet50/04_bottleneck/conv2/kernel": [3, 3, 128, 128],
                       "resnet50/04_bottleneck/conv3/kernel": [1, 1, 128, 512],
                       "resnet50/04_bottleneck/projection/kernel":
                           [1, 1, 256, 512]}
    strides = {op.name.split("/")[2]: op.get_attr("strides")
               for op in graph.get_operations() if op.type == "Conv2D"
               and op.name.startswith("resnet50/04_bottleneck/")}
    assert strides == {"conv1": [1, 1, 1, 1], "conv2": [1, 2, 2, 1],
                       "conv3": [1, 1, 1, 1], "projection": [1, 2, 2, 1]}
    stem = [op for op in graph.get_operations() if op.type == "MaxPool"]
    assert [op.get_attr("ksize") for op in stem] == [[1, 3, 3, 1]]


def test_bottleneck_with_a_zero_last_convolution_passes_its_input(graph):
    """With conv3's kernel zero the residual branch is zero (batch norm of
    zeros is beta = 0): an identity shortcut leaves relu(x), option A's
    subsampled and zero-padded x."""
    x_value = np.random.RandomState(0).randn(2, 4, 4, 8)
    x = tf.constant(x_value, tf.float32)
    same = full_layers.bottleneck_block(x, 8, True, batch_norm=True,
                                        name="same")
    down = full_layers.bottleneck_block(x, 16, True, strides=2, shortcut="A",
                                        batch_norm=True, name="down")
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for v in tf1.global_variables():
            if v.op.name.endswith("conv3/kernel"):
                v.load(np.zeros(v.shape), session)
        got_same, got_down = session.run([same, down])
    np.testing.assert_allclose(got_same, np.maximum(x_value, 0), atol=1e-6)
    want = np.zeros((2, 2, 2, 16))
    want[..., 4:12] = np.maximum(x_value[:, ::2, ::2, :], 0)
    np.testing.assert_allclose(got_down, want, atol=1e-6)


def test_imagenet_specs_are_checked():
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        models.imagenet_resnet(42)
    with pytest.raises(ValueError, match="multiple of 4"):
        models.Layer("bottleneck", 30)
    with pytest.raises(ValueError, match="multiple of 4"):
        full_layers.bottleneck_block(tf.zeros([1, 4, 4, 8]), 30, True)
    assert models.parse_layers("conv:8:pool=max3,bottleneck:32") == (
        models.Layer("conv", 8, pool="max3"), models.Layer("bottleneck", 32))
