"""Dataset readers on small files written in the original formats."""
import gzip
import os
import shutil
import struct
import tarfile

import numpy as np
import pytest

from resnet.data import datasets
from resnet.errors import DatasetError
from tests import formats
from tests.conftest import run


def test_mnist_files_are_read_as_written(tmp_path):
    written = formats.write_mnist(tmp_path)
    ds = datasets.load("mnist", str(tmp_path), download=False)
    assert ds.x_train.shape == (60, 28, 28, 1) and ds.x_train.dtype == np.float32
    assert ds.y_test.dtype == np.int64 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.x_train[..., 0] * 255.0, written["train"][0])
    np.testing.assert_array_equal(ds.y_train, written["train"][1])
    np.testing.assert_array_equal(ds.x_test[..., 0] * 255.0, written["test"][0])


def test_cifar10_batches_are_read_channel_last(tmp_path):
    written = formats.write_cifar10(tmp_path)
    ds = datasets.load("cifar10", str(tmp_path), download=False)
    assert ds.x_train.shape == (50, 32, 32, 3) and ds.x_test.shape == (10, 32, 32, 3)
    images, labels = written["data_batch_2"]
    np.testing.assert_allclose(ds.x_train[10:20], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train[10:20], labels)
    # Pixel (row 3, column 5) of image 0 in the raw row: R at 3*32+5,
    # G at 1024 + that, B at 2048 + that.
    raw = images[0].transpose(2, 0, 1).reshape(-1)
    np.testing.assert_allclose(ds.x_train[10, 3, 5] * 255.0,
                               raw[[101, 1024 + 101, 2048 + 101]], rtol=1e-6)


def test_digits_is_embedded_with_a_fixed_stratified_split():
    ds = datasets.load("digits")
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert np.all(np.bincount(ds.y_test, minlength=10) >= 35)
    np.testing.assert_array_equal(datasets.load("digits").y_test, ds.y_test)


@pytest.mark.skipif(not os.path.isdir(datasets.DEBIAN_FASHION_MNIST),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_is_found_in_debians_package():
    ds = datasets.load("fashion_mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1)
    assert ds.x_test.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)


def test_validation_split_holds_out_training_images():
    ds = datasets.load("digits").split_validation(100)
    assert len(ds.x_train) == 1337 and len(ds.x_test) == 100
    train = {img.tobytes() for img in ds.x_train}
    assert not any(img.tobytes() in train for img in ds.x_test[:20])


def _damage(path, how):
    if how == "truncated":
        data = gzip.open(path).read()
        with gzip.open(path, "wb") as f:
            f.write(data[:-7])
    elif how == "not gzip":
        with open(path, "wb") as f:
            f.write(b"hello")
    elif how == "wrong magic":
        data = bytearray(gzip.open(path).read())
        data[2] = 0x0D  # float instead of unsigned byte
        with gzip.open(path, "wb") as f:
            f.write(bytes(data))
    elif how == "missing":
        os.remove(path)


@pytest.mark.parametrize("how, message", [
    ("truncated", "bytes follow"), ("not gzip", "gzip"),
    ("wrong magic", "not an IDX file"), ("missing", "not found")])
def test_damaged_idx_files_name_the_path(tmp_path, how, message):
    formats.write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _damage(path, how)
    with pytest.raises(DatasetError, match=message) as error:
        datasets.load("mnist", str(tmp_path), download=False)
    assert str(path) in str(error.value)


def test_labels_out_of_range_and_count_mismatch(tmp_path):
    formats.write_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    formats.write_idx(path, np.full(20, 10))
    with pytest.raises(DatasetError, match=r"labels must be in \[0, 10\)"):
        datasets.load("mnist", str(tmp_path), download=False)
    formats.write_idx(path, np.zeros(19))
    with pytest.raises(DatasetError, match="expected 20 labels"):
        datasets.load("mnist", str(tmp_path), download=False)


def test_a_cifar10_archive_is_unpacked_or_named_as_damaged(tmp_path):
    """The archive as CIFAR-10 ships it (cifar-10-python.tar.gz holding
    cifar-10-batches-py/) next to no folder: unpacked and read. A 3-byte
    one was reported as "data_batch_1: file not found"."""
    written = formats.write_cifar10(tmp_path / "made")
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "made" / "cifar-10-batches-py",
                arcname="cifar-10-batches-py")
    ds = datasets.load("cifar10", str(archive.parent), download=False)
    np.testing.assert_array_equal(ds.y_test, written["test_batch"][1])
    whole = archive.read_bytes()
    for damaged in (b"abc", whole[:len(whole) // 2]):  # cut off mid-way
        shutil.rmtree(tmp_path / "data" / "cifar-10-batches-py",
                      ignore_errors=True)
        archive.write_bytes(damaged)
        with pytest.raises(DatasetError, match=f"{archive}: not a readable "
                           f"tar.gz archive"):
            datasets.load("cifar10", str(archive.parent), download=False)
        # Nothing half-unpacked is left to be taken for the folder.
        assert sorted(p.name for p in archive.parent.iterdir()) == [
            "cifar-10-python.tar.gz"]


@pytest.mark.parametrize("content, message", [
    (b"\x80\x02garbage", "not a readable CIFAR-10 batch"),
    ("pickled list", "expected a dict"),
    ("wrong shape", r"uint8 \[N, 3072\]")])
def test_damaged_cifar10_batches_name_the_path(tmp_path, content, message):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if content == "pickled list":
        import pickle
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif content == "wrong shape":
        formats.write_cifar10_batch(path, np.zeros((4, 16, 16, 3)), [0] * 4)
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as error:
        datasets.load("cifar10", str(tmp_path), download=False)
    assert str(path) in str(error.value)


def test_missing_files_are_downloaded_into_data_dir(tmp_path, monkeypatch):
    """Downloads go through TensorLayer; here it copies from a local mirror."""
    import shutil
    import tensorlayer as tl
    mirror = tmp_path / "mirror"
    formats.write_mnist(mirror)
    asked = []

    def fake_download(filename, working_directory, url_source, extract=False):
        asked.append(url_source + filename)
        os.makedirs(working_directory, exist_ok=True)
        return shutil.copy(mirror / filename, working_directory)

    monkeypatch.setattr(tl.files, "maybe_download_and_extract", fake_download)
    ds = datasets.load("mnist", str(tmp_path / "data"))
    assert len(ds.x_train) == 60 and len(asked) == 4
    assert all(url.startswith(datasets.IDX_URLS["mnist"]) for url in asked)


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    import tensorlayer as tl

    def cut_off(filename, working_directory, url_source, extract=False):
        os.makedirs(working_directory, exist_ok=True)  # as TensorLayer does
        with open(os.path.join(working_directory, filename), "wb") as f:
            f.write(b"the first bytes")
        raise OSError("network is unreachable")

    monkeypatch.setattr(tl.files, "maybe_download_and_extract", cut_off)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetError, match="by hand"):
        datasets.load("cifar10", str(tmp_path / "mine" / "deep" / "data"))
    # Neither the folders it made nor the partial file are left behind.
    assert [p.name for p in tmp_path.rglob("*")] == ["mine"]


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        datasets.load("imagenet")


# Fuzzing: damaged and random files give DatasetError, never anything else.
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# A valid IDX payload: three 28x28 images.
IDX_PAYLOAD = (bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big")
               + (28).to_bytes(4, "big") * 2 + bytes(range(256)) * 9 + bytes(48))


def _mutations(valid):
    """Truncations, byte flips and insertions of a valid file, and noise."""
    return st.one_of(
        st.binary(max_size=4096),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)),
                 min_size=1, max_size=8).map(
            lambda edits: _apply(valid, edits)))


