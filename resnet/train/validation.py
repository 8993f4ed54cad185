"""The one check of a run's arguments against each other, the data and the
machine: the command line (`resnet_run.plan`, before any graph is built)
and `ConvolutionNN` (at construction, then with each `train` call's batch)
both call `check_run`.

The checks of single values live where the values enter (`TrainConfig`,
`RunConfig`, `models.Network`, the layers); what is checked here is how
they combine.

Typical use:
    check_run(network, config, dataset, batch_size=128, workers=2)
"""
from resnet.data.input_pipeline import (check_batches, check_classes,
                                        check_groups)
from resnet.errors import UsageError
from resnet.runtime.session_config import check_device_supports
from resnet.train.config import check_run_length

EXCLUSIVE_STATISTICS = (
    "sync_statistics (the global batch's moments) and the network's "
    "microbatch (each group's own) exclude each other: choose one")


def check_run(network, config, dataset=None, batch_size=None, num_epoch=0,
              workers=1, sync_statistics=False):
    """Raises `errors.UsageError` (a ValueError) for arguments no run can
    combine; checks what it is given (dataset None: not the data's part;
    batch_size None: not the batch's).

    Args:
      network: a `models.NetworkLike`.
      config: a `config.TrainConfig`.
      dataset: a `datasets.DatasetLike`, or None.
      batch_size: the global batch, or None.
      num_epoch: the epochs to train (with a batch_size).
      workers: the processes that split each batch.
      sync_statistics: whether the norms use the global batch's moments.

    Raises:
      UsageError: sync_statistics with microbatches; a layout this machine
        cannot compute (`session_config.check_device_supports`); more
        classes per group than the data has; a batch the workers, the
        microbatches, the groups or the data cannot split
        (`input_pipeline.check_batches`, `check_groups`).
    """
    if sync_statistics and network.microbatch:
        raise UsageError(EXCLUSIVE_STATISTICS)
    check_device_supports(network.data_format)
    if dataset is not None and config.classes_per_group:
        check_classes(config.classes_per_group, dataset.num_classes)
    if batch_size is None:
        return
    check_run_length(batch_size, num_epoch)
    check_batches(batch_size, network.microbatch, workers,
                  None if dataset is None else dataset.train_size,
                  None if dataset is None else
                  network.fewest_norm_positions(dataset.image_shape))
    if config.classes_per_group:
        check_groups(batch_size, config.classes_per_group, config.group_size)
