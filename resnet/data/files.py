"""Datasets read from image files while training runs: data larger than
memory (ImageNet, the setting of He et al. and of the batch renorm paper).

    ds = files.load("folder", "~/data/flowers", image_size=224)
    ds = files.load("tfrecord", "/data/imagenet")

Two layouts of DIR:
  folder: DIR/train/CLASS/IMAGE and DIR/val/CLASS/IMAGE (or test/ or
    validation/): JPEG, PNG, GIF, BMP or WebP files, one folder per class; the
    classes are train's folder names, sorted, labels 0, 1, ...
  tfrecord: DIR/train-* and DIR/validation-* (or test-*) shards of
    `tf.train.Example`s with "image/encoded" (the image file's bytes) and
    "image/class/label" (int64): what ImageNet's `build_imagenet_data.py`
    writes. Its labels are 1..1000, 0 unused: 1,001 classes, as TensorFlow's
    official ResNet trains them (or give num_classes).

Each split is an index of records (file, byte offset, length, label), in a
fixed order: sorted files, records in file order. An epoch visits the index
in the order `input_pipeline.epoch_order(seed, epoch, n)` gives (or
`non_iid_order`, from the index's labels), and each image is augmented with
stateless ops seeded by (seed, the global step that reads it, its place in
the global batch): a run resumed at any
step reads the very images the uninterrupted run would have, in one process
or on several workers, each reading only its own part of every batch.

A TFRecord index reads every record once (checking its CRCs, label and
image field) and is kept in `index_dir` (default `default_index_dir()`),
a file per shard named by a hash of its path, size, times and inode, so that the
next run starts at once and a changed shard alone is read again. A missing
split, an
empty or damaged shard, a record without its fields, a label out of range
or a class folder without images raise `DatasetError` naming the file. An
image that does not decode stops training when its batch comes, naming the
file (after a checkpoint, with a model_dir; in a cluster, the worker that
reads it names it and the chief stops at a lost worker, keeping its last
checkpoint): skipping it would silently
shift every later batch of the run.

Training crops: a random part of 8%-100% of the image's area, aspect ratio
3/4-4/3, resized to image_size, flipped left-right half of the time
(Szegedy et al. 2015, as He et al. and TensorFlow's official ResNet train).
Evaluation: the shorter side resized to image_size / 0.875 (256 for 224),
the centre image_size square. Images of mixed sizes are fine.
"""
import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import time
import zipfile
from typing import Optional

import numpy as np
from batch_renorm.tensorflow_quiet import tf

from resnet.data import input_pipeline
from resnet.data.datasets import FILE_FORMATS, FILE_IMAGE_SIZE
from resnet.errors import DatasetError
from resnet.storage.atomic import failure_reason

tf1 = tf.compat.v1
log = logging.getLogger(__name__)

FORMATS = FILE_FORMATS
TRAIN_SPLIT = "train"
TEST_SPLITS = ("val", "validation", "test")  # the first found is used
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
IMAGE_KEY, LABEL_KEY = "image/encoded", "image/class/label"
CENTRAL_FRACTION = 0.875  # evaluation: 224 of 256
MAX_PIXELS = 100_000_000  # an image's, read from its header before decoding
PIXELS_CAPPED = "width x height is more than max_pixels"
MAX_CLASSES = 1_000_000   # labels beyond are taken for damage, not classes
NORMALIZER_IMAGES = 256   # training images the per-channel statistics read
INDEX_BATCH = 4096        # TFRecord records read a session.run while indexing


@dataclasses.dataclass(frozen=True)
class FileIndex:
    """A split's records: `paths` [F] (str objects) its files; per record
    its file (an index into paths), byte offset and length (-1: the whole
    file), label, and place in its file (for messages)."""
    paths: np.ndarray
    files: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    records: np.ndarray
    tfrecord: bool
    max_pixels: int = 0  # set by `load`: an image's pixels at most

    def __len__(self):
        return len(self.labels)

    def describe(self, index):
        """Where record `index` is, for a message."""
        path = self.paths[self.files[index]]
        return (f"{path}, record {self.records[index]}" if self.tfrecord
                else path)

    @functools.cached_property
    def _encoded_paths(self):
        """`paths` as the file system's bytes (any name reads), encoded
        once."""
        return np.array([os.fsencode(path) for path in self.paths], object)

    def feed(self, indices):
        """The (paths as the file system's bytes, offsets, lengths) of
        `indices`, as a reader takes them."""
        return (self._encoded_paths[self.files[indices]],
                self.offsets[indices], self.lengths[indices])


