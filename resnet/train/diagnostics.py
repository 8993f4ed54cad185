"""What the moving statistics cost: a trained network evaluated with its
norms' statistics recomputed over the training set ("population"), or
taken from each fed group as in training ("batch").

Typical use (what `ConvolutionNN.evaluate(statistics=...)` does):
    diagnostics = Diagnostics(session, network, dataset, preprocess,
                              inference, eval_batch=500)
    diagnostics.evaluate("population", Split(dataset.test_size,
                                             dataset.test_batches))
"""
import contextlib
import dataclasses

from batch_renorm.tensorflow_quiet import tf

from batch_renorm import norm_layers
from resnet.data.datasets import Dataset
from resnet.errors import UsageError
from resnet.train import graphs, loop

tf1 = tf.compat.v1


def batch_statistics_graph(network, image_shape, preprocess, microbatch):
    """Builds into the default graph the inference graph of `network`
    (sharing its variables) normalised by each fed batch's own statistics,
    or each group of `microbatch` examples' (None: the batch's), without
    dropout.

    Returns:
      (a `graphs.InferenceGraph`, its norms' `NormLayer`s).

    Raises:
      UsageError: a network that is not a `models.Network` (its layers'
        dropout cannot be turned off).
    """
    if not dataclasses.is_dataclass(network):
        raise UsageError("statistics other than 'moving' need a "
                         "models.Network")
    network = dataclasses.replace(network, microbatch=microbatch, layers=tuple(
        dataclasses.replace(layer, dropout_rate=0.0)
        for layer in network.layers))
    built = len(norm_layers())
    graph = graphs.build_inference(network, image_shape, preprocess,
                                   batch_statistics=True)
    return graph, norm_layers()[built:]


@contextlib.contextmanager
def population_statistics_loaded(session, graph, layers, images):
    """Within the block, the moving statistics of `layers` (built by
    `batch_statistics_graph` without microbatches, `graph` its inference
    graph) hold the population statistics of `images` [N, H, W, C]
    (`loop.population_statistics`); their values are restored on exit."""
    if not layers:  # no norms: nothing to recompute
        yield
        return
    values = loop.population_statistics(session, graph.images, layers,
                                        images)
    moving = [v for layer in layers
              for v in (layer.moving_mean, layer.moving_std)]
    saved = session.run(moving)

    def load(values):
        with session.graph.as_default():
            for variable, value in zip(moving, values):
                variable.load(value, session)

    load([value for pair in values for value in pair])
    try:
        yield
    finally:
        load(saved)


class Diagnostics:
    """Evaluates the network of `session`'s graph with other statistics
    than the moving ones; builds each graph it needs once.

    Args:
      session: the session holding the trained variables.
      network: the `models.Network` trained.
      dataset: its `datasets.DatasetLike` (population statistics need an
        in-memory `Dataset`).
      preprocess: the input normalisation it trained with.
      inference: its `graphs.InferenceGraph` (the moving statistics').
      eval_batch: images per inference run.
    """

    def __init__(self, session, network, dataset, preprocess, inference,
                 eval_batch):
        self.session, self.network, self.dataset = session, network, dataset
        self.preprocess, self.inference = preprocess, inference
        self.eval_batch = eval_batch
        self._graphs = {}  # microbatch -> (graph, its norm layers)

    def evaluate(self, statistics, split):
        """{'loss', 'accuracy'} on `split` (a `convolution_nn.Split`: the
        image count, and `batches(batch_size)` of them) with "population"
        or "batch" statistics (see `ConvolutionNN.evaluate`).

        Raises:
          UsageError: a split the network's microbatches do not divide;
            population statistics of a files dataset.
        """
        if statistics == "batch":
            group = self.network.microbatch or self.eval_batch
            if self.network.microbatch and split.size % group:
                raise UsageError(f"statistics='batch' normalises groups of "
                                 f"{group}: give a multiple of {group} "
                                 f"images, got {split.size}")
            graph, _ = self._graph(self.network.microbatch)
            return loop.evaluate(self.session, graph, split.batches(
                self.eval_batch // group * group or group))
        if not isinstance(self.dataset, Dataset):
            raise UsageError("statistics='population' reads the training "
                             "images from memory: a files dataset has "
                             "them on disk (use 'moving')")
        graph, layers = self._graph(None)
        with population_statistics_loaded(self.session, graph, layers,
                                          self.dataset.x_train):
            return loop.evaluate(self.session, self.inference,
                                 split.batches(self.eval_batch))

    def _graph(self, microbatch):
        if microbatch not in self._graphs:
            with self.session.graph.as_default():
                self._graphs[microbatch] = batch_statistics_graph(
                    self.network, self.dataset.image_shape, self.preprocess,
                    microbatch)
        return self._graphs[microbatch]
