"""A run's specification, validated where it enters: what training computes
(`TrainConfig`), how the run goes (`RunConfig`), and the one rule for the
defaults that follow the run's length (`run_length_defaults`).

The command line, `ConvolutionNN` and the experiments build these and
trust them. TensorFlow-free.

Typical use:
    config = TrainConfig(learning_rate=0.1, **run_length_defaults(
        total_steps=4000)["train"])
    run = RunConfig(model_dir="runs/r20", checkpoint_steps=500)
"""
import dataclasses
from typing import Any, Optional

from resnet.checks import check_bool, check_int, check_number
from resnet.errors import UsageError

# He et al. 2015, CIFAR-10: lr 0.1, divided by 10 at 32k and 48k steps.
LEARNING_RATE = 0.1
LR_BOUNDARIES = (32000, 48000)  # steps
LR_DECAY = 0.1                  # factor applied at each boundary
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4             # on kernels only


CHECKPOINT_SECS = 300.0  # seconds of training between checkpoints


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run computes, besides the network and the data.

    Attributes:
      learning_rate, lr_boundaries, lr_decay: the step schedule
        (`optimization.step_learning_rate`); boundaries are global steps.
      momentum: SGD momentum. weight_decay: L2 on the kernels.
      augment: pad-crop-flip the training images (None: for 32x32 RGB).
      seed: weight initialisation, data order, augmentation and dropout.
      classes_per_group, group_size: build each group of `group_size`
        consecutive training examples (None: the whole batch) from
        `classes_per_group` classes only, the batch staying class-balanced
        (non-i.i.d. normalisation groups; `input_pipeline.non_iid_order`).
      fast_start: the norms' moving statistics start fast
        (`batch_renorm.use_fast_start`), so that a run shorter than their
        memory, 1 / (1 - norm momentum) steps, ends with statistics of the
        network as it is; False: Algorithm 1's constant alpha throughout.

    Raises:
      UsageError (a ValueError): a value no run can use.
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
    fast_start: bool = True

    def __post_init__(self):
        check_number("learning_rate", self.learning_rate, low=0.0,
                     low_open=True)
        check_number("momentum", self.momentum, low=0.0, high=1.0)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("lr_decay", self.lr_decay, low=0.0, low_open=True)
        try:
            boundaries = tuple(self.lr_boundaries)
            for boundary in boundaries:
                check_number("lr_boundaries", boundary, low=0)
        except (TypeError, UsageError):
            boundaries = None
        if boundaries is None or list(boundaries) != sorted(
                set(boundaries)):
            raise UsageError(f"lr_boundaries must be strictly increasing "
                             f"steps >= 0, got {self.lr_boundaries!r}")
        object.__setattr__(self, "lr_boundaries", boundaries)
        check_int("seed", self.seed, low=0)
        check_bool("augment", self.augment, optional=True)
        check_int("classes_per_group", self.classes_per_group, optional=True)
        check_int("group_size", self.group_size, optional=True)
        check_bool("fast_start", self.fast_start)
        if self.group_size and not self.classes_per_group:
            raise UsageError("group_size needs classes_per_group (the "
                             "groups' composition)")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How a training run goes, besides what it computes.

    Attributes:
      model_dir: where checkpoints and TensorBoard summaries go (None:
        nowhere).
      checkpoint_secs, checkpoint_steps: with a model_dir, a checkpoint
        after every so many seconds (inf: never by time) or steps of
        training, and at each epoch's end.
      progress: show a progress bar (None: when stderr is a terminal).
      cluster: a `runtime.cluster.Cluster` to train data-parallel on.
      sync_statistics: with a cluster, the norms use the whole global
        batch's moments (else each worker's own slice's).
      allow_changes: resume checkpoints trained with other arguments.

    Raises:
      UsageError (a ValueError): a value no run can use.
    """
    model_dir: Optional[str] = None
    checkpoint_secs: float = CHECKPOINT_SECS
    checkpoint_steps: Optional[int] = None
    progress: Optional[bool] = None
    cluster: Any = None
    sync_statistics: bool = False
    allow_changes: bool = False

    def __post_init__(self):
        from resnet.storage.model_dir import check_model_dir
        check_number("checkpoint_secs", self.checkpoint_secs, low=0.0,
                     low_open=True, infinite=True)
        check_int("checkpoint_steps", self.checkpoint_steps, optional=True)
        check_bool("progress", self.progress, optional=True)
        check_bool("sync_statistics", self.sync_statistics)
        check_bool("allow_changes", self.allow_changes)
        if self.sync_statistics and self.cluster is None:
            raise UsageError("sync_statistics needs several workers (a "
                             "cluster: --worker-hosts, --local-workers or "
                             "TF_CONFIG)")
        check_model_dir(self.model_dir)


def check_run_length(batch_size, num_epoch):
    """batch_size >= 1 and num_epoch >= 0 are integers."""
    check_int("batch_size", batch_size)
    check_int("num_epoch", num_epoch, low=0)


def run_length_defaults(total_steps, norm_momentum=0.99):
    """The defaults that follow a run of `total_steps`, as the command line
    and the experiments use them: the learning rate divided at 50% and 75%
    of the run, and batch renorm's `short_run_schedule` (r = 1, d = 0 while
    the moving statistics converge, then a ramp to rmax, dmax by half-way).

    Returns {"train": TrainConfig fields, "network": Network fields}.
    (`ConvolutionNN` alone keeps the paper's fixed steps, whose length it
    cannot know when it builds its graph, and warns when batch renorm's
    ramp cannot open within a `train` call.)
    """
    from batch_renorm.schedule import short_run_schedule
    check_int("total_steps", total_steps)
    # Distinct: a run of 1 or 2 steps has one boundary (or 0, 0 / 1, 1).
    boundaries = tuple(sorted({total_steps // 2, total_steps * 3 // 4}))
    return {"train": {"lr_boundaries": boundaries},
            "network": {"renorm_schedule": short_run_schedule(
                total_steps, norm_momentum)}}
