"""The optimisation side of the graph: learning rate, loss, train op.

Every schedule is a pure function of the global step (official r1
`learning_rate_with_decay`, airbench `get_lr`): a resumed run continues it.
"""
import tensorflow as tf

tf1 = tf.compat.v1

# He et al. 2015, CIFAR-10: lr 0.1, divided by 10 at 32k and 48k steps.
LEARNING_RATE = 0.1
LR_BOUNDARIES = (32000, 48000)  # steps
LR_DECAY = 0.1                  # factor applied at each boundary
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4             # on kernels only


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


def train_op(loss, learning_rate, momentum, increment):
    """One SGD-momentum step that also runs every update op (the norms'
    moving statistics) and the global step's increment, exactly once."""
    update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    optimizer = tf1.train.MomentumOptimizer(learning_rate, momentum)
    apply = optimizer.minimize(loss)
    return tf.group(apply, increment, *update_ops, name="train_op")