@dataclasses.dataclass
class FileDataset:
    """A dataset read from files (`load`): what `ConvolutionNN` and
    resnet-run need of it, as of an in-memory `datasets.Dataset`."""
    name: str
    train: FileIndex
    test: FileIndex
    num_classes: int
    image_size: int
    class_names: Optional[tuple] = None  # label -> folder name (folders)

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, 3)

    @property
    def train_size(self):
        return len(self.train)

    @property
    def test_size(self):
        return len(self.test)

    # Random crops of the files' larger images (centre crops to test).
    default_augment = True

    def normalizer(self):
        """(images - mean) / std per channel, the statistics of
        NORMALIZER_IMAGES training images spread over the index (centre
        crops)."""
        picks = np.unique(np.linspace(0, len(self.train) - 1,
                                      NORMALIZER_IMAGES).astype(np.int64))
        images = np.concatenate([x for x, _ in self._batches(self.train,
                                                             picks, 64)])
        return input_pipeline.per_channel_normalizer(images)

    def train_input(self, seed, augment, classes_per_group=None,
                    group_size=None, part=(0, 1), microbatch=None):
        return FileInput(self.train, self.image_size, seed, augment,
                         classes_per_group, group_size, part, microbatch)

    def test_batches(self, batch_size):
        """(images, labels) NumPy batches of the test split's centre
        crops."""
        return self._batches(self.test, np.arange(len(self.test)),
                             batch_size)

    def _batches(self, index, picks, batch_size):
        """Centre crops of `picks`, decoded in a graph and session of their
        own (not the caller's)."""
        size = self.image_size

        def load(path, offset, length, label):
            return center_crop(decode(read_record(path, offset, length,
                                                  index.tfrecord),
                                      index.max_pixels), size), label

        with _private_session() as session:
            paths, offsets, lengths = index.feed(picks)
            batches = tf.data.Dataset.from_tensor_slices(
                (paths, offsets, lengths, index.labels[picks])
            ).map(load, input_pipeline.parallel_calls(), deterministic=True
                  ).batch(batch_size).prefetch(1)
            next_batch = tf1.data.make_one_shot_iterator(batches).get_next()
            done = 0
            while done < len(picks):
                try:
                    images, labels = session.run(next_batch)
                except tf.errors.OpError as error:
                    raise _undecodable(index, picks[done:done + batch_size],
                                       error) from None
                done += len(labels)
                yield images, labels


