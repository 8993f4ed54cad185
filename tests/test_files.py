"""Datasets read from files (`resnet.data.files`), on folder trees and
TFRecord shards the tests write in those formats: the indexes against what
was written, the crops against NumPy, the epoch's batches against the
in-memory order, worker slices and resumes bit for bit, bad input named, and
training from files through ConvolutionNN and resnet-run."""
import importlib.util
import json
import os
import re
import signal

import numpy as np
import pytest
import tensorflow as tf

from resnet import models
from resnet.convolution_nn import ConvolutionNN
from resnet.data import files
from resnet.data.input_pipeline import epoch_order, non_iid_order
from resnet.errors import (CheckpointMismatchError, DatasetError,
                           RunChangedError, UsageError)
from tests import formats
from tests.conftest import (ROOT, assert_same_weights, cli_refuses,
                            final_weights, run, start, wait_for_line)

tf1 = tf.compat.v1
SIZE = 28  # crops of 32x32 images: the centre crop is [2:30, 2:30], exactly
SPLITS = {"folder": {"train": 30, "val": 9},
          "tfrecord": {"train": 30, "validation": 9}}


def write(layout, root, splits=None, **options):
    writer = (formats.write_image_folder if layout == "folder" else
              formats.write_tfrecords)
    return writer(str(root), splits or SPLITS[layout], **options)


@pytest.fixture(scope="module", params=files.FORMATS)
def written(request, tmp_path_factory):
    """(data format, its directory, {split: (images, labels)}) of 32x32
    images."""
    root = tmp_path_factory.mktemp(request.param)
    return request.param, root, write(request.param, root, sizes=(32, 32))


def load(layout, root, **options):
    options.setdefault("index_dir", os.path.join(root, "index"))
    return files.load(layout, str(root), **options)


def centre(images):
    return np.stack([image[2:30, 2:30] / 255.0 for image in images]
                    ).astype(np.float32)


def test_the_test_split_is_what_was_written_centre_cropped(written):
    layout, root, splits = written
    ds = load(layout, root, image_size=SIZE)
    assert (ds.train_size, ds.test_size, ds.num_classes) == (30, 9, 3)
    assert ds.image_shape == (SIZE, SIZE, 3)
    assert ds.name == layout  # what model.json records
    images, labels = (np.concatenate(parts) for parts in
                      zip(*ds.test_batches(4)))
    test_images, test_labels = list(splits.values())[1]
    np.testing.assert_array_equal(labels, test_labels)
    np.testing.assert_allclose(images, centre(test_images), atol=1e-6)


def test_the_centre_crop_of_an_oblong_image():
    """A 32x48 image at size 28: the shorter side is 32 = 28 / 0.875, so
    nothing is resized; the crop is rows 2-30, columns 10-38."""
    image = np.random.RandomState(0).randint(0, 256, (32, 48, 3), np.uint8)
    with tf.Graph().as_default(), tf1.Session() as session:
        got = session.run(files.center_crop(tf.constant(image), SIZE))
    np.testing.assert_allclose(got, image[2:30, 10:38] / 255.0, atol=1e-6)


def epoch_batches(ds, batch_size, epoch=0, position=0, part=(0, 1),
                  augment=False, seed=3):
    """(the batches left, as start_epoch counts them; every batch FileInput
    gives for the epoch from batch `position`), checking that it then
    ends."""
    with tf.Graph().as_default():
        pipeline = ds.train_input(seed, augment, part=part)
        with tf1.Session() as session:
            count = pipeline.start_epoch(session, epoch, batch_size,
                                         position, first_step=position)
            batches = [session.run([pipeline.images, pipeline.labels])
                       for _ in range(count)]
            with pytest.raises(tf.errors.OutOfRangeError):
                session.run(pipeline.labels)
            return count, batches


def test_an_epoch_reads_the_index_in_its_seeded_order(written):
    layout, root, splits = written
    ds = load(layout, root, image_size=SIZE)
    images, labels = splits["train"]
    order = epoch_order(3, 1, 30)
    count, batches = epoch_batches(ds, 8, epoch=1)
    assert count == 4 and [len(y) for _, y in batches] == [8, 8, 8, 6]
    for b, (got_images, got_labels) in enumerate(batches):
        want = order[b * 8:(b + 1) * 8]
        np.testing.assert_array_equal(got_labels, labels[want])
        np.testing.assert_allclose(got_images,
                                   centre([images[i] for i in want]),
                                   atol=1e-6)


