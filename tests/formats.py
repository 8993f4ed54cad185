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


def class_images(count, classes, seed=0, sizes=(24, 40)):
    """`count` uint8 RGB images of mixed sizes (sides drawn from `sizes`)
    whose class (`labels`) shows in their colour (the same colours for
    every seed), and the labels: data a network learns in a few steps."""
    rng = np.random.RandomState(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    colours = np.random.RandomState(classes).randint(0, 256, (classes, 3))
    images = []
    for label in labels:
        height, width = rng.randint(sizes[0], sizes[1] + 1, size=2)
        noise = rng.randint(-40, 41, size=(height, width, 3))
        images.append(np.clip(colours[label] + noise, 0, 255).astype(np.uint8))
    return images, labels


def encode_image(image, kind="png"):
    """The bytes of a PNG or JPEG file of a uint8 [H, W, 3] image."""
    import tensorflow as tf
    encode = tf.io.encode_png if kind == "png" else tf.io.encode_jpeg
    return encode(tf.constant(image)).numpy()


def write_image_folder(root, splits, classes=3, seed=0, kind="png",
                       sizes=(24, 40)):
    """root/SPLIT/class_K/NNNN.png trees of `class_images` ({split:
    count}); returns {split: (images, labels)} in the index's order
    (classes, then file names)."""
    written = {}
    for number, (split, count) in enumerate(splits.items()):
        images, labels = class_images(count, classes, seed + number, sizes)
        for label in range(classes):
            os.makedirs(os.path.join(root, split, f"class_{label}"),
                        exist_ok=True)
        order = np.argsort(labels, kind="stable")
        for index in order:
            path = os.path.join(root, split, f"class_{labels[index]}",
                                f"{index:04d}.{kind}")
            with open(path, "wb") as file:
                file.write(encode_image(images[index], kind))
        written[split] = ([images[i] for i in order], labels[order])
    return written


def example(image_bytes, label):
    """A serialized tf.train.Example as ImageNet's TFRecords hold them."""
    import tensorflow as tf
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image_bytes])),
        "image/class/label": tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def write_tfrecords(root, splits, shards=2, classes=3, seed=0,
                    sizes=(24, 40)):
    """root/SPLIT-0000K-of-0000N TFRecord shards of `class_images`
    ({split: count}, records dealt to the shards in turn); returns
    {split: (images, labels)} in the index's order (shards, then
    records)."""
    import tensorflow as tf
    os.makedirs(root, exist_ok=True)
    written = {}
    for number, (split, count) in enumerate(splits.items()):
        images, labels = class_images(count, classes, seed + number, sizes)
        order = []
        for shard in range(shards):
            path = os.path.join(root, f"{split}-{shard:05d}-of-{shards:05d}")
            with tf.io.TFRecordWriter(path) as writer:
                for index in range(shard, count, shards):
                    writer.write(example(encode_image(images[index]),
                                         labels[index]))
                    order.append(index)
        written[split] = ([images[i] for i in order], labels[order])
    return written
