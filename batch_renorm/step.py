"""The graph's one global step and its one increment op.

Every schedule in this project (the rmax/dmax ramp of batch renorm, the
learning rate, the per-step seeds of dropout and augmentation) is a pure
function of the global step. A graph therefore has exactly one step and one
op that advances it, however many layers ask for them.

Within one `Session.run`, everything that depends on the step reads the same
snapshot of it, `step_value(graph)`, and the increment op writes
`snapshot + 1`. The increment therefore runs after that read, and a training
step that fetches it sees the schedules at the step it started from, whatever
order the executor picks for the other ops.

Typical use::

    step, increment = global_step()
    train_op = tf.group(apply_gradients_op, increment)
"""
from batch_renorm.tensorflow_quiet import tf

tf1 = tf.compat.v1

_INCREMENT_KEY = "batch_renorm_global_step_increment"
_VALUE_KEY = "batch_renorm_global_step_value"


def global_step(graph=None):
    """Returns `(step, increment)` for `graph` (default: the default graph).

    `step` is the int64 variable that `tf.compat.v1.train.get_global_step()`
    finds (an existing one is adopted); `increment` adds one to it. Every call
    with the same graph returns the same two objects.
    """
    graph = graph or tf1.get_default_graph()
    increments = graph.get_collection(_INCREMENT_KEY)
    if increments:
        return tf1.train.get_global_step(graph), increments[0]
    with graph.as_default(), tf1.name_scope(None):
        step = tf1.train.get_global_step(graph)
        if step is None:
            # Not get_variable: the caller's variable scope (reused, say)
            # must not matter.
            step = tf1.Variable(
                0, dtype=tf.int64, trainable=False, use_resource=True,
                name=tf1.GraphKeys.GLOBAL_STEP,
                collections=[tf1.GraphKeys.GLOBAL_VARIABLES,
                             tf1.GraphKeys.GLOBAL_STEP])
        with tf1.name_scope("global_step_ops"):
            value = tf.identity(step.read_value(), name="value")
            increment = step.assign(value + 1, read_value=False,
                                    name="increment")
    graph.add_to_collection(_VALUE_KEY, value)
    graph.add_to_collection(_INCREMENT_KEY, increment)
    return step, increment


def step_value(graph=None):
    """The int64 snapshot of the global step that schedules read in a run."""
    graph = graph or tf1.get_default_graph()
    global_step(graph)
    return graph.get_collection(_VALUE_KEY)[0]