def test_non_iid_groups_come_from_the_index_labels(written):
    """classes_per_group reads the labels of the index: each batch is the
    in-memory sampler's, on the same labels."""
    layout, root, splits = written
    ds = load(layout, root, image_size=SIZE)
    labels = splits["train"][1]
    with tf.Graph().as_default():
        pipeline = ds.train_input(3, False, classes_per_group=2,
                                  group_size=4)
        with tf1.Session() as session:
            count = pipeline.start_epoch(session, 0, 8, 0, 0)
            got = [session.run(pipeline.labels) for _ in range(count)]
    order = non_iid_order(3, 0, labels, 8, 2, 4)
    np.testing.assert_array_equal(np.concatenate(got), labels[order])
    for batch in got:
        assert all(len(set(group)) == 2 for group in batch.reshape(-1, 4))


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("parts, last", [(2, 3), (4, 1)])
def test_workers_read_their_slices_and_a_resume_the_same_batches(
        written, augment, parts, last):
    """The workers' batches are their slices of one process's, augmented
    alike (each image seeded by its step and place in the global batch);
    starting at batch 2 gives batches 2 and 3 as the whole epoch does."""
    layout, root, _ = written
    ds = load(layout, root, image_size=SIZE)
    _, whole = epoch_batches(ds, 8, augment=augment)
    # 30 = 3 * 8 + 6: the last batch trimmed to a multiple of the workers
    # (6 for 2 workers, 4 for 4), each worker reading `last` of it.
    for part in range(parts):
        _, mine = epoch_batches(ds, 8, part=(part, parts), augment=augment)
        assert [len(labels) for _, labels in mine] == [8 // parts] * 3 + [last]
        for (images, labels), (all_images, all_labels) in zip(mine, whole):
            width = len(labels)
            np.testing.assert_array_equal(
                images, all_images[part * width:(part + 1) * width])
            np.testing.assert_array_equal(
                labels, all_labels[part * width:(part + 1) * width])
    left, resumed = epoch_batches(ds, 8, position=2, augment=augment)
    assert left == len(resumed) == 2
    for (images, labels), (want_images, want_labels) in zip(resumed,
                                                            whole[2:]):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)
    if augment:  # and the crops are random: not the centre crops
        _, plain = epoch_batches(ds, 8)
        assert np.abs(whole[0][0] - plain[0][0]).max() > 0.1


def test_random_crops_keep_colour_flip_both_ways_and_follow_the_seed():
    """A one-colour image stays that colour; a left-to-right ramp comes
    out rising or, flipped, falling, both among 32 seeds; the same seed
    gives the same crop."""
    ramp = np.tile(np.linspace(0, 255, 64)[None, :, None], (48, 1, 3))
    with tf.Graph().as_default(), tf1.Session() as session:
        seed = tf1.placeholder(tf.int64, [3])
        flat = files.random_crop_flip(
            tf.fill([40, 50, 3], tf.constant(200, tf.uint8)), 16, seed)
        ramped = files.random_crop_flip(tf.constant(ramp.astype(np.uint8)),
                                        16, seed)
        directions = set()
        for slot in range(32):
            got_flat, got_ramp = session.run([flat, ramped],
                                             {seed: [0, 5, slot]})
            assert got_flat.shape == (16, 16, 3)
            np.testing.assert_allclose(got_flat, 200 / 255, atol=1e-6)
            row = got_ramp[8, :, 0]
            directions.add(np.sign(row[-1] - row[0]))
        assert directions == {1.0, -1.0}
        again = [session.run(ramped, {seed: [0, 5, 7]}) for _ in range(2)]
        np.testing.assert_array_equal(*again)
        other = session.run(ramped, {seed: [0, 6, 7]})
        assert not np.array_equal(again[0], other)


@pytest.mark.parametrize("name", ["café [1]", "data*?"])
def test_paths_with_any_characters(tmp_path, name):
    """Non-ASCII names and glob's special characters in the directory and
    in class folders."""
    for layout in files.FORMATS:
        root = tmp_path / name / layout
        write(layout, root, classes=2)
        if layout == "folder":
            os.rename(root / "train" / "class_1", root / "train" / "clé ø")
            os.rename(root / "val" / "class_1", root / "val" / "clé ø")
        ds = load(layout, root, image_size=SIZE)
        assert next(ds.test_batches(4))[0].shape == (4, SIZE, SIZE, 3)
        _, batches = epoch_batches(ds, 8, augment=True)
        assert sum(len(labels) for _, labels in batches) == 30


