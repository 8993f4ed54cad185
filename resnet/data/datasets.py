"""Datasets as NumPy arrays, read from their original file formats.

    ds = load("digits")          # embedded in scikit-learn: works offline
    ds = load("fashion_mnist")   # also finds Debian's dataset-fashion-mnist
    ds = load("cifar10", data_dir="~/data/cifar10")  # downloaded if absent

Every loader returns a `Dataset`: NHWC float32 images in [0, 1] and int64
labels. A missing, damaged or unexpected file raises `DatasetError` naming
the path and what was expected.
"""
import dataclasses
from typing import Optional, Protocol, runtime_checkable
import gzip
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import zlib

import numpy as np

from resnet.errors import DatasetError
from resnet.storage.atomic import check_writable_dir, deepest_existing

NAMES = ("digits", "mnist", "fashion_mnist", "cifar10")
# Datasets read from files while training (`resnet.data.files`), and the
# side of their square crops (He et al.'s ImageNet).
FILE_FORMATS = ("folder", "tfrecord")
FILE_IMAGE_SIZE = 224
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "resnet-batch-renorm")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# The largest IDX file read (MNIST's training images are 47 MB): a header
# promising more is refused before anything is inflated.
MAX_IDX_BYTES = 2**30
IDX_FILES = {  # split: (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)


@runtime_checkable
class DatasetLike(Protocol):
    """What `ConvolutionNN` and resnet-run need of a dataset: an in-memory
    `Dataset` or a `files.FileDataset`.

    Attributes:
      name: its name, recorded with the model.
      num_classes: labels are in [0, num_classes).
      class_names: label -> name (a tuple), or None.
      image_shape: [H, W, C] of the images the network sees.
      train_size, test_size: the splits' example counts.
      default_augment: whether training augments when the run does not
        say (CIFAR's pad-crop-flip; files' random crops).
    """
    name: str
    num_classes: int
    class_names: Optional[tuple]
    image_shape: tuple
    train_size: int
    test_size: int
    default_augment: bool

    def normalizer(self):
        """The input normalisation (`input_pipeline.Normalizer`) of its
        training images."""

    def train_input(self, seed, augment, classes_per_group=None,
                    group_size=None, part=(0, 1), microbatch=None):
        """An `input_pipeline.Input` of its training split."""

    def test_batches(self, batch_size):
        """The test split as (images [n, H, W, C], labels [n]) arrays."""


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # [N, H, W, C] float32 in [0, 1]
    y_train: np.ndarray  # [N] int64 in [0, num_classes)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: Optional[tuple] = None  # label -> name, if the data has them

    @property
    def image_shape(self):
        return self.x_train.shape[1:]

    @property
    def train_size(self):
        return len(self.x_train)

    @property
    def default_augment(self):
        """CIFAR's 32x32 RGB images train with pad-crop-flip."""
        return self.image_shape == (32, 32, 3)

    def normalizer(self):
        """(images - mean) / std per channel of the training images."""
        from resnet.data.input_pipeline import per_channel_normalizer
        return per_channel_normalizer(self.x_train)

    def train_input(self, seed, augment, classes_per_group=None,
                    group_size=None, part=(0, 1), microbatch=None):
        """The in-graph training input (`input_pipeline.TrainInput`)."""
        from resnet.data.input_pipeline import TrainInput
        return TrainInput(self.x_train, self.y_train, seed, augment,
                          classes_per_group, group_size, part, microbatch)

    @property
    def test_size(self):
        return len(self.x_test)

    def test_batches(self, batch_size):
        """The test split in (images, labels) batches."""
        from resnet.data.arrays import in_batches
        return in_batches(self.x_test, self.y_test, batch_size)

    def split_validation(self, size, seed=0):
        """This dataset with `size` training examples, chosen by a seeded
        shuffle, held out as its test split (the original test split is
        dropped)."""
        if not 0 < size < len(self.x_train):
            raise ValueError(f"validation size must be in (0, "
                             f"{len(self.x_train)}), got {size}")
        order = np.random.RandomState(seed).permutation(len(self.x_train))
        train, held_out = order[size:], order[:size]
        return Dataset(f"{self.name}-validation", self.x_train[train],
                       self.y_train[train], self.x_train[held_out],
                       self.y_train[held_out], self.num_classes)


def load(name, data_dir=None, download=True):
    """Loads dataset `name` from `data_dir`.

    Args:
      name: one of NAMES.
      data_dir: where MNIST, Fashion-MNIST and CIFAR-10 are read from in
        their original formats (default ~/.cache/resnet-batch-renorm/NAME;
        for Fashion-MNIST, Debian's copy when present); `digits` is
        embedded.
      download: fetch missing files into `data_dir`.

    Returns:
      A `Dataset`: x_train, x_test float32 [N, H, W, C] in [0, 1], y_train,
      y_test int64 [N].

    Raises:
      ValueError: an unknown name.
      DatasetError: a file missing (and not downloadable), damaged or not
        what was expected, named in the message.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}")
    if name == "digits":
        return _load_digits()
    if data_dir is None:
        data_dir = _default_dir(name)
    data_dir = os.path.expanduser(data_dir)
    if name == "cifar10":
        return _load_cifar10(data_dir, download)
    return _load_idx_dataset(name, data_dir, download)


def _default_dir(name):
    if name == "fashion_mnist" and all(
            os.path.exists(os.path.join(DEBIAN_FASHION_MNIST, f))
            for files in IDX_FILES.values() for f in files):
        return DEBIAN_FASHION_MNIST
    return os.path.join(DEFAULT_DATA_DIR, name)


def _load_digits():
    """scikit-learn's 8x8 digits, with a fixed stratified 1437/360 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=360,
        stratify=digits.target, random_state=0)
    return Dataset("digits", x_train, y_train, x_test, y_test, 10)