def _apply(data, edits):
    data = bytearray(data)
    for index, value in edits:
        data[index] = value
    return bytes(data)


@FUZZ
@given(data=st.one_of(_mutations(gzip.compress(IDX_PAYLOAD)),
                     _mutations(IDX_PAYLOAD).map(gzip.compress)))
def test_fuzzed_idx_files_give_dataset_errors(tmp_path, data):
    path = tmp_path / "fuzz-idx3-ubyte.gz"
    path.write_bytes(data)
    try:
        images = datasets.read_idx(str(path), ndim=3)
    except DatasetError as error:
        assert str(path) in str(error)
    else:
        assert images.ndim == 3 and images.dtype == np.uint8


def _valid_cifar_bytes():
    import pickle
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    return pickle.dumps({b"data": data, b"labels": [3, 9]}, protocol=2)


@FUZZ
@given(data=_mutations(_valid_cifar_bytes()))
def test_fuzzed_cifar10_batches_give_dataset_errors(tmp_path, data):
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    try:
        images, labels = datasets.read_cifar10_batch(str(path))
    except DatasetError as error:
        assert str(path) in str(error)
    else:
        assert images.shape[1:] == (32, 32, 3) and labels.shape == images.shape[:1]
        assert labels.min() >= 0 and labels.max() < 10


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "owned"),))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(DatasetError, match="is not allowed"):
        datasets.read_cifar10_batch(str(path))
    assert not (tmp_path / "owned").exists()


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    # An MNIST header for 20 images (15,680 bytes) followed by 400 MB of
    # zeros (400 kB gzipped): read under a 300 MB address-space limit.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 20, 28, 28))
        zeros = bytes(2**20)
        for _ in range(400):
            f.write(zeros)
    result = run("-c", (
        "import resource, sys\n"
        "from resnet.data.datasets import read_idx\n"
        "from resnet.errors import DatasetError\n"
        "resource.setrlimit(resource.RLIMIT_AS, (300 * 2**20, 300 * 2**20))\n"
        "try:\n"
        f"    read_idx({str(path)!r}, 3)\n"
        "except DatasetError as error:\n"
        "    sys.exit(str(error))\n"), OPENBLAS_NUM_THREADS="1")
    assert result.stderr.strip().endswith(
        "header says shape (20, 28, 28) (15680 bytes) but more bytes follow"), \
        result.stderr


def test_an_idx_header_larger_than_any_dataset_is_refused(tmp_path):
    path = tmp_path / "huge.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *[2**32 - 1] * 3))
    with pytest.raises(DatasetError, match=(
            r"shape \(4294967295, 4294967295, 4294967295\) "
            r"\(79228162458924105385300197375 bytes\), more than any dataset")):
        datasets.read_idx(str(path), 3)
