"""A trained network as a SavedModel: TensorFlow's exchange format (TF
Serving, `tf.saved_model.load`, `saved_model_cli`).

The SavedModel holds the inference graph only: the per-channel
normalisation of the training images, the network with its moving
statistics, no training ops, no input pipeline. Its `serving_default`
signature takes `images` (float32 [N, H, W, C], in the dataset's own pixel
scale) and returns `logits` and `probabilities` (float32 [N, classes]) and
`classes` (int64 [N]), and, for a dataset whose classes have names (a
folder dataset's class folders), `names` (string [N]).

Typical use (TensorFlow 2, eager, without this project):
    model = tf.saved_model.load(path)
    out = model.signatures["serving_default"](images=tf.constant(x))
    out["classes"], out["probabilities"], out["names"]
"""
import dataclasses
import os
import shutil
import tempfile

from batch_renorm.tensorflow_quiet import tf
from tensorflow.core.protobuf import meta_graph_pb2

from resnet.errors import ExportError
from resnet.train import graphs
from resnet.storage.atomic import (check_writable_dir, deepest_existing,
                                  failure_reason, free_space)

tf1 = tf.compat.v1

SIGNATURE = "serving_default"
# What a SavedModel directory holds; an export replaces nothing else.
SAVED_MODEL_FILES = {"saved_model.pb", "saved_model.pbtxt", "variables",
                     "assets", "assets.extra", "fingerprint.pb"}
INPUT = "images"
OUTPUTS = ("logits", "probabilities", "classes")


def export_saved_model(network, image_shape, preprocess, values, path,
                       class_names=None):
    """Writes the SavedModel of `network` on images of `image_shape`, its
    variables set from `values` ({variable name: array}, e.g. read from a
    training session), to `path` (through symbolic links: a link's target,
    made if absent); returns that path. `class_names`: label i's name,
    given as the signature's `names` output.

    Written next to `path` and moved into place, so a failed or killed
    export never replaces a good one (an export killed between moving the
    old one aside and the new one in is put back by the next export). An
    existing `path` must be an earlier export (or empty). Layers computing
    in NCHW are exported in NHWC: the same variables, a graph that runs on
    any device.

    Raises:
      ValueError: a path no export may take (`check_export_path`).
      ExportError: writing failed (the disk is full, say).
    """
    path = os.path.realpath(os.path.expanduser(path))
    check_export_path(path)
    if dataclasses.is_dataclass(network) and network.data_format != "NHWC":
        network = dataclasses.replace(network, data_format="NHWC")
    earlier = os.path.exists(path)
    try:
        _write_in_place(network, image_shape, preprocess, values, path,
                        class_names)
    except (OSError, tf.errors.OpError) as error:
        kept = ("the earlier export there is intact" if earlier
                else "nothing is left there")
        raise ExportError(
            f"writing the SavedModel to {path} failed ({failure_reason(error)}"
            f"; {free_space(deepest_existing(path))} free); {kept}") from None
    return path


def _write_in_place(network, image_shape, preprocess, values, path,
                    class_names):
    """Writes beside `path`, then moves the export in, the old one out."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}.staging-"
    _remove_stale_staging(parent, prefix)
    staging = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    old = os.path.join(staging, "old")
    try:
        _write(network, image_shape, preprocess, values,
               os.path.join(staging, "model"), class_names)
        if os.path.exists(path):
            os.rename(path, old)
        try:
            os.rename(os.path.join(staging, "model"), path)
        except OSError:
            if os.path.exists(old):
                os.rename(old, path)  # the earlier export back in place
            raise
    finally:
        # The earlier export still aside (its move back failed): kept for
        # the next export to put back.
        if not (os.path.exists(old) and not os.path.exists(path)):
            shutil.rmtree(staging, ignore_errors=True)


def check_export_path(path, model_dir=None):
    """Raises ValueError unless `path` can be written and is free, empty or
    an earlier export (nothing but a SavedModel's own files in it), and
    neither holds nor lies inside `model_dir`."""
    path = os.path.realpath(os.path.expanduser(path))  # a link's target
    check_writable_dir(path, "export path")
    if model_dir is not None:
        model_dir = os.path.realpath(os.path.expanduser(model_dir))
        if os.path.commonpath([path, model_dir]) in (path, model_dir):
            raise ValueError(f"export path {path} and model_dir {model_dir} "
                             f"must not hold one another: choose another")
    if os.path.exists(path) and not (
            os.path.isdir(path)
            and set(os.listdir(path)) <= SAVED_MODEL_FILES
            and (not os.listdir(path)
                 or os.path.exists(os.path.join(path, "saved_model.pb")))):
        raise ValueError(f"export path {path} exists and is no SavedModel "
                         f"(or holds other files): choose another")


def _remove_stale_staging(parent, prefix):
    """Removes what exports killed mid-way left beside `path` (their
    process is gone); an earlier export moved aside goes back first."""
    for name in os.listdir(parent):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        staging = os.path.join(parent, name)
        old, path = os.path.join(staging, "old"), os.path.join(
            parent, prefix[1:-len(".staging-")])
        if os.path.isdir(old) and not os.path.exists(path):
            os.rename(old, path)
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(network, image_shape, preprocess, values, directory,
           class_names=None):
    graph = tf.Graph()
    with graph.as_default():
        inference = graphs.build_inference(network, image_shape, preprocess)
        variables = tf1.global_variables()
        missing = [v.op.name for v in variables if v.op.name not in values]
        if missing:
            raise ValueError(f"no value for {', '.join(missing[:3])}")
        outputs = dict(zip(OUTPUTS, (inference.logits,
                                     inference.probabilities,
                                     inference.predictions)))
        if class_names:
            # As the file system's bytes: a folder's name need not be UTF-8.
            outputs["names"] = tf.gather(
                tf.constant([os.fsencode(name) for name in class_names]),
                inference.predictions, name="names")
        signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={INPUT: _tensor_info(inference.images)},
            outputs={name: _tensor_info(tensor)
                     for name, tensor in outputs.items()},
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