class FileInput(input_pipeline.Input):
    """The training batches of a `FileIndex` (an `input_pipeline.Input`),
    read and decoded in parallel in the graph, with the next batches
    prefetched while a step runs. With `part=(index, parts)`, a worker's
    slice of every batch: only its own images are read; `explain` names an
    image that does not decode."""

    def __init__(self, index, image_size, seed, augment,
                 classes_per_group=None, group_size=None, part=(0, 1),
                 microbatch=None):
        super().__init__(index.labels, seed, classes_per_group, group_size,
                         part, microbatch)
        self._index = index
        self._epoch = None  # (the records fed, their steps)
        with tf1.name_scope("input"):
            self._feeds = (
                tf1.placeholder(tf.string, [None], "paths"),
                tf1.placeholder(tf.int64, [None], "offsets"),
                tf1.placeholder(tf.int64, [None], "lengths"),
                tf1.placeholder(tf.int64, [None], "labels"),
                tf1.placeholder(tf.int64, [None], "steps"),
                tf1.placeholder(tf.int64, [None], "slots"))
            self._batch_size = tf1.placeholder(tf.int64, [], "batch_size")

            def load(path, offset, length, label, step, slot):
                image = decode(read_record(path, offset, length,
                                           index.tfrecord), index.max_pixels)
                if augment:
                    image = random_crop_flip(image, image_size, tf.stack(
                        [tf.constant(seed, tf.int64), step, slot]))
                else:
                    image = center_crop(image, image_size)
                return image, label

            batches = tf.data.Dataset.from_tensor_slices(self._feeds).map(
                load, input_pipeline.parallel_calls(), deterministic=True)
            self._iterator = input_pipeline.epoch_iterator(
                batches.batch(self._batch_size))
            self.images, self.labels = self._iterator.get_next()
            self.images.set_shape([None, image_size, image_size, 3])
            self.labels.set_shape([None])

    def start_epoch(self, session, epoch, batch_size, position, first_step):
        order = self.epoch_order(epoch, batch_size, position)
        # Batch b of the epoch is order[b * batch_size:][:batch_size], its
        # last one shorter; this worker reads its `parts`-th of each.
        batch, slot = np.divmod(np.arange(len(order)), batch_size)
        sizes = np.minimum(batch_size, len(order) - batch * batch_size)
        mine = slot // (sizes // self._parts) == self._part
        records = order[mine]
        steps = first_step + batch[mine]
        self._epoch = records, steps
        session.run(self._iterator.initializer, {
            **dict(zip(self._feeds, (*self._index.feed(records),
                                     self._index.labels[records], steps,
                                     slot[mine]))),
            self._batch_size: batch_size // self._parts})
        return -(-len(order) // batch_size)

    def explain(self, error, step):
        message = getattr(error, "message", "")
        if self._epoch is None or not (
                self.images.op.name in message or CHANGED in message
                or isinstance(error, UnicodeDecodeError)):
            return None
        records, steps = self._epoch
        failed = step()
        explained = _undecodable(self._index, records[steps == failed], error)
        return DatasetError(f"{explained} at step {failed}")


def read_record(path, offset, length, tfrecord):
    """The image file's bytes of a record: a whole file, or the image field
    of the `tf.train.Example` `length` bytes long at `offset` of a TFRecord
    shard (the offsets are the index's, checked once)."""
    if not tfrecord:
        return tf.io.read_file(path)
    data = tf.numpy_function(_read_record, [path, offset, length], tf.string,
                             stateful=False)
    data.set_shape([])
    return tf.io.parse_single_example(data, {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})[IMAGE_KEY]


CHANGED = "changed since it was indexed"


def _read_record(path, offset, length):
    """The `length` bytes of the record at `offset` of the TFRecord shard
    `path`, checked against the length its frame gives: a shard rewritten
    since it was indexed raises ValueError (CHANGED) instead of handing a
    stranger's bytes to the parser."""
    with open(path, "rb") as file:
        file.seek(offset - 12)  # the record's length and its CRC before it
        header, data = file.read(12), file.read(length)
    framed = struct.unpack("<Q", header[:8])[0] if len(header) == 12 else -1
    if framed != length or len(data) != length:
        name = os.fsdecode(path)
        raise ValueError(f"{name}: the record at byte {offset - 12} {CHANGED}"
                         f" (index it again: a new run does)")
    return data


def decode(data, max_pixels=MAX_PIXELS):
    """uint8 [H, W, 3] of a JPEG, PNG, GIF, BMP or WebP file's bytes (grey
    and RGBA images made RGB). An image of more than `max_pixels` (its
    header says; 0: no cap) fails before it is decoded: twelve 1-MB PNGs
    of 23000 x 23000 took 8.5 GB."""
    if max_pixels:
        pixels = header_pixels(data)
        check = tf.debugging.Assert(pixels <= max_pixels, [
            f"{PIXELS_CAPPED} {max_pixels:,} (a larger cap: files.load("
            f"max_pixels=...), --max-pixels); its header gives", pixels])
        with tf.control_dependencies([check]):
            data = tf.identity(data)
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def header_pixels(data):
    """The width x height (int64 []) the header of a PNG, GIF, BMP or JPEG
    file's bytes gives, read without decoding; 0 for other formats and
    headers that are not one of these (decoding then names the file as
    unreadable; WebP's sides are at most 16,383)."""
    head = tf.strings.substr(tf.strings.join([data, b"\0" * 26]), 0, 26)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def number(start, count, big_endian):
        places = range(count) if big_endian else reversed(range(count))
        value = tf.constant(0, tf.int64)
        for place in places:
            value = value * 256 + b[start + place]
        return value

    def starts(*magic):
        return tf.reduce_all(tf.equal(b[:len(magic)], magic))

    def bmp_side(start):  # a signed 32-bit side; negative: top-down rows
        value = number(start, 4, False)
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    def side(value):  # at most 2^31 - 1 in every format: no overflow
        return tf.minimum(value, 2 ** 31)

    # A BMP's second header is of one of these sizes (BITMAPCOREHEADER to
    # BITMAPV5HEADER); text that starts with "BM" has none of them.
    bmp_header = tf.reduce_any(tf.equal(number(14, 4, False),
                                        [12, 40, 52, 56, 64, 108, 124]))

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    png = starts(137, 80, 78, 71) & tf.reduce_all(
        tf.equal(b[12:16], [73, 72, 68, 82]))  # IHDR first
    gif = starts(71, 73, 70, 56) & tf.reduce_any(tf.equal(b[4], [55, 57])) & (
        tf.equal(b[5], 97))  # GIF87a, GIF89a
    return tf.case([
        (png, lambda: side(number(16, 4, True)) * side(number(20, 4, True))),
        (gif, lambda: number(6, 2, False) * number(8, 2, False)),
        (starts(66, 77) & bmp_header,
         lambda: side(bmp_side(18)) * side(bmp_side(22))),
        (starts(255, 216), jpeg)], default=lambda: tf.constant(0, tf.int64),
        exclusive=False)


def random_crop_flip(image, size, seed):
    """The training crop (module docstring) of a uint8 image: float32
    [size, size, 3] in [0, 1]; `seed` an int64 [3] tensor."""
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed[:2], seed[2]), 2))
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), box_seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.image.resize(tf.slice(image, begin, extent), [size, size])
    crop = tf.image.stateless_random_flip_left_right(crop, flip_seed)
    return tf.clip_by_value(crop, 0.0, 255.0) / 255.0


