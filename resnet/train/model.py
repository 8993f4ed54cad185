"""Model assembly: a network and its dataset as one graph, with no session
and no files. `ConvolutionNN` runs what `build_model` returns.

Typical use:
    model = build_model(models.custom("dense:4", 10), datasets.load("digits"),
                        TrainConfig())
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)
        model.input.load(session)
        session.run(model.train.train_op, ...)

Reference: official r1 `resnet_model_fn` (the graphs of a model) beside
`resnet_run_loop` (what runs them).
"""
import collections

from batch_renorm.tensorflow_quiet import tf

from batch_renorm import global_step
from batch_renorm.replicas import (ReplicaGroup, replica_group,
                                   set_replica_group)
from resnet.errors import UsageError
from resnet.train import graphs

tf1 = tf.compat.v1

Model = collections.namedtuple(
    "Model", "graph global_step increment_op input train inference epochs "
    "init broadcast")
Model.__doc__ = """What `build_model` returns: the graph and, in it, the
global step and its increment op, the training `input`
(`input_pipeline.Input`), the `graphs.TrainGraph`, the
`graphs.InferenceGraph`, the `graphs.EpochState`, the op that initialises
every variable, and the op that broadcasts the chief's variables (None
outside a cluster)."""


def build_model(network, dataset, config, preprocess, cluster=None,
                sync_statistics=False):
    """Builds the training and inference graphs of `network` on `dataset`
    into a new graph.

    Args:
      network: a `models.NetworkLike`.
      dataset: a `datasets.DatasetLike`.
      config: a `config.TrainConfig` (its seed seeds the graph).
      preprocess: the input normalisation (`input_pipeline.Normalizer`).
      cluster: a `cluster.Cluster` this process is a worker of (its device,
        its slice of each batch, the replicas' collectives), or None.
      sync_statistics: with a cluster, the norms use the global batch's
        moments.

    Returns:
      A `Model`.

    Raises:
      UsageError (a ValueError): a network whose outputs are not the
        dataset's classes.
    """
    augment = (dataset.default_augment if config.augment is None
               else config.augment)
    graph = tf.Graph()
    with graph.as_default(), tf.device(cluster.device if cluster else None):
        if cluster:
            set_replica_group(ReplicaGroup(
                cluster.size, cluster.task_index, sync_statistics,
                cluster.timeout))
        tf1.set_random_seed(config.seed)
        step, increment = global_step()
        train_input = dataset.train_input(
            config.seed, augment, config.classes_per_group, config.group_size,
            (cluster.task_index, cluster.size) if cluster else (0, 1),
            network.microbatch)
        train = graphs.build_training(network, train_input, config, preprocess)
        inference = graphs.build_inference(network, dataset.image_shape,
                                           preprocess)
        classes = inference.logits.shape[-1]
        if classes != dataset.num_classes:
            raise UsageError(f"the network has {classes} outputs, the "
                             f"dataset {dataset.num_classes} classes")
        epochs = graphs.build_epoch_state()
        init = tf.group(tf1.global_variables_initializer(),
                        tf1.local_variables_initializer())
        broadcast = (replica_group().broadcast_from_chief(
            tf1.global_variables(), cluster.start_timeout) if cluster
            else None)
    return Model(graph, step, increment, train_input, train, inference,
                 epochs, init, broadcast)


def signature(network, dataset, preprocess):
    """What a model directory's checkpoints must agree on (`model.json`):
    the network's architecture, the dataset's name, image shape, classes
    and class names, and the input normalisation."""
    recorded = {"network": network.signature(), "dataset": dataset.name,
                "image_shape": list(dataset.image_shape),
                "num_classes": int(dataset.num_classes)}
    if dataset.class_names:  # what a label means, kept with the model
        recorded["class_names"] = list(dataset.class_names)
    recorded["normalizer"] = preprocess.as_dict()
    return recorded
