"""A trained network as a SavedModel: TensorFlow's exchange format (TF
Serving, `tf.saved_model.load`, `saved_model_cli`).

The SavedModel holds the inference graph only: the per-channel
normalisation of the training images, the network with its moving
statistics, no training ops, no input pipeline. Its `serving_default`
signature takes `images` (float32 [N, H, W, C], in the dataset's own pixel
scale) and returns `logits` and `probabilities` (float32 [N, classes]) and
`classes` (int64 [N]).

Typical use (TensorFlow 2, eager, without this project):
    model = tf.saved_model.load(path)
    out = model.signatures["serving_default"](images=tf.constant(x))
    out["classes"], out["probabilities"]
"""
import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from resnet import graphs
from resnet.paths import check_writable_dir

tf1 = tf.compat.v1

SIGNATURE = "serving_default"
INPUT = "images"
OUTPUTS = ("logits", "probabilities", "classes")


def export_saved_model(network, image_shape, preprocess, values, path):
    """Writes the SavedModel of `network` on images of `image_shape`, its
    variables set from `values` ({variable name: array}, e.g. read from a
    training session), to `path`; returns `path`.

    Written next to `path` and moved into place, so a failed or killed
    export never replaces a good one. An existing `path` must be an earlier
    export (or empty). Layers computing in NCHW are exported in NHWC: the
    same variables, a graph that runs on any device.
    """
    path = os.path.abspath(os.path.expanduser(path))
    check_export_path(path)
    if dataclasses.is_dataclass(network) and network.data_format != "NHWC":
        network = dataclasses.replace(network, data_format="NHWC")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        _write(network, image_shape, preprocess, values,
               os.path.join(staging, "model"))
        if os.path.exists(path):
            old = os.path.join(staging, "old")
            os.rename(path, old)
        os.rename(os.path.join(staging, "model"), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def check_export_path(path):
    """Raises ValueError unless `path` can be written and is free, empty or
    an earlier export."""
    check_writable_dir(path, "export path")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not (
            os.path.isdir(path) and (
                not os.listdir(path)
                or os.path.exists(os.path.join(path, "saved_model.pb")))):
        raise ValueError(f"export path {path} exists and is no SavedModel: "
                         f"choose another")


def _write(network, image_shape, preprocess, values, directory):
    graph = tf.Graph()
    with graph.as_default():
        inference = graphs.build_inference(network, image_shape, preprocess)
        variables = tf1.global_variables()
        missing = [v.op.name for v in variables if v.op.name not in values]
        if missing:
            raise ValueError(f"no value for {', '.join(missing[:3])}")
        signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={INPUT: _tensor_info(inference.images)},
            outputs={name: _tensor_info(tensor) for name, tensor in zip(
                OUTPUTS, (inference.logits, inference.probabilities,
                          inference.predictions))},
            method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME)
        with tf1.Session(graph=graph) as session:
            session.run([v.initializer for v in variables],
                        {v.initial_value: values[v.op.name]
                         for v in variables})
            builder = tf1.saved_model.Builder(directory)
            builder.add_meta_graph_and_variables(
                session, [tf1.saved_model.tag_constants.SERVING],
                signature_def_map={SIGNATURE: signature},
                strip_default_attrs=True)
            builder.save()


def _tensor_info(tensor):
    # What the deprecated tf.compat.v1.saved_model.build_tensor_info gives.
    return meta_graph_pb2.TensorInfo(name=tensor.name,
                                     dtype=tensor.dtype.as_datatype_enum,
                                     tensor_shape=tensor.shape.as_proto())