def center_crop(image, size):
    """The evaluation crop (module docstring) of a uint8 image: float32
    [size, size, 3] in [0, 1]."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / CENTRAL_FRACTION / tf.reduce_min(shape)
    resized_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32),
                               size)
    resized = tf.image.resize(image, resized_shape)
    top, left = tf.unstack((resized_shape - size) // 2)
    crop = tf.image.crop_to_bounding_box(resized, top, left, size, size)
    return tf.clip_by_value(crop, 0.0, 255.0) / 255.0


def load(layout, data_dir, image_size=FILE_IMAGE_SIZE, num_classes=None,
         index_dir=None, max_pixels=MAX_PIXELS):
    """The `FileDataset` in `data_dir`, of `layout` "folder" or
    "tfrecord" (module docstring), cropped to `image_size` squares.
    `num_classes`: the labels' range (default: the folders, or the
    largest TFRecord label + 1). `max_pixels`: an image larger than that
    (width x height) stops training naming it, as an undecodable one does
    (0: no cap). Raises DatasetError (a ValueError) naming what is missing
    or wrong."""
    if layout not in FORMATS:
        raise ValueError(f"layout must be one of {FORMATS}, got "
                         f"{layout!r}")
    if data_dir is None:
        raise DatasetError(f"a {layout} dataset needs its directory "
                           f"(--data-dir)")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8, got "
                         f"{image_size!r}")
    if not isinstance(max_pixels, int) or not 0 <= max_pixels < 2 ** 63:
        raise ValueError(f"max_pixels must be an integer >= 0 and < 2^63, "
                         f"got {max_pixels!r}")
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir}: no such directory")
    classes = None
    if layout == "folder":
        train, classes = _folder_index(os.path.join(data_dir, TRAIN_SPLIT))
        test, _ = _folder_index(_test_path(data_dir, os.path.isdir), classes)
        num_classes = num_classes or len(classes)
        if len(classes) > num_classes:
            raise DatasetError(f"{data_dir}: {len(classes)} class folders, "
                               f"more than num_classes {num_classes}")
    else:
        index_dir = os.path.expanduser(index_dir or default_index_dir())
        train = _tfrecord_index(
            _shards(os.path.join(data_dir, TRAIN_SPLIT)), index_dir)
        test = _tfrecord_index(
            _shards(_test_path(data_dir, _shard_files)), index_dir)
        num_classes = num_classes or int(train.labels.max()) + 1
    for split, index in (("training", train), ("test", test)):
        bad = np.flatnonzero(index.labels >= num_classes)
        if len(bad):
            raise DatasetError(
                f"{index.describe(bad[0])}: label {index.labels[bad[0]]} "
                f"out of range for {num_classes} classes ({len(bad)} "
                f"{split} records)")
    if num_classes < 2:
        raise DatasetError(f"{data_dir}: one class only: nothing to learn")
    log.info("%s: %s (%d training images, %d classes), test split %d "
             "images", data_dir, layout, len(train), num_classes,
             len(test))
    train, test = (dataclasses.replace(index, max_pixels=max_pixels)
                   for index in (train, test))
    # Named by its format alone: the images may grow (run.json counts them).
    # Labels no folder has (num_classes given larger) are named by number.
    names = (tuple(classes) + tuple(str(label) for label in range(
        len(classes), num_classes)) if layout == "folder" else None)
    return FileDataset(layout, train, test, num_classes, image_size,
                       names)


def default_index_dir():
    """Where TFRecord indexes are kept: $XDG_CACHE_HOME (default ~/.cache)
    /resnet-batch-renorm/index."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(cache, "resnet-batch-renorm", "index")


