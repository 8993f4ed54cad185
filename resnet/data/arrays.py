"""Checks of the arrays a user hands to `predict` and `evaluate`.

Images: [N, H, W, C] in the datasets' scale, floats in [0, 1] (any float
dtype, converted to float32), or uint8 in 0-255 (divided by 255, as
`tf.image.convert_image_dtype` does). Other dtypes (other integers, whose
scale is unknown, bool, complex) are refused, as are non-finite values.
Labels: integers in [0, num_classes), one per image.
`in_batches` cuts checked arrays into the batches an evaluation runs.
"""
import numpy as np


def check_images(images, image_shape):
    """`images` as a float32 array [N, *image_shape] in [0, 1]; raises
    ValueError (TypeError for a dtype) otherwise."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif images.dtype.kind != "f":
        raise TypeError(f"images must be floats in [0, 1] or uint8 in "
                        f"0-255, got dtype {images.dtype}")
    if images.ndim != 1 + len(image_shape) or images.shape[1:] != tuple(image_shape):
        raise ValueError(f"images must have shape [N, "
                         f"{', '.join(map(str, image_shape))}], got "
                         f"{list(images.shape)}")
    if not np.all(np.isfinite(images)):
        bad = np.flatnonzero(~np.isfinite(images).reshape(len(images), -1)
                             .all(axis=1))
        raise ValueError(f"images hold non-finite values (NaN or inf), in "
                         f"{len(bad)} images, the first at index {bad[0]}")
    low, high = ((float(images.min()), float(images.max())) if images.size
                 else (0.0, 1.0))
    if low < 0.0 or high > 1.0:
        hint = " (0-255 floats: divide by 255)" if high > 1.0 else ""
        raise ValueError(f"images must be in [0, 1], the datasets' scale; "
                         f"got values in [{low:g}, {high:g}]{hint}")
    return images.astype(np.float32, copy=False)


def check_labels(labels, count, num_classes):
    """`labels` as an int64 array [count] of classes in [0, num_classes);
    raises ValueError (TypeError for a dtype) otherwise."""
    if labels is None:
        raise ValueError("labels are needed with images (one per image)")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers (class indices), got "
                        f"dtype {labels.dtype}")
    if labels.shape != (count,):
        raise ValueError(f"labels must have shape [{count}] (one per image), "
                         f"got {list(labels.shape)}")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(f"labels must be in [0, {num_classes}), got "
                         f"{labels[index]} at index {index}")
    return labels.astype(np.int64, copy=False)


def in_batches(images, labels, batch_size):
    """(images, labels) slices of `batch_size` (the last one shorter)."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]