def _load_idx_dataset(name, data_dir, download):
    splits = {}
    for split, (images_file, labels_file) in IDX_FILES.items():
        images_path = _fetch(data_dir, images_file, IDX_URLS[name], download)
        labels_path = _fetch(data_dir, labels_file, IDX_URLS[name], download)
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if images.shape[1:] != (28, 28):
            raise DatasetError(f"{images_path}: expected 28x28 images, "
                               f"got shape {images.shape}")
        _check_labels(labels_path, labels, len(images), 10)
        splits[split] = (images[..., None].astype(np.float32) / 255.0,
                         labels.astype(np.int64))
    return Dataset(name, *splits["train"], *splits["test"], 10)


def read_idx(path, ndim):
    """An array of unsigned bytes from a gzipped IDX file (the MNIST format:
    two zero bytes, type 0x08, the number of dimensions, each dimension as a
    big-endian uint32, then the data). The header is read first: a file is
    never inflated beyond the size its header gives, at most
    MAX_IDX_BYTES."""
    header_size = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size or header[:4] != bytes([0, 0, 0x08, ndim]):
                raise DatasetError(
                    f"{path}: not an IDX file of {ndim}-D unsigned bytes "
                    f"(expected magic 0x0000080{ndim}, got 0x{header[:4].hex()})")
            shape = struct.unpack(f">{ndim}I", header[4:])
            expected = math.prod(shape)
            if expected > MAX_IDX_BYTES:
                raise DatasetError(
                    f"{path}: header says shape {shape} ({expected} bytes), "
                    f"more than any dataset here ({MAX_IDX_BYTES} bytes)")
            data = f.read(expected + 1)  # one more: is there too much?
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None
    if len(data) != expected:
        follow = "more" if len(data) > expected else f"only {len(data)}"
        raise DatasetError(f"{path}: header says shape {shape} ({expected} "
                           f"bytes) but {follow} bytes follow")
    return np.frombuffer(data, np.uint8).reshape(shape)


def _load_cifar10(data_dir, download):
    folder = os.path.join(data_dir, CIFAR10_DIR)
    if not os.path.isdir(folder):
        archive = _fetch(data_dir, CIFAR10_ARCHIVE, CIFAR10_URL, download,
                         extract=True)
        if not os.path.isdir(folder):  # the archive was there already
            _extract(archive, data_dir, CIFAR10_DIR)
    splits = [[read_cifar10_batch(os.path.join(folder, name))
               for name in names] for names in (CIFAR10_TRAIN, CIFAR10_TEST)]
    (x_train, y_train), (x_test, y_test) = [
        (np.concatenate([x for x, _ in batches]),
         np.concatenate([y for _, y in batches])) for batches in splits]
    return Dataset("cifar10", x_train, y_train, x_test, y_test, 10)