def test_images_of_mixed_sizes_jpeg_and_grey(tmp_path):
    """Mixed sizes, JPEG files and a grey PNG all come out SIZE x SIZE
    RGB."""
    write("folder", tmp_path, {"train": 6, "val": 3}, kind="jpg")
    grey_png = tf.io.encode_png(tf.fill([20, 30, 1], tf.constant(
        90, tf.uint8))).numpy()
    with open(tmp_path / "val" / "class_0" / "grey.png", "wb") as file:
        file.write(grey_png)
    ds = load("folder", tmp_path, image_size=SIZE)
    images, labels = next(ds.test_batches(10))
    assert images.shape == (4, SIZE, SIZE, 3) and len(labels) == 4
    _, batches = epoch_batches(ds, 6, augment=True)
    assert batches[0][0].shape == (6, SIZE, SIZE, 3)


def damage(layout, root, case):
    """Makes `case` of bad input in a written dataset at root."""
    if layout == "folder":
        if case == "empty class":
            os.makedirs(root / "train" / "class_9")
        elif case == "unknown test class":
            os.makedirs(root / "val" / "class_7")
            (root / "val" / "class_7" / "a.png").write_bytes(
                next((root / "val" / "class_0").iterdir()).read_bytes())
        elif case == "no test split":
            os.rename(root / "val", root / "elsewhere")
        elif case == "looping link":
            os.symlink("loop.png", root / "train" / "class_1" / "loop.png")
        elif case == "looping class":
            os.symlink("class_x", root / "train" / "class_x")
        return
    shard = root / "train-00001-of-00002"
    if case == "empty shard":
        shard.write_bytes(b"")
    elif case == "damaged shard":
        shard.write_bytes(shard.read_bytes()[:-7])
    elif case == "no shards":
        for path in root.glob("train-*"):
            path.unlink()
    elif case in ("missing field", "negative label", "string label",
                  "huge label"):
        with tf.io.TFRecordWriter(str(shard)) as writer:
            if case == "negative label":
                writer.write(formats.example(b"x", -1))
            elif case == "huge label":
                writer.write(formats.example(b"x", 2 ** 40))
            elif case == "string label":
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature={name: tf.train.Feature(bytes_list=tf.train.
                                                    BytesList(value=[b"3"]))
                             for name in (files.IMAGE_KEY, files.LABEL_KEY)}
                )).SerializeToString())
            else:
                writer.write(tf.train.Example().SerializeToString())


@pytest.mark.parametrize("layout, case, message", [
    ("folder", "empty class", "train/class_9: no images (.jpg"),
    ("folder", "unknown test class", "['class_7'] not in the training"),
    ("folder", "no test split", "no test split (one of val, validation"),
    ("folder", "looping link", "class_1/loop.png: cannot be read (Too many "
     "levels of symbolic links)"),
    ("folder", "looping class", "train/class_x: cannot be read (Too many "
     "levels of symbolic links)"),
    ("tfrecord", "empty shard", "train-00001-of-00002: an empty TFRecord"),
    ("tfrecord", "damaged shard", "train-00001-of-00002: damaged at record 14 "),
    ("tfrecord", "no shards", "no TFRecord shards"),
    ("tfrecord", "missing field", "record 0: expected one 'image/encoded'"),
    ("tfrecord", "negative label", "record 0: negative label -1"),
    ("tfrecord", "string label", "(int64), found 'image/class/label' (bytes x "
     "1), 'image/encoded' (bytes x 1)"),
    ("tfrecord", "huge label", "record 0: label 1099511627776, more than the "
     "1,000,000 classes"),
])
def test_bad_datasets_are_named(tmp_path, layout, case, message):
    write(layout, tmp_path)
    damage(layout, tmp_path, case)
    with pytest.raises(DatasetError, match=re.escape(message)):
        load(layout, tmp_path)


@pytest.mark.parametrize("layout, locked", [
    ("folder", "train/class_1"), ("tfrecord", ".")])
