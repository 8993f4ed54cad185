"""Writers of the datasets' original file formats, for small test files."""
import gzip
import os
import pickle
import struct

import numpy as np


def write_idx(path, array):
    """A gzipped IDX file of unsigned bytes, as MNIST ships them."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_mnist(folder, train=60, test=20, seed=0):
    """The four MNIST files with random 28x28 images; returns the arrays."""
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for split, count, prefix in (("train", train, "train"),
                                 ("test", test, "t10k")):
        images = rng.randint(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.randint(0, 10, size=count).astype(np.uint8)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        arrays[split] = (images, labels)
    return arrays


def write_cifar10_batch(path, images, labels):
    """One batch file of CIFAR-10's python version: a pickled dict whose
    b"data" is uint8 [N, 3072], each row the red, green then blue plane."""
    data = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": b"testing batch", b"labels": [int(l) for l in labels],
             b"data": data,
             b"filenames": [b"image_%d.png" % i for i in range(len(images))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(folder, per_batch=10, seed=0):
    """cifar-10-batches-py/ with five training batches and a test batch of
    random images; returns {file name: (images NHWC uint8, labels)}."""
    rng = np.random.RandomState(seed)
    batch_dir = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(batch_dir, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.randint(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.randint(0, 10, size=per_batch)
        write_cifar10_batch(os.path.join(batch_dir, name), images, labels)
        written[name] = (images, labels)
    return written