def _test_path(data_dir, exists):
    """data_dir's test split (the first of TEST_SPLITS that `exists`)."""
    for split in TEST_SPLITS:
        path = os.path.join(data_dir, split)
        if exists(path):
            return path
    raise DatasetError(f"{data_dir}: no test split (one of "
                       f"{', '.join(TEST_SPLITS)})")


def _folder_index(root, classes=None):
    """The index of root/CLASS/IMAGE files and the classes (sorted folder
    names, or `classes`: a test split's folders must be among them). What
    a class folder holds besides images of IMAGE_EXTENSIONS at its top
    level is counted in one warning."""
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no such directory (expected a folder "
                           f"per class)")
    found = [entry.name for entry in _entries(root)
             if _kind(entry) == "folder"]
    if not found:
        raise DatasetError(f"{root}: no class folders")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{root}: class folder(s) {unknown[:3]} not in "
                           f"the training split")
    paths, labels, skipped = [], [], collections.Counter()
    for name in found:
        folder = os.path.join(root, name)
        images = []
        for entry in _entries(folder):
            kind = _kind(entry)
            extension = os.path.splitext(entry.name)[1].lower()
            if kind == "file" and extension in IMAGE_EXTENSIONS:
                images.append(entry.path)
            else:
                skipped["subfolders" if kind == "folder" else
                        "links to nothing or special files" if kind == "other"
                        else f"{extension or 'no extension'} files"] += 1
        if not images:
            raise DatasetError(f"{folder}: no images "
                               f"({', '.join(IMAGE_EXTENSIONS)})")
        paths += images
        labels += [classes.index(name)] * len(images)
    if skipped:
        log.warning("%s: skipped in the class folders: %s (read: the %s "
                    "files at a class folder's top level)", root,
                    ", ".join(f"{count} {what}" for what, count in
                              sorted(skipped.items())),
                    "/".join(IMAGE_EXTENSIONS))
    count = len(paths)
    return FileIndex(np.array(paths, object), np.arange(count),
                     np.zeros(count, np.int64),
                     np.full(count, -1, np.int64), np.array(labels, np.int64),
                     np.zeros(count, np.int64), tfrecord=False), classes


