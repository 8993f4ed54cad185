"""The optimisation of one training step: the learning rate, the loss and
the train op (their hyperparameters: `resnet.train.config`).

Every schedule is a pure function of the global step (official r1
`learning_rate_with_decay`, airbench `get_lr`): a resumed run continues it.
"""
from batch_renorm.tensorflow_quiet import tf

from batch_renorm.replicas import replica_group
from resnet.train.config import LEARNING_RATE, LR_BOUNDARIES, LR_DECAY

tf1 = tf.compat.v1

def step_learning_rate(step, base=LEARNING_RATE, boundaries=LR_BOUNDARIES,
                       decay=LR_DECAY):
    """base * decay ** (number of boundaries that `step` has reached)."""
    step = tf.cast(step, tf.float32)
    passed = tf.add_n([tf.cast(step >= boundary, tf.float32)
                       for boundary in boundaries]) if boundaries else 0.0
    return tf.identity(base * tf.pow(decay, passed), name="learning_rate")


def classification_loss(logits, labels, weight_decay):
    """Mean cross-entropy plus weight_decay * sum(||w||^2 / 2) over kernels
    (the WEIGHTS collection). Returns (total loss, cross-entropy)."""
    cross_entropy = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                       logits=logits),
        name="cross_entropy")
    kernels = tf1.get_collection(tf1.GraphKeys.WEIGHTS)
    decay = weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels]) \
        if kernels and weight_decay else 0.0
    return tf.add(cross_entropy, decay, name="loss"), cross_entropy


def train_op(loss, learning_rate, momentum, increment, report=None):
    """One SGD-momentum step that also runs every update op (the norms'
    moving statistics) and the global step's increment, exactly once.
    Returns (the train op, `report` as the step reports it): `report` is a
    dict of scalars of the step (its loss, accuracy).

    In a data-parallel graph (`batch_renorm.replicas`), the gradients are
    averaged over the workers first (the mean of the workers' mean losses
    is the global batch's mean loss), in one collective with the norms'
    batch statistics, whose moving averages it then updates, and with
    `report`, which is returned averaged over the workers: the global
    batch's."""
    report = dict(report or {})
    update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    optimizer = tf1.train.MomentumOptimizer(learning_rate, momentum)
    gradients, variables = zip(*[(g, v) for g, v in
                                 optimizer.compute_gradients(loss)
                                 if g is not None])
    replicas = replica_group()
    if replicas:
        gradients, deferred, report = replicas.all_reduce_gradients(
            gradients, report)
        update_ops = update_ops + deferred
    apply = optimizer.apply_gradients(zip(gradients, variables))
    # The increment waits for the step's updates (as `minimize(loss,
    # global_step)` has it): a step that fails (an image that does not
    # decode, a lost worker) leaves the global step with the weights, and
    # the checkpoint saved then resumes at the failed step.
    if increment.control_inputs:
        raise ValueError("a graph has one train op: its global step's "
                         "increment follows it")
    increment._add_control_inputs([apply, *update_ops])
    return tf.group(apply, increment, *update_ops, name="train_op"), report