def test_an_unreadable_folder_is_named(tmp_path, monkeypatch, layout,
                                       locked):
    """A class or train folder the user may not read (root here reads
    anything: os.scandir fails as it would) gave a PermissionError
    traceback; a TFRecord folder, "no TFRecord shards"."""
    write(layout, tmp_path)
    locked = os.path.normpath(tmp_path / locked)
    scandir = os.scandir

    def refuse(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(DatasetError, match=re.escape(
            f"{locked}: cannot be read (Permission denied)")):
        load(layout, tmp_path)


def test_what_class_folders_hold_besides_images_is_counted(tmp_path,
                                                           caplog):
    """Nested folders, .tiff (TensorFlow does not decode it) and other
    files were skipped silently (36 of 66 images counted); WebP is read."""
    import io
    from PIL import Image
    write("folder", tmp_path)
    folder = tmp_path / "train" / "class_0"
    for kind, name in (("WEBP", "a.webp"), ("TIFF", "b.tiff"),
                       ("TIFF", "c.tif"), ("PNG", "deep/d.png")):
        os.makedirs((folder / name).parent, exist_ok=True)
        data = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data, kind)
        (folder / name).write_bytes(data.getvalue())
    (folder / "notes.txt").write_text("x")
    with caplog.at_level("WARNING"):
        ds = load("folder", tmp_path, image_size=SIZE)
    assert ds.train_size == SPLITS["folder"]["train"] + 1
    webp = list(ds.train.paths).index(str(folder / "a.webp"))
    with files._private_session() as session:
        image = session.run(files.decode(files.read_record(
            ds.train.paths[webp], 0, -1, False)))
    np.testing.assert_array_equal(image, np.full((32, 32, 3), 200))
    assert (f"{tmp_path / 'train'}: skipped in the class folders: "
            f"1 .tif files, 1 .tiff files, 1 .txt files, 1 subfolders"
            in caplog.text), caplog.text


@pytest.mark.parametrize("kind", ["PNG", "GIF", "BMP", "JPEG"])
def test_an_image_past_the_pixel_cap_is_named_before_decoding(tmp_path, kind):
    """Decompression bombs: twelve 1-MB PNGs of 23000 x 23000 took 8.5 GB.
    The header's width x height is checked first (its reading against
    PIL's sizes), and the image named."""
    from PIL import Image
    data = tmp_path / f"big.{kind.lower()}"
    Image.new("RGB", (1201, 1000), (200, 10, 10)).save(data, kind)
    with files._private_session() as session:
        assert session.run(files.header_pixels(data.read_bytes())) == 1201000
    write("folder", tmp_path / "set", sizes=(32, 32))
    os.rename(data, tmp_path / "set" / "train" / "class_2" / data.name)
    ds = load("folder", tmp_path / "set", image_size=SIZE,
              max_pixels=1_000_000)
    with pytest.raises(DatasetError, match=re.escape(
            f"class_2/{data.name}: width x height is more than max_pixels "
            f"1,000,000 (a larger cap: files.load(max_pixels=...), "
            f"--max-pixels); its header gives 1,201,000 pixels")):
        ConvolutionNN(small_network(ds), ds)
    load("folder", tmp_path / "set", image_size=SIZE, max_pixels=0)


def test_headers_that_are_no_image_give_no_size():
    """Garbage after an image's signature was "too large" (a PNG's 3.3e18
    pixels, text starting "BM"); sides of 2^32 - 1 overflowed below 0."""
    huge = (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + b"\xff" * 8 + b"\0" * 8)
    with files._private_session() as session:
        for data, pixels in ((b"\x89PNG\r\n\x1a\n garbage garbage garbage", 0),
                             (b"BM this is a text file, not a bitmap", 0),
                             (b"GIF8 no version", 0), (b"x", 0), (b"", 0),
                             (huge, 2 ** 62)):
            assert session.run(files.header_pixels(data)) == pixels, data


def test_labels_out_of_range_and_missing_directories(tmp_path):
    write("tfrecord", tmp_path)
    with pytest.raises(DatasetError, match=r"-of-00002, record \d+: label 2 "
                       r"out of range for 2 classes"):
        load("tfrecord", tmp_path, num_classes=2)
    with pytest.raises(DatasetError, match="no such directory"):
        load("folder", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="train: no such directory"):
        load("folder", tmp_path)  # shards, not folders
    with pytest.raises(DatasetError, match="--data-dir"):
        files.load("folder", None)
    with pytest.raises(ValueError, match="image_size"):
        load("folder", tmp_path, image_size=4)


