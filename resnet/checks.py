"""The argument checks every part shares: each raises `errors.UsageError`
(a ValueError) naming the argument, what it must be and what it got.

TensorFlow-free, as `resnet.errors`.
"""
import math
import numbers

from resnet.errors import UsageError


def is_int(value):
    """An integer, and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, low=1, high=None, optional=False):
    """`value` is an integer in [low, high] (None allowed if `optional`)."""
    if optional and value is None:
        return value
    if not (is_int(value) and value >= low
            and (high is None or value <= high)):
        bounds = f">= {low}" + ("" if high is None else f" and <= {high}")
        raise UsageError(f"{name} must be an integer {bounds}"
                         f"{' or None' if optional else ''}, got {value!r}")
    return value


def check_number(name, value, low=None, high=None, low_open=False,
                 high_open=True, infinite=False):
    """`value` is a real number (not a bool, not NaN; infinite only if
    `infinite`) with low <= value < high (low < value if `low_open`, value
    <= high unless `high_open`)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and not math.isnan(value) and (infinite or math.isfinite(value))
          and (low is None or (value > low if low_open else value >= low))
          and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        bounds = " and ".join(text for text in (
            None if low is None else f"{'>' if low_open else '>='} {low}",
            None if high is None else f"{'<' if high_open else '<='} {high}")
            if text)
        raise UsageError(f"{name} must be a number {bounds}, got {value!r}"
                         .replace("number ,", "number,"))
    return value


def check_bool(name, value, optional=False):
    """`value` is True or False (or None if `optional`)."""
    if not (value is True or value is False or (optional and value is None)):
        raise UsageError(f"{name} must be True or False"
                         f"{', or None' if optional else ''}, got {value!r}")
    return value
