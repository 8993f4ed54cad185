"""The rmax/dmax schedule of batch renorm (Ioffe 2017, section 5.1)."""
import math

from batch_renorm.tensorflow_quiet import tf

# The paper's CIFAR/ImageNet ramp, in training steps.
RMAX = 3.0
DMAX = 5.0
WARMUP_STEPS = 5000  # rmax = 1, dmax = 0 (plain batch norm) until here
RMAX_STEPS = 40000   # rmax reaches RMAX here
DMAX_STEPS = 25000   # dmax reaches DMAX here
PAPER_STEPS = 130000  # the length of the paper's batch renorm run


def renorm_schedule(step, rmax=RMAX, dmax=DMAX, warmup_steps=WARMUP_STEPS,
                    rmax_steps=RMAX_STEPS, dmax_steps=DMAX_STEPS):
    """Returns the float32 tensors `(rmax_t, dmax_t)` at `step`.

    They hold at 1 and 0 until `warmup_steps`, then grow linearly to reach
    `rmax` at `rmax_steps` and `dmax` at `dmax_steps`, and stay there.
    `step` is an integer scalar tensor (usually `step_value()`).
    """
    check_schedule(rmax, dmax, warmup_steps, rmax_steps, dmax_steps)
    t = tf.cast(step, tf.float32)

    def ramp(start, end, end_step):
        fraction = (t - warmup_steps) / max(end_step - warmup_steps, 1)
        return start + (end - start) * tf.clip_by_value(fraction, 0.0, 1.0)

    return (tf.identity(ramp(1.0, rmax, rmax_steps), name="rmax"),
            tf.identity(ramp(0.0, dmax, dmax_steps), name="dmax"))


def average_decay(momentum, step):
    """The moving statistics' decay at `step`: min(momentum, (1 + t) / (10 +
    t)), as `tf.compat.v1.train.ExponentialMovingAverage` with `num_updates`
    decays. The averages start fast (alpha = 0.9 at step 0) and reach
    Algorithm 1's constant alpha = 1 - momentum by step 890 at 0.99, so that
    inference after a short run normalises with statistics of the network
    as it is, not with the initial 0 and 1. `step` is an integer scalar
    tensor (usually `step_value()`); returns a float32 scalar tensor."""
    t = tf.cast(step, tf.float32)
    return tf.minimum(momentum, (1.0 + t) / (10.0 + t), name="average_decay")


def average_window(step):
    """About how many of the last steps the moving statistics average after
    `step` steps while `average_decay` is below the momentum: 1 / alpha."""
    return (10.0 + step) / 9.0


def check_schedule(rmax=RMAX, dmax=DMAX, warmup_steps=WARMUP_STEPS,
                   rmax_steps=RMAX_STEPS, dmax_steps=DMAX_STEPS):
    """Raises ValueError for arguments `renorm_schedule` cannot use."""
    if not (rmax >= 1 and math.isfinite(rmax)):
        raise ValueError(f"rmax must be a finite number >= 1, got {rmax}")
    if not (dmax >= 0 and math.isfinite(dmax)):
        raise ValueError(f"dmax must be a finite number >= 0, got {dmax}")
    if not warmup_steps >= 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    for label, end in (("rmax_steps", rmax_steps), ("dmax_steps", dmax_steps)):
        if not end >= warmup_steps:
            raise ValueError(f"{label} ({end}) must be >= warmup_steps "
                             f"({warmup_steps})")


def short_run_schedule(total_steps, momentum=0.99, rmax=RMAX, dmax=DMAX):
    """`renorm_schedule` keyword arguments for a run of `total_steps` whose
    learning rate drops at half-way (as resnet-run's does by default), with
    the norms' moving averages of `momentum` (alpha = 1 - momentum).

    The warm-up (r = 1, d = 0) lasts while the moving statistics converge
    from their initial 0 and 1: 3 / alpha steps (95% of the way), at most a
    quarter of the run. Then rmax and dmax grow linearly to reach `rmax`,
    `dmax` at half-way, so that renorm shapes most of training. The paper
    gives no rule for other lengths; its own ramp (5,000 steps of warm-up,
    50 times the averages' memory) is the default of `renorm_schedule`.
    The measurements behind the rule: README, "Results".
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    warmup = min(round(3 / (1.0 - momentum)), total_steps // 4)
    end = max(total_steps // 2, warmup)
    return dict(rmax=rmax, dmax=dmax, warmup_steps=warmup, rmax_steps=end,
                dmax_steps=end)


def scaled_schedule(total_steps, rmax=RMAX, dmax=DMAX):
    """`renorm_schedule` keyword arguments for a run of `total_steps` whose
    learning rate drops at half-way (as resnet-run's does by default).

    r and d stay 1 and 0 through the first half of the run and ramp
    linearly to rmax and dmax over the second: the first rule for short
    runs, kept for comparison (README, "Results").
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return dict(rmax=rmax, dmax=dmax, warmup_steps=total_steps // 2,
                rmax_steps=total_steps, dmax_steps=total_steps)


def proportional_schedule(total_steps, rmax=RMAX, dmax=DMAX):
    """`renorm_schedule` keyword arguments for a run of `total_steps` in the
    paper's proportions: its batch renorm run of 130,000 steps held plain
    batch norm for 5,000 (3.8%), opened dmax by 25,000 (19%) and rmax by
    40,000 (31%)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return dict(rmax=rmax, dmax=dmax,
                warmup_steps=total_steps * WARMUP_STEPS // PAPER_STEPS,
                rmax_steps=total_steps * RMAX_STEPS // PAPER_STEPS,
                dmax_steps=total_steps * DMAX_STEPS // PAPER_STEPS)


# Rules fitting the ramp to a run's length: name -> f(total_steps, momentum).
SCHEDULES = {
    "short_run": short_run_schedule,
    "proportional": lambda total_steps, momentum: proportional_schedule(
        total_steps),
    "half": lambda total_steps, momentum: scaled_schedule(total_steps),
    "paper": lambda total_steps, momentum: {},  # renorm_schedule's defaults
}
DEFAULT_SCHEDULE = "short_run"