def _entries(folder):
    """The entries of `folder`, sorted by name; DatasetError naming it if
    it cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        raise _unreadable(folder, error) from None


def _kind(entry):
    """"folder", "file" or "other" (a dangling link, a device) of a
    directory entry, following links; DatasetError naming one that cannot
    be followed (a link that loops)."""
    try:
        return ("folder" if entry.is_dir() else
                "file" if entry.is_file() else "other")
    except OSError as error:
        raise _unreadable(entry.path, error) from None


def _unreadable(path, error):
    return DatasetError(f"{path}: cannot be read ({error.strerror or error})")


def _shard_files(prefix):
    """The sorted files PREFIX-* (DIR/train-*, ...), whatever characters
    the prefix holds; DatasetError if their folder cannot be read (a glob
    would find nothing there)."""
    start = os.path.basename(prefix) + "-"
    return [entry.path for entry in _entries(os.path.dirname(prefix))
            if entry.name.startswith(start) and os.path.isfile(entry.path)]


def _shards(prefix):
    """The shards of a split, PREFIX-*; there must be some."""
    shards = _shard_files(prefix)
    if not shards:
        raise DatasetError(f"{os.path.dirname(prefix)}: no TFRecord shards "
                           f"{prefix}-*")
    return shards


def _tfrecord_index(shards, index_dir):
    """The index of `shards`: each shard's part from index_dir if it was
    built for that very file (path, size, times, inode), else read (every record
    once) and kept there."""
    parts, shown, failures = [], time.monotonic(), []
    for number, path in enumerate(shards):
        parts.append(_shard_index(path, index_dir, failures))
        if time.monotonic() - shown > 30:
            log.info("indexing TFRecords: %d of %d shards", number + 1,
                     len(shards))
            shown = time.monotonic()
    if failures:  # once, not once per shard (thousands for ImageNet)
        log.warning("could not keep the TFRecord index of %d shards in %s "
                    "(%s): the next run reads them again", len(failures),
                    index_dir, failures[0])
    sizes = [len(labels) for _, _, labels in parts]
    return FileIndex(
        np.array(shards, object), np.repeat(np.arange(len(shards)), sizes),
        *(np.concatenate(column) for column in zip(*parts)),
        np.concatenate([np.arange(size) for size in sizes]), tfrecord=True)


def _shard_index(path, index_dir, failures):
    """(offsets, lengths, labels) of the records of one shard; why its
    index could not be kept is appended to `failures`."""
    stat = os.stat(path)
    if stat.st_size == 0:
        raise DatasetError(f"{path}: an empty TFRecord shard")
    # The change time and inode too: a copy that restores the size and the
    # modification time (tar, rsync, cp -p) has another of each. Not the
    # device, which NFS clients number each their own way (a shared
    # --index-dir serves them all); a chmod or chown re-reads the shard.
    key = json.dumps([path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                      stat.st_ino])
    cached = os.path.join(index_dir, hashlib.sha256(
        key.encode()).hexdigest()[:24] + ".npz")
    fields = ("offsets", "lengths", "labels")
    try:
        with np.load(cached) as kept:
            return tuple(kept[field] for field in fields)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # not built yet (or unreadable: built again)
    offsets, lengths, labels = [], [], []
    offset = 0
    for record, data in enumerate(_records(path)):
        labels.append(_label(data, path, record))
        offsets.append(offset + 12)  # after the length and its CRC
        lengths.append(len(data))
        offset += len(data) + 16  # length, its CRC, data, its CRC
    columns = tuple(np.array(column, np.int64)
                    for column in (offsets, lengths, labels))
    failure = _keep(cached, dict(zip(fields, columns)))
    if failure:
        failures.append(failure)
    return columns


def _records(path):
    """The records of a TFRecord shard, their CRCs checked, read
    INDEX_BATCH at a time."""
    with _private_session() as session:
        next_batch = tf1.data.make_one_shot_iterator(
            tf.data.TFRecordDataset(path).batch(INDEX_BATCH)).get_next()
        done = 0
        while True:
            try:
                batch = session.run(next_batch)
            except tf.errors.OutOfRangeError:
                return
            except tf.errors.OpError as error:
                # Which record: one at a time from the failed batch on.
                next_record = tf1.data.make_one_shot_iterator(
                    tf.data.TFRecordDataset(path).skip(done)).get_next()
                while True:
                    try:
                        session.run(next_record)
                    except tf.errors.OpError:
                        break
                    done += 1
                raise DatasetError(f"{path}: damaged at record {done} "
                                   f"({_reason(error)})") from None
            yield from batch
            done += len(batch)


def _label(data, path, record):
    """The label of a serialized tf.train.Example, its image field
    checked."""
    try:
        features = tf.train.Example.FromString(data).features.feature
    except Exception:  # protobuf's DecodeError
        raise DatasetError(f"{path}, record {record}: not a tf.train.Example"
                           ) from None
    image, label = features.get(IMAGE_KEY), features.get(LABEL_KEY)
    if (image is None or len(image.bytes_list.value) != 1 or label is None
            or len(label.int64_list.value) != 1):
        found = ", ".join(f"{name!r} ({_kind_of(features[name])})"
                          for name in sorted(features)) or "no fields"
        raise DatasetError(f"{path}, record {record}: expected one "
                           f"{IMAGE_KEY!r} (bytes) and one {LABEL_KEY!r} "
                           f"(int64), found {found}")
    value = label.int64_list.value[0]
    if value < 0:
        raise DatasetError(f"{path}, record {record}: negative label {value}")
    if value >= MAX_CLASSES:
        raise DatasetError(f"{path}, record {record}: label {value}, more "
                           f"than the {MAX_CLASSES:,} classes a network "
                           f"here may have")
    return value


def _kind_of(feature):
    """"bytes x N", "int64 x N" or "float x N": a tf.train.Feature's
    values."""
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else ()
    return f"{kind.split('_')[0] if kind else 'empty'} x {len(values)}"


def _keep(path, arrays):
    """Writes the index atomically; returns None, or why it could not (a
    directory it cannot write costs the next run a rebuild, nothing
    more)."""
    file = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(path),
                                         suffix=".npz", delete=False) as file:
            np.savez(file, **arrays)
        os.replace(file.name, path)
    except OSError as error:
        if file is not None and os.path.exists(file.name):
            os.remove(file.name)
        return failure_reason(error)
    return None


def _undecodable(index, records, error):
    """A DatasetError naming the first of `records` whose image does not
    decode (the cause of `error`), or the error's own message."""
    with _private_session() as session:
        feeds = (tf1.placeholder(tf.string, []),
                 tf1.placeholder(tf.int64, []), tf1.placeholder(tf.int64, []))
        decoded = decode(read_record(*feeds, index.tfrecord),
                         index.max_pixels)
        for record in records:
            try:
                session.run(decoded, dict(zip(feeds, (
                    item[0] for item in index.feed([record])))))
            except tf.errors.OpError as cause:
                reason = _reason(cause)
                if CHANGED in reason:
                    return DatasetError(reason.split("ValueError: ")[-1])
                if PIXELS_CAPPED in reason:  # "...: [words] [pixels]"
                    words, pixels = re.findall(r"\[([^\]]*)\]", reason)[:2]
                    return DatasetError(f"{index.describe(record)}: {words} "
                                        f"{int(pixels):,} pixels")
                return DatasetError(f"{index.describe(record)}: not a "
                                    f"readable image ({reason})")
            except UnicodeDecodeError:  # TensorFlow's message held bytes
                return DatasetError(f"{index.describe(record)}: not a "
                                    f"readable record (its bytes are no "
                                    f"tf.train.Example)")
    reason = _reason(error)  # the record changed back, or another's error
    if CHANGED in reason:
        return DatasetError(reason.split("ValueError: ")[-1])
    return DatasetError(f"reading the images failed: {reason}")


@contextlib.contextmanager
def _private_session():
    """A session of its own graph (seeded: op determinism asks for it), for
    reading files outside the caller's graph."""
    with tf.Graph().as_default(), tf1.Session() as session:
        tf1.set_random_seed(0)
        yield session


def _reason(error):
    """What a TensorFlow error's message says went wrong: its last line
    but the node names (before it: "Graph execution error:" and where)."""
    lines = [line.strip() for line in
             getattr(error, "message", str(error)).splitlines()]
    return next((line for line in reversed(lines)
                 if line and not line.startswith("[[")), "unknown")
