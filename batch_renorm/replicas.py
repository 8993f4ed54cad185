"""The replicas of a data-parallel graph, and the collective ops between them.

Each worker builds the same graph and registers a `ReplicaGroup` in it
before building (`set_replica_group`); the norm layers and the train op
find it there, as TensorFlow's strategies keep a replica context:

  - gradients are averaged over the workers, and so is each layer's
    batch mean and std before the moving statistics move (they stay equal
    on every worker): one packed all-reduce a step,
  - with `sync_statistics`, the layers normalise with the moments of the
    whole global batch, through an all-reduce that has a gradient.

Collective ops rendezvous by instance key: the keys are handed out in the
order the graph is built, identical on every worker as long as the graphs
are.

Typical use:
    set_replica_group(ReplicaGroup(size=2, task=0))
    ... build the graph ...
"""
from batch_renorm.tensorflow_quiet import tf
from tensorflow.python.ops import collective_ops

tf1 = tf.compat.v1

_KEY = "batch_renorm_replica_group"
GROUP_KEY = 1


class ReplicaGroup:
    """`size` workers, this one `task`; `timeout` in seconds for a
    collective op waiting for a peer (0: forever)."""

    def __init__(self, size, task, sync_statistics=False, timeout=0.0):
        if size < 1 or not 0 <= task < size:
            raise ValueError(f"task {task} of {size} workers")
        self.size, self.task = size, task
        self.sync_statistics, self.timeout = sync_statistics, timeout
        self._instance = 0
        self._later = []  # (tensors, build) waiting for the train op

    def _next_key(self):
        self._instance += 1
        return self._instance

    def all_reduce(self, tensor, merge="mean", timeout=None):
        """The sum ("sum") or mean ("mean") of `tensor` over the workers,
        with no gradient."""
        return collective_ops.all_reduce(
            tensor, self.size, GROUP_KEY, self._next_key(), merge_op="Add",
            final_op="Div" if merge == "mean" else "Id",
            timeout=self.timeout if timeout is None else timeout)

    def all_reduce_packed(self, tensors, merge="mean"):
        """`all_reduce` of float tensors as one collective."""
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)
        reduced = self.all_reduce(flat, merge)
        sizes = [t.shape.num_elements() for t in tensors]
        return [tf.reshape(part, t.shape)
                for part, t in zip(tf.split(reduced, sizes), tensors)]

    def mean_later(self, tensors, build):
        """Averages `tensors` over the workers in the train op's one packed
        all-reduce (`all_reduce_gradients`), then `build(*averaged)` makes
        the ops that use them (a norm's moving-statistics updates)."""
        self._later.append((list(tensors), build))

    def all_reduce_gradients(self, gradients, extra=None):
        """The gradients averaged over the workers, in one collective with
        what `mean_later` deferred and the scalars of `extra` (a dict, e.g.
        the step's loss and accuracy); returns (gradients, the deferred
        ops, `extra` averaged). One collective a step: the workers wait for
        each other once."""
        extra = dict(extra or {})
        deferred = [t for tensors, _ in self._later for t in tensors]
        reduced = self.all_reduce_packed(
            list(gradients) + list(extra.values()) + deferred)
        gradients, rest = reduced[:len(gradients)], reduced[len(gradients):]
        averaged = dict(zip(extra, rest[:len(extra)]))
        rest = rest[len(extra):]
        ops = []
        for tensors, build in self._later:
            ops += build(*rest[:len(tensors)])
            rest = rest[len(tensors):]
        self._later = []
        return gradients, ops, averaged

    def sum_with_gradient(self, tensor):
        """The sum of `tensor` over the workers; its gradient is the sum of
        the upstream gradients over the workers (every worker's loss uses
        every worker's input)."""
        forward, backward = self._next_key(), self._next_key()

        @tf.custom_gradient
        def summed(x):
            def gradient(upstream):
                return collective_ops.all_reduce(
                    upstream, self.size, GROUP_KEY, backward, "Add", "Id",
                    timeout=self.timeout)
            return collective_ops.all_reduce(
                x, self.size, GROUP_KEY, forward, "Add", "Id",
                timeout=self.timeout), gradient

        return summed(tensor)

    def broadcast_from_chief(self, variables, timeout=None):
        """An op that sets `variables` on every worker to task 0's values
        (its restored checkpoint, or its initial values); `timeout`: how
        long it waits for every worker (default: the group's)."""
        assigns = []
        for variable in variables:
            value = variable.read_value()
            mine = value if self.task == 0 else tf.zeros_like(value)
            assigns.append(variable.assign(
                self.all_reduce(mine, "sum", timeout), read_value=False))
        return tf.group(*assigns, name="broadcast_from_chief")


def set_replica_group(group, graph=None):
    """Makes `group` the replica group of `graph` (default graph)."""
    graph = graph or tf1.get_default_graph()
    graph.clear_collection(_KEY)
    graph.add_to_collection(_KEY, group)


def replica_group(graph=None):
    """The graph's `ReplicaGroup`, or None in a one-process graph."""
    found = (graph or tf1.get_default_graph()).get_collection(_KEY)
    return found[0] if found else None
