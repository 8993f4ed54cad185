"""The in-graph input: augmentation and per-epoch order."""
import numpy as np
import pytest
import tensorflow as tf

from resnet.data.input_pipeline import (PAD, TrainInput, epoch_order, non_iid_order,
                                   pad_crop_flip)

tf1 = tf.compat.v1


def test_pad_crop_flip_crops_each_image_at_its_own_offset(graph):
    images = np.random.RandomState(0).rand(64, 6, 5, 2).astype(np.float32)
    seed = tf1.placeholder(tf.int64, [2])
    out = pad_crop_flip(tf.constant(images), seed)
    with tf1.Session() as session:
        a = session.run(out, {seed: [1, 7]})
        again = session.run(out, {seed: [1, 7]})
        other = session.run(out, {seed: [1, 8]})
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other)
    padded = np.pad(images, [(0, 0), (PAD, PAD), (PAD, PAD), (0, 0)])
    offsets, flips = set(), 0
    for image, source in zip(a, padded):
        matches = [(dy, dx, flip) for dy in range(2 * PAD + 1)
                   for dx in range(2 * PAD + 1) for flip in (False, True)
                   if np.array_equal(image, (lambda c: c[:, ::-1] if flip else c)(
                       source[dy:dy + 6, dx:dx + 5]))]
        assert matches, "not a crop of the padded image"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 20 and 16 < flips < 48


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(0, 3, 100)
    np.testing.assert_array_equal(np.sort(a), np.arange(100))
    np.testing.assert_array_equal(a, epoch_order(0, 3, 100))
    assert not np.array_equal(a, epoch_order(0, 4, 100))
    assert not np.array_equal(a, epoch_order(1, 3, 100))


def test_an_epoch_resumed_mid_way_yields_the_remaining_batches(graph):
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10, dtype=np.int64)
    pipeline = TrainInput(x, y, seed=5, augment=False)
    with tf1.Session() as session:
        pipeline.load(session)

        def epoch(position, first_step):
            count = pipeline.start_epoch(session, 2, 4, position, first_step)
            return count, [session.run(pipeline.labels) for _ in range(count)]

        count, full = epoch(0, 0)
        _, resumed = epoch(1, 1)
    assert count == 3 and [len(b) for b in full] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(full), epoch_order(5, 2, 10))
    assert [list(b) for b in resumed] == [list(b) for b in full[1:]]


def composition(labels, order, batch_size, group_size):
    """[batches, groups, images per group] labels of an order."""
    return labels[order].reshape(-1, batch_size // group_size, group_size)


@pytest.mark.parametrize("group_size, classes_per_group", [(4, 2), (32, 2),
                                                           (6, 3)])
def test_non_iid_groups_are_k_classes_in_a_balanced_batch(group_size,
                                                          classes_per_group):
    labels = np.random.RandomState(0).randint(0, 10, size=3000)
    batch = 96
    order = non_iid_order(3, 0, labels, batch, classes_per_group, group_size)
    assert len(np.unique(order)) == len(order)  # no example twice
    assert len(order) % batch == 0 and len(order) >= 3000 - 400
    per_class = group_size // classes_per_group
    slots = batch // group_size * classes_per_group
    pairs = set()
    for groups in composition(labels, order, batch, group_size):
        for group in groups:
            # One image of each class, then the next one of each: the two
            # halves hold one of each same-label pair.
            first = group[:classes_per_group]
            assert len(set(first)) == classes_per_group
            np.testing.assert_array_equal(
                group, np.tile(first, per_class))
            pairs.add(tuple(sorted(first)))
        # The batch is balanced: every class has slots // 10 or one more
        # of the batch's class slots.
        counts = np.bincount(groups.ravel(), minlength=10) // per_class
        assert set(counts) <= {slots // 10, slots // 10 + 1}
        assert counts.sum() == slots
    assert len(pairs) > 10  # the classes paired change from group to group
    np.testing.assert_array_equal(  # a pure function of (seed, epoch)
        order, non_iid_order(3, 0, labels, batch, classes_per_group,
                             group_size))
    assert not np.array_equal(order, non_iid_order(
        3, 1, labels, batch, classes_per_group, group_size))


def test_non_iid_whole_batches_cycle_through_the_classes():
    labels = np.repeat(np.arange(10), 100)
    order = non_iid_order(3, 0, labels, batch_size=32, classes_per_group=2)
    batches = labels[order].reshape(-1, 32)
    assert len(batches) == 30  # 10 classes x 100 / 32, 16 of 2 classes each
    for batch in batches:
        classes, counts = np.unique(batch, return_counts=True)
        assert len(classes) == 2 and list(counts) == [16, 16]
    # The fullest classes go first: every 5 batches use each class once.
    for start in range(0, 30, 5):
        assert sorted(batches[start:start + 5, :2].ravel()) == list(range(10))


def test_non_iid_groups_must_fill_the_batch():
    labels = np.arange(100) % 10
    with pytest.raises(ValueError, match=r"multiple of group_size \(6\)"):
        non_iid_order(0, 0, labels, 32, 2, 6)
    with pytest.raises(ValueError, match="multiple of classes_per_group"):
        non_iid_order(0, 0, labels, 32, 3, 4)
    with pytest.raises(ValueError, match="at most the data.s 10 classes"):
        non_iid_order(0, 0, labels, 24, 12, 12)