def test_the_tfrecord_index_is_kept_and_rebuilt_when_a_shard_changes(
        tmp_path, monkeypatch, caplog):
    write("tfrecord", tmp_path / "data")
    first = load("tfrecord", tmp_path / "data", index_dir=tmp_path / "index")
    assert len(list((tmp_path / "index").iterdir())) == 4  # one per shard
    read = []
    real_records = files._records

    def records(path):
        read.append(os.path.basename(path))
        return real_records(path)

    monkeypatch.setattr(files, "_records", records)
    kept = load("tfrecord", tmp_path / "data", index_dir=tmp_path / "index")
    assert read == []
    for field in ("files", "offsets", "lengths", "labels", "records"):
        np.testing.assert_array_equal(getattr(kept.train, field),
                                      getattr(first.train, field))
    shard = tmp_path / "data" / "train-00000-of-00002"
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(formats.example(formats.encode_image(
            np.zeros((8, 8, 3), np.uint8)), 1))
    changed = load("tfrecord", tmp_path / "data",
                   index_dir=tmp_path / "index")
    assert read == ["train-00000-of-00002"]  # the changed shard only
    assert changed.train_size == 16  # 1 + the other shard's 15
    # Relabelled at the same size, its modification time restored (tar,
    # rsync, cp -p): the kept index's old labels were used silently.
    before = os.stat(shard)
    relabelled = tmp_path / "relabelled"
    with tf.io.TFRecordWriter(str(relabelled)) as writer:
        writer.write(formats.example(formats.encode_image(
            np.zeros((8, 8, 3), np.uint8)), 2))
    assert os.path.getsize(relabelled) == before.st_size
    os.replace(relabelled, shard)
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = load("tfrecord", tmp_path / "data", index_dir=tmp_path / "index")
    assert read[-1] == "train-00000-of-00002"
    assert again.train.labels[again.train.files == 0].tolist() == [2]
    # A write that fails (a full disk) leaves no partial file behind.
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    load("tfrecord", tmp_path / "data", index_dir=tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []
    # An index directory it cannot write: a warning, the data still read.
    (tmp_path / "blocked").write_text("a file")
    caplog.clear()
    blocked = load("tfrecord", tmp_path / "data",
                   index_dir=tmp_path / "blocked" / "index")
    assert blocked.train_size == 16
    warnings = [r.getMessage() for r in caplog.records
                if "could not keep the TFRecord index" in r.getMessage()]
    assert warnings == 2 * [  # a line per split, not per shard
        f"could not keep the TFRecord index of 2 shards in "
        f"{tmp_path / 'blocked' / 'index'} (not a directory): the next run "
        f"reads them again"], warnings


def small_network(ds):
    """What reading files needs of a network: a conv layer and its norm."""
    return models.custom("conv:4:strides=2", ds.num_classes,
                         norm="batch_norm", norm_momentum=0.9)


def test_an_image_that_does_not_decode_stops_training_naming_it(
        tmp_path, monkeypatch):
    """The step whose batch holds it fails; the steps before are saved;
    with the file replaced, training resumes from there."""
    write("folder", tmp_path / "data", sizes=(32, 32))
    ds = load("folder", tmp_path / "data", image_size=SIZE)
    # The normalizer's statistics read the first and last image only.
    monkeypatch.setattr(files, "NORMALIZER_IMAGES", 2)
    order = epoch_order(0, 0, ds.train_size)
    bad = ds.train.paths[next(i for i in order[12:16] if i not in (0, 29))]
    good = open(bad, "rb").read()
    with open(bad, "wb") as file:
        file.write(good[:len(good) // 3])  # a truncated PNG
    with ConvolutionNN(small_network(ds), ds, learning_rate=0.01, seed=0,
                       model_dir=str(tmp_path / "model")) as cnn:
        with pytest.raises(DatasetError) as error:
            cnn.train(4, 1)
        assert str(error.value).startswith(f"{bad}: not a readable image (")
        assert "at step 3; saved checkpoint" in str(error.value)
        assert int(cnn.session.run(cnn.global_step)) == 3
    with open(bad, "wb") as file:
        file.write(good)
    with ConvolutionNN(small_network(ds), ds, learning_rate=0.01, seed=0,
                       model_dir=str(tmp_path / "model")) as cnn:
        assert int(cnn.session.run(cnn.global_step)) == 3
        history = cnn.train(4, 1)
        assert history[-1]["step"] == 8  # 30 images: 8 batches of 4
        metrics = cnn.evaluate()
        assert 0 <= metrics["accuracy"] <= 1
        with pytest.raises(UsageError, match="population"):
            cnn.evaluate(statistics="population")


def test_a_shard_rewritten_while_training_is_named(tmp_path):
    """A shard rewritten with other content mid-run: a raw error with the
    record's bytes (TensorFlow's own UnicodeDecodeError on the way), no
    shard named, nothing saved. Now: the shard and byte, a checkpoint."""
    write("tfrecord", tmp_path / "data", {"train": 60, "validation": 9},
          sizes=(32, 32))
    ds = load("tfrecord", tmp_path / "data", image_size=SIZE)
    shard = tmp_path / "data" / "train-00000-of-00002"

    class Rewrite(tf1.train.SessionRunHook):
        def after_run(self, run_context, run_values):
            if not hasattr(self, "done"):
                self.done = shard.write_bytes(bytes(reversed(
                    shard.read_bytes())))

    with ConvolutionNN(small_network(ds), ds, seed=0, progress=False,
                       model_dir=str(tmp_path / "model")) as cnn:
        with pytest.raises(DatasetError, match=(
                rf"^{re.escape(str(shard))}: the record at byte \d+ changed "
                rf"since it was indexed \(index it again: a new run does\) "
                rf"at step (\d+); saved checkpoint .*model.ckpt-\1")):
            cnn.train(8, 2, hooks=[Rewrite()])


def test_a_grown_folder_exports_and_resumes_with_changes_allowed(tmp_path):
    """One image added after training: the export was refused ("choose
    another model_dir"), and so was training on, --allow-changes or not
    (the dataset's name in model.json held its size). Both now normalise
    the input as training did."""
    write("folder", tmp_path / "data", sizes=(32, 32))
    ds = load("folder", tmp_path / "data", image_size=SIZE)
    model = str(tmp_path / "model")
    with ConvolutionNN(small_network(ds), ds, progress=False,
                       model_dir=model) as cnn:
        cnn.train(10, 1)
        before = cnn.evaluate()
    # As an earlier version wrote it: the name held the sizes.
    signature = tmp_path / "model" / "model.json"
    signature.write_text(json.dumps(dict(
        json.loads(signature.read_text()),
        dataset="folder (30 training images, 3 classes)")))
    extra = tmp_path / "data" / "train" / "class_0" / "extra.png"
    extra.write_bytes(open(ds.train.paths[0], "rb").read())
    grown = load("folder", tmp_path / "data", image_size=SIZE)
    assert grown.normalizer().as_dict() != ds.normalizer().as_dict()
    with ConvolutionNN(small_network(grown), grown, progress=False,
                       model_dir=model) as cnn:
        # The normalisation it trained with, recorded in model.json: the
        # grown data's statistics differ (the same test loss before).
        assert cnn.evaluate() == before
        cnn.export(str(tmp_path / "exported"))
        with pytest.raises(RunChangedError, match="train_size: 30 there, "
                           "31 here"):
            cnn.train(10, 1)
    with ConvolutionNN(small_network(grown), grown, progress=False,
                       model_dir=model, allow_changes=True) as cnn:
        assert cnn.train(10, 1)[-1]["step"] == 3 + 4  # ceil(31 / 10)


def test_class_names_of_any_bytes_and_labels_without_a_folder(tmp_path):
    """A class folder whose name is not UTF-8 crashed the export
    (UnicodeEncodeError); with num_classes above the folders, a predicted
    label past them failed the SavedModel's whole batch."""
    write("folder", tmp_path / "data", sizes=(32, 32))
    for split in ("train", "val"):
        os.rename(os.fsencode(tmp_path / "data" / split / "class_0"),
                  os.fsencode(tmp_path / "data" / split) + b"/caf\xe9")
    ds = load("folder", tmp_path / "data", image_size=SIZE, num_classes=5)
    assert ds.class_names == ("caf\udce9", "class_1", "class_2", "3", "4")
    with ConvolutionNN(small_network(ds), ds, seed=0, progress=False,
                       model_dir=str(tmp_path / "model")) as cnn:
        cnn.train(10, 1)
        exported = cnn.export(str(tmp_path / "exported"))
    ConvolutionNN(small_network(ds), ds, model_dir=str(tmp_path / "model")
                  ).close()  # model.json's names read back equal
    images = next(iter(ds.test_batches(9)))[0]
    model = tf.saved_model.load(exported)
    out = model.signatures["serving_default"](images=tf.constant(images))
    assert list(out["names"].numpy()) == [
        os.fsencode(ds.class_names[label]) for label in out["classes"].numpy()]
    names = [op for op in model.graph.get_operations()
             if op.type == "Const" and op.name.startswith("Const")]
    assert names  # the table of names, all num_classes of them
    table = [tf.make_ndarray(op.get_attr("value")) for op in names
             if op.get_attr("dtype") == tf.string]
    assert any(list(t) == [b"caf\xe9", b"class_1", b"class_2", b"3", b"4"]
               for t in table if t.ndim == 1)


def test_class_names_go_with_the_model_and_a_renaming_is_refused(tmp_path):
    """Class folders renamed between a stop and the resume (train and val
    alike) permuted the labels silently (test accuracy 0.0000): the names
    are in model.json, the resume is refused, and the SavedModel gives
    each prediction's name."""
    write("folder", tmp_path / "data", sizes=(32, 32))
    ds = load("folder", tmp_path / "data", image_size=SIZE)
    assert ds.class_names == ("class_0", "class_1", "class_2")
    with ConvolutionNN(small_network(ds), ds, seed=0, progress=False,
                       model_dir=str(tmp_path / "model")) as cnn:
        cnn.train(10, 1)
        assert cnn.class_names == ds.class_names
        exported = cnn.export(str(tmp_path / "exported"))
        want = cnn.predict(next(iter(ds.test_batches(9)))[0])
    assert json.loads((tmp_path / "model" / "model.json").read_text())[
        "class_names"] == ["class_0", "class_1", "class_2"]
    model = tf.saved_model.load(exported)
    images = next(iter(ds.test_batches(9)))[0]
    out = model.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(out["classes"].numpy(), want)
    assert [name.decode() for name in out["names"].numpy()] == [
        ds.class_names[label] for label in want]
    for split in ("train", "val"):  # sorted last now: labels 2, 0, 1
        os.rename(tmp_path / "data" / split / "class_0",
                  tmp_path / "data" / split / "class_9")
    renamed = load("folder", tmp_path / "data", image_size=SIZE)
    with pytest.raises(CheckpointMismatchError, match=r"class_names\[0\]: "
                       r"'class_0' there, 'class_1' here"):
        ConvolutionNN(small_network(renamed), renamed,
                      model_dir=str(tmp_path / "model"))


# A learnable file dataset: 3 colours, 90 training images of mixed sizes.
CLI = ["-m", "resnet.resnet_run", "--image-size", "24", "--depth", "8",
       "--batch-size", "16", "--epochs", "4", "--lr", "0.05",
       "--deterministic", "--checkpoint-steps", "5", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", files.FORMATS)
def test_resnet_run_trains_from_files_and_resumes_after_sigkill_exactly(
        tmp_path, layout):
    data = tmp_path / "data"
    write(layout, data, {"train": 90, ("val" if layout == "folder"
                                           else "validation"): 30})
    args = [*CLI, "--dataset", layout, "--data-dir", str(data)]
    cache = str(tmp_path / "cache")
    whole = run(*args, "--model-dir", str(tmp_path / "whole"),
                XDG_CACHE_HOME=cache)
    assert whole.returncode == 0, whole.stderr[-3000:]
    line = whole.stdout.strip().splitlines()[-1]
    assert "after 24 steps" in line and float(line.split()[2]) > 0.8, line
    process = start(*args, "--model-dir", str(tmp_path / "killed"),
                    XDG_CACHE_HOME=cache)
    wait_for_line(process, "saved checkpoint")
    wait_for_line(process, "saved checkpoint")  # killed after step 10
    process.kill()
    assert process.wait() == -signal.SIGKILL
    resumed = run(*args, "--model-dir", str(tmp_path / "killed"),
                  XDG_CACHE_HOME=cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "restored checkpoint" in resumed.stderr
    assert_same_weights(final_weights(tmp_path / "killed"),
                        final_weights(tmp_path / "whole"))


@pytest.mark.slow
def test_local_workers_train_from_tfrecords(tmp_path):
    write("tfrecord", tmp_path / "data", {"train": 90, "validation": 30})
    result = run(*CLI, "--dataset", "tfrecord", "--data-dir",
                 str(tmp_path / "data"), "--local-workers", "2",
                 XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    # 90 = 5 * 16 + 10: every batch splits in two; 6 a epoch.
    assert "after 24 steps" in line and float(line.split()[2]) > 0.8, line


@pytest.mark.slow
@pytest.mark.distributed
def test_local_workers_name_the_image_a_worker_cannot_decode(tmp_path):
    """An undecodable image in worker 1's share: the launcher said only
    that worker 0 lost worker 1, whose own line named the file."""
    write("folder", tmp_path / "data", {"train": 300, "val": 30})
    ds = load("folder", tmp_path / "data")
    picked = set(np.linspace(0, 299, files.NORMALIZER_IMAGES).astype(int))
    order = epoch_order(0, 0, 300)
    bad = ds.train.paths[next(i for b in range(4) for i in
                              order[b * 16 + 8:b * 16 + 16]
                              if i not in picked)]
    with open(bad, "r+b") as file:
        file.truncate(40)  # a PNG header and no image
    result = run(*CLI, "--dataset", "folder", "--data-dir",
                 str(tmp_path / "data"), "--local-workers", "2")
    assert result.returncode != 0
    assert f"resnet-run: worker 1 failed: error: {bad}: not a readable " \
           f"image (" in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "folder"], "needs its directory (--data-dir)"),
    (["--image-size", "64"], "--image-size is for --dataset folder"),
    (["--dataset", "folder", "--data-dir", "/nonexistent"],
     "/nonexistent: no such directory"),
    (["--resnet", "imagenet", "--depth", "20"], "18, 34, 50, 101, 152"),
    (["--resnet", "imagenet", "--layers", "conv:8"], "not with --layers"),
    (["--dataset", "folder", "--data-dir", "/tmp", "--image-size", "4"],
     "image_size must be"),
    (["--dataset", "folder", "--data-dir", "/tmp", "--image-size", "0"],
     "image_size must be an integer >= 8, got 0"),
    (["--index-dir", "/tmp"], "--index-dir is for --dataset tfrecord"),
    (["--max-pixels", "5"], "--max-pixels is for --dataset folder or tfrecord"),
    (["--dataset", "folder", "--data-dir", "/tmp", "--max-pixels", "-1"],
     "max_pixels must be an integer >= 0 and < 2^63"),
])
def test_file_dataset_usage_errors(args, message, capsys):
    cli_refuses(args, message, capsys)


def imagenet_recipe():
    spec = importlib.util.spec_from_file_location(
        "imagenet_resnet", os.path.join(ROOT, "examples", "imagenet_resnet.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_imagenet_recipe_scales_lr_and_boundaries_with_the_batch():
    """The paper's 50 workers x 32: 1,600 images a step, lr 0.1 x 1600 /
    256, 801 steps an epoch, lr / 10 after epochs 30, 60, 80."""
    flags = imagenet_recipe().recipe(50, 32, 1_281_167)
    args = dict(zip(flags[::2], flags[1::2]))
    assert (args["--batch-size"], args["--lr"], args["--lr-boundaries"]) == (
        "1600", "0.625", "24030,48060,64080")
    assert (args["--renorm-warmup"], args["--rmax-steps"],
            args["--dmax-steps"], args["--rmax"], args["--dmax"]) == (
        "5000", "40000", "25000", "3", "5")


@pytest.mark.slow
def test_the_imagenet_recipe_trains_resnet50_on_two_workers(tmp_path):
    write("tfrecord", tmp_path / "data", {"train": 48, "validation": 12})
    result = run(os.path.join("examples", "imagenet_resnet.py"),
                 "--data-dir", str(tmp_path / "data"), "--local-workers", "2",
                 "--per-worker-batch", "4", "--train-images", "48",
                 "--image-size", "32", "--epochs", "1", "--no-progress",
                 XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("ResNet-50, batch renorm: 2 worker(s) x 4 images, lr 0.003125, "
            "lr / 10 at steps 180,360,480") in result.stdout
    assert "resnet50: 23,514,179 parameters" in result.stderr
    assert "after 6 steps" in result.stdout.strip().splitlines()[-1]


def test_evaluation_runs_batches_of_as_many_pixels():
    """500 images of 32x32 or fewer pixels a run, 10 of 224x224 (not 500:
    1.6 GB in ResNet-50's first layer)."""
    from resnet.train.loop import eval_batch_size
    assert [eval_batch_size(shape) for shape in (
        (8, 8, 1), (32, 32, 3), (64, 64, 3), (224, 224, 3), (1024, 1024, 3))
    ] == [500, 500, 125, 10, 1]
