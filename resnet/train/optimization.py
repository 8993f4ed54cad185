"""The optimisation side of training: its hyperparameters (`TrainConfig`),
the learning rate, the loss and the train op.

Every schedule is a pure function of the global step (official r1
`learning_rate_with_decay`, airbench `get_lr`): a resumed run continues it.
"""
import dataclasses
import numbers
from typing import Optional

import tensorflow as tf

from batch_renorm.replicas import replica_group

tf1 = tf.compat.v1

# He et al. 2015, CIFAR-10: lr 0.1, divided by 10 at 32k and 48k steps.
LEARNING_RATE = 0.1
LR_BOUNDARIES = (32000, 48000)  # steps
LR_DECAY = 0.1                  # factor applied at each boundary
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4             # on kernels only


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run computes, besides the network and the data.

    learning_rate, lr_boundaries, lr_decay: the step schedule
      (`step_learning_rate`); boundaries are global steps.
    momentum: SGD momentum. weight_decay: L2 on the kernels.
    augment: pad-crop-flip the training images (None: for 32x32 RGB).
    seed: weight initialisation, data order, augmentation and dropout.
    classes_per_group, group_size: build each group of `group_size`
      consecutive training examples (None: the whole batch) from
      `classes_per_group` classes only, the batch staying class-balanced
      (non-i.i.d. normalisation groups; `input_pipeline.non_iid_order`).
    """
    learning_rate: float = LEARNING_RATE
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    lr_boundaries: tuple = LR_BOUNDARIES
    lr_decay: float = LR_DECAY
    augment: Optional[bool] = None
    seed: int = 0
    classes_per_group: Optional[int] = None
    group_size: Optional[int] = None

    def __post_init__(self):
        check_optimizer_arguments(self.learning_rate, self.momentum,
                                  self.weight_decay, self.lr_boundaries,
                                  self.lr_decay)
        object.__setattr__(self, "lr_boundaries", tuple(self.lr_boundaries))
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.augment not in (None, True, False):
            raise ValueError(f"augment must be True, False or None, got "
                             f"{self.augment!r}")
        for name in ("classes_per_group", "group_size"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, "
                                 f"got {value!r}")
        if self.group_size and not self.classes_per_group:
            raise ValueError("group_size needs classes_per_group (the "
                             "groups' composition)")


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
    moving statistics) and the global step's increment, exactly once.

    In a data-parallel graph (`batch_renorm.replicas`), the gradients are
    averaged over the workers first (the mean of the workers' mean losses
    is the global batch's mean loss), in one collective with the norms'
    batch statistics, whose moving averages it then updates."""
    update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    optimizer = tf1.train.MomentumOptimizer(learning_rate, momentum)
    gradients, variables = zip(*[(g, v) for g, v in
                                 optimizer.compute_gradients(loss)
                                 if g is not None])
    replicas = replica_group()
    if replicas:
        gradients, deferred = replicas.all_reduce_gradients(gradients)
        update_ops = update_ops + deferred
    apply = optimizer.apply_gradients(zip(gradients, variables))
    return tf.group(apply, increment, *update_ops, name="train_op")


def check_optimizer_arguments(learning_rate, momentum, weight_decay,
                              lr_boundaries, lr_decay):
    """Raises ValueError for a value no training run could use."""
    _check_number("learning_rate", learning_rate, low=0.0, low_open=True)
    _check_number("momentum", momentum, low=0.0, high=1.0)
    _check_number("weight_decay", weight_decay, low=0.0)
    _check_number("lr_decay", lr_decay, low=0.0, low_open=True)
    boundaries = list(lr_boundaries)
    if any(not isinstance(b, numbers.Real) or b < 0 for b in boundaries) \
            or boundaries != sorted(boundaries):
        raise ValueError(f"lr_boundaries must be increasing steps >= 0, "
                         f"got {lr_boundaries}")


def check_run_arguments(batch_size, num_epoch):
    """Raises ValueError unless batch_size >= 1 and num_epoch >= 0 are ints."""
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not _is_int(num_epoch) or num_epoch < 0:
        raise ValueError(f"num_epoch must be an integer >= 0, got {num_epoch!r}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_number(name, value, low=None, high=None, low_open=False):
    """low <= value < high (low < value if low_open), value a finite real."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and value == value and abs(value) != float("inf")
          and (low is None or (value > low if low_open else value >= low))
          and (high is None or value < high))
    if not ok:
        bounds = " and ".join(
            text for text in (
                None if low is None else f"{'>' if low_open else '>='} {low}",
                None if high is None else f"< {high}") if text)
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}")