def _extract(archive, data_dir, folder):
    """Unpacks `folder` of the tar.gz `archive` into `data_dir`: into a
    temporary folder first, so that a damaged archive leaves nothing that
    looks unpacked; no member outside it (tarfile's "data" filter, or a
    check of the names where Python has none)."""
    staging = tempfile.mkdtemp(prefix=".extract-", dir=data_dir)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:
                for member in tar.getmembers():
                    if (os.path.isabs(member.name) or ".." in
                            member.name.split("/") or member.issym()
                            or member.islnk()):
                        raise tarfile.TarError(f"unsafe member {member.name}")
                tar.extractall(staging)
        if not os.path.isdir(os.path.join(staging, folder)):
            raise DatasetError(f"{archive}: holds no {folder}/ folder")
        os.rename(os.path.join(staging, folder), os.path.join(data_dir, folder))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{archive}: not a readable tar.gz archive "
                           f"({type(error).__name__}: {error}); delete it "
                           f"to download it again, or replace it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_cifar10_batch(path):
    """Images [N, 32, 32, 3] float32 and labels [N] int64 from one batch file
    of CIFAR-10's python version (a pickled dict with b"data", uint8 [N, 3072]
    in channel-major order, and b"labels")."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Exception as error:  # a damaged pickle raises almost anything
        raise DatasetError(f"{path}: not a readable CIFAR-10 batch "
                           f"({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        raise DatasetError(f"{path}: expected a dict with b'data' and "
                           f"b'labels', got {type(batch).__name__}")
    data = batch[b"data"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8
            or data.ndim != 2 or data.shape[1] != 3 * 32 * 32):
        raise DatasetError(f"{path}: expected b'data' as uint8 [N, 3072], got "
                           f"{getattr(data, 'dtype', type(data).__name__)} "
                           f"{getattr(data, 'shape', '')}")
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"{path}: b'labels' is not a list of integers") from None
    _check_labels(path, labels, len(data), 10)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images.astype(np.float32) / 255.0, labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and NumPy arrays only: a damaged or hostile
    file cannot make it import or call anything else."""
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed "
                                         f"in a CIFAR-10 batch")
        if name == "_reconstruct":  # numpy.core was renamed numpy._core
            return np.ndarray.__reduce__(np.zeros(0))[0]
        return super().find_class(module, name)


def _check_labels(path, labels, count, num_classes):
    if labels.shape != (count,):
        raise DatasetError(f"{path}: expected {count} labels (one per image), "
                           f"got shape {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels must be in [0, {num_classes}), "
                           f"found {labels.min()}..{labels.max()}")


def _fetch(data_dir, filename, url, download, extract=False):
    """The path of data_dir/filename, downloaded from url + filename if absent."""
    path = os.path.join(data_dir, filename)
    if os.path.exists(path):
        return path
    if not download:
        raise DatasetError(f"{path}: file not found (and download is off)")
    try:
        check_writable_dir(data_dir, "data_dir")
    except ValueError as error:
        raise DatasetError(f"{path}: file not found, and it cannot be "
                           f"downloaded there: {error}") from None
    existing = deepest_existing(data_dir)  # a folder: checked just above
    try:
        import tensorlayer as tl  # slow to import; only needed to download
        return tl.files.maybe_download_and_extract(filename, data_dir, url,
                                                   extract=extract)
    except Exception as error:
        _remove_what_was_made(path, os.path.abspath(data_dir), existing)
        raise DatasetError(
            f"{path}: not found, and downloading it from {url} failed "
            f"({type(error).__name__}: {error}); put the file there by hand"
        ) from None


def _remove_what_was_made(path, data_dir, existing):
    """After a failed download: its partial file, and the folders made for
    it up to `existing` (the deepest one there was), if empty."""
    if os.path.isfile(path):
        os.remove(path)
    while data_dir != existing:
        try:
            os.rmdir(data_dir)
        except OSError:  # not empty, or gone
            return
        data_dir = os.path.dirname(data_dir)
