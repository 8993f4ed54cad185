"""Networks as data: a list of layer specs, built into a graph by calling it.

Typical use:
    network = resnet(20, num_classes=10, norm="batch_renorm")
    logits = network(images, training=True)     # creates the variables
    logits_eval = network(images, training=False)  # shares them

Reference: He et al. 2015, section 4.2 (the CIFAR-10 ResNets).
"""
import dataclasses
from typing import Optional, Protocol, runtime_checkable

from batch_renorm.tensorflow_quiet import tf

from batch_renorm import renorm_schedule, step_value
from batch_renorm.layer import check_data_format
from batch_renorm.schedule import check_schedule
from resnet import full_layers
from resnet.checks import is_int

tf1 = tf.compat.v1

NORMS = full_layers.NORMS
KINDS = ("conv", "block", "bottleneck", "dense")


@runtime_checkable
class NetworkLike(Protocol):
    """What `ConvolutionNN` needs of a network (`Network` is one)."""
    data_format: str             # the layout its layers compute in
    microbatch: Optional[int]    # its norms' microbatch size, or None
    norm: Optional[str]          # one of NORMS
    norm_momentum: float         # the moving statistics' momentum
    renorm_schedule: Optional[dict]  # batch_renorm.renorm_schedule's kwargs

    def __call__(self, images, training):
        """Logits [N, classes] of NHWC float32 images; called twice
        (training, inference), sharing the variables between the calls."""

    def signature(self):
        """A JSON-able dict: what its checkpoints must agree on."""

    def settings(self):
        """A JSON-able dict: its training settings (not in the signature)
        that a resumed run keeps unless changes are allowed."""

    def renorm_clip(self):
        """(rmax, dmax) tensors at the global step, or None without batch
        renorm."""

    def fewest_norm_positions(self, image_shape):
        """The fewest values per example and channel any norm layer
        averages over, for images of `image_shape`, or None without
        norms."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a stack: a `conv_layer`, `resnet_block`,
    `bottleneck_block` or `dense_layer`.

    `size` is its filters (conv, block; a bottleneck's output filters, four
    times its inner width) or units (dense).
    """
    kind: str
    size: int
    strides: int = 1
    kernel_size: int = 3
    dropout_rate: float = 0.0
    pool: Optional[str] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer kind must be one of {KINDS}, got {self.kind!r}")
        if self.size < 1 or self.strides < 1 or self.kernel_size < 1:
            raise ValueError(f"layer sizes must be positive: {self}")
        try:
            full_layers.check_flags(self.dropout_rate, self.pool)
        except ValueError as error:
            raise ValueError(f"{error}: {self}") from None
        if self.kind == "bottleneck" and self.size % 4:
            raise ValueError(f"a bottleneck's size must be a multiple of 4 "
                             f"(its inner width is size / 4): {self}")


def _field(default, checkpoint, run=False):
    """A Network field; `checkpoint` says whether checkpoints of networks
    that differ in it are incompatible (every field must say so), `run`
    whether it changes what training computes (a resume keeps it)."""
    return dataclasses.field(default=default,
                             metadata={"checkpoint": checkpoint, "run": run})


@dataclasses.dataclass(frozen=True)
class Network:
    """A stack of layers, a global average pool if the stack ends 4-D, and a
    dense layer to `num_classes` logits. Call it as `network(images, training)`.

    `norm` ("batch_norm", "batch_renorm" or None) applies to every conv layer
    and block (and hidden dense layer); `renorm_schedule` holds the keyword
    arguments of `batch_renorm.renorm_schedule` (None: the paper's).
    `microbatch` normalises groups of that many examples in training (the
    paper's microbatches; ghost batch norm). `data_format` is the layout the
    layers compute in: "NHWC", or "NCHW" (faster on a GPU), with the same
    variables; images come in NHWC either way.
    """
    layers: tuple = _field(dataclasses.MISSING, checkpoint=True)
    num_classes: int = _field(dataclasses.MISSING, checkpoint=True)
    norm: Optional[str] = _field("batch_renorm", checkpoint=True)
    shortcut: str = _field("A", checkpoint=True)
    norm_momentum: float = _field(0.99, checkpoint=False, run=True)
    renorm_schedule: Optional[dict] = _field(None, checkpoint=False, run=True)
    microbatch: Optional[int] = _field(None, checkpoint=False, run=True)
    data_format: str = _field("NHWC", checkpoint=False)
    name: str = _field("network", checkpoint=True)

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.shortcut not in full_layers.SHORTCUTS:
            raise ValueError(f"shortcut must be one of "
                             f"{full_layers.SHORTCUTS}, got {self.shortcut!r}")
        check_data_format(self.data_format)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.norm_momentum < 1.0:
            raise ValueError(f"norm_momentum must be in [0, 1), got "
                             f"{self.norm_momentum}")
        if self.renorm_schedule:
            check_schedule(**self.renorm_schedule)
        if self.microbatch is not None and self.microbatch < 1:
            raise ValueError(f"microbatch must be >= 1, got "
                             f"{self.microbatch}")

    def signature(self):
        """The fields its checkpoints must agree on: the architecture (not
        the training settings, such as the renorm schedule, nor the layout
        the layers compute in)."""
        return self._fields("checkpoint")

    def settings(self):
        """The training settings outside the signature that change what a
        run computes (the norms' momentum, renorm schedule, microbatch)."""
        return self._fields("run")

    def _fields(self, role):
        """{name: JSON-able value} of the fields whose metadata `role` is
        true."""
        return {field.name: _jsonable(getattr(self, field.name))
                for field in dataclasses.fields(self) if field.metadata[role]}

    def renorm_clip(self):
        """(rmax, dmax) at the graph's global step, or None without batch
        renorm."""
        if self.norm != "batch_renorm":
            return None
        return renorm_schedule(step_value(), **(self.renorm_schedule or {}))

    def size(self, image_shape):
        """(trainable parameters, activations per training example), counted
        from the layer specs without building anything: what a run will
        need, known before a graph of minutes is built."""
        height, width, channels = image_shape
        params = activations = 0
        per_channel = 2 if self.norm else 1  # gamma and beta, or a bias

        def conv(cin, cout, kernel, strides):
            nonlocal params, activations, height, width
            height, width = -(-height // strides), -(-width // strides)
            params += kernel * kernel * cin * cout + per_channel * cout
            # Kept for the gradients: the product, the norm's and the
            # activation's outputs.
            activations += 3 * height * width * cout

        for layer in self.layers:
            if layer.kind == "dense":
                inputs = height * width * channels
                params += inputs * layer.size + per_channel * layer.size
                activations += 3 * layer.size
                height = width = 1
            elif layer.kind == "conv":
                conv(channels, layer.size, layer.kernel_size, layer.strides)
            else:
                cin, strides = channels, layer.strides
                if layer.kind == "block":
                    conv(cin, layer.size, 3, strides)
                    conv(layer.size, layer.size, 3, 1)
                else:  # bottleneck: the stride on the 3x3
                    inner = layer.size // 4
                    conv(cin, inner, 1, 1)
                    conv(inner, inner, 3, strides)
                    conv(inner, layer.size, 1, 1)
                if self.shortcut == "B" and (strides != 1 or cin != layer.size):
                    params += cin * layer.size + per_channel * layer.size
                activations += height * width * layer.size  # the sum
            channels = layer.size
            if layer.pool:
                height, width = -(-height // 2), -(-width // 2)
        params += channels * self.num_classes + self.num_classes  # logits
        return params, activations

    def fewest_norm_positions(self, image_shape):
        """The fewest positions (height x width; 1 for a dense layer) over
        which a norm of the network takes its statistics per example, or
        None without norms: a group of one example there has the variance
        0, and the norm outputs beta whatever its input."""
        if self.norm is None or not self.layers:
            return None
        height, width = image_shape[:2]
        fewest = height * width
        for layer in self.layers:
            if layer.kind == "dense":
                return 1  # the layers after it are dense too
            height, width = (-(-height // layer.strides),
                             -(-width // layer.strides))
            fewest = min(fewest, height * width)
            if layer.pool:
                height, width = -(-height // 2), -(-width // 2)
        return fewest

    def __call__(self, images, training):
        """Returns the logits [N, num_classes] of NHWC float32 `images`."""
        with tf1.variable_scope(self.name, reuse=tf1.AUTO_REUSE):
            normalizer = full_layers.normalizer_for(
                self.norm, self.norm_momentum, self.microbatch,
                self.renorm_clip() if training is not False else None)
            # What every layer shares, set once.
            settings = full_layers.Settings(training, normalizer,
                                            self.data_format)
            channels_first = self.data_format == "NCHW"
            h = tf.transpose(images, [0, 3, 1, 2]) if channels_first else images
            for index, layer in enumerate(self.layers):
                h = _build(layer, h, settings, self.shortcut,
                           f"{index:02d}_{layer.kind}")
            if h.shape.rank == 4:
                h = tf.reduce_mean(h, axis=[2, 3] if channels_first else [1, 2],
                                   name="global_pool")
            logits = full_layers.dense_layer(h, self.num_classes, training,
                                             activation=None, name="logits")
            return tf.identity(logits, name="output")


def training_bytes(network, image_shape, batch_size):
    """About how many bytes training `network` takes: per parameter its
    value, gradient, momentum and a low-precision copy (float32 each), and
    the activations of a batch kept for the gradients."""
    params, activations = network.size(image_shape)
    return 4 * (4 * params + batch_size * activations)


def _jsonable(value):
    """Dataclasses as dicts, tuples as lists: the form JSON gives back."""
    if dataclasses.is_dataclass(value):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _build(layer, h, settings, shortcut, name):
    common = dict(dropout_rate=layer.dropout_rate, name=name)
    if layer.kind == "conv":
        return full_layers.conv_layer(
            h, layer.size, settings, kernel_size=layer.kernel_size,
            strides=layer.strides, pool=layer.pool, **common)
    if layer.kind in ("block", "bottleneck"):
        block = (full_layers.resnet_block if layer.kind == "block" else
                 full_layers.bottleneck_block)
        return block(h, layer.size, settings, strides=layer.strides,
                     shortcut=shortcut, pool=layer.pool, **common)
    return full_layers.dense_layer(h, layer.size, settings, **common)


def resnet(depth, num_classes, norm="batch_norm", shortcut="A",
           base_filters=16, dropout_rate=0.0, norm_momentum=0.99,
           renorm_schedule=None, microbatch=None, data_format="NHWC",
           strides=(1, 2, 2)):
    """The CIFAR ResNet of He et al. 2015 (section 4.2): depth = 6n + 2.

    A 3x3 conv, then 3 stages of n basic blocks with base_filters x 1, 2, 4
    filters, global average pooling and a dense layer.

    Args:
      depth: 6n + 2 (20, 32, 44, 56, 110, ...).
      num_classes: the logits' size.
      norm: "batch_norm", "batch_renorm" or None, in every block.
      shortcut: "A" (subsample and zero-pad, the paper's CIFAR choice) or
        "B" (a 1x1 projection) where a block changes size.
      base_filters: the first stage's filters.
      dropout_rate: dropout after every block.
      norm_momentum, renorm_schedule, microbatch, data_format: as `Network`.
      strides: the first block's stride in each stage (He et al.: 1, 2, 2;
        (2, 2, 2) gives maps of 14, 7 and 4 on 28x28 images).

    Returns:
      A `Network`; `network(images, training)` gives logits [N, classes].

    Raises:
      ValueError: a depth that is not 6n + 2, or strides not for 3 stages.
    """
    if not is_int(depth) or not is_int(num_classes):
        raise TypeError(f"depth and num_classes must be integers, got "
                        f"{depth!r} and {num_classes!r}")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, "
                         f"...), got {depth}")
    if len(strides) != 3:
        raise ValueError(f"strides must give the 3 stages' strides, got "
                         f"{strides!r}")
    blocks = (depth - 2) // 6
    layers = [Layer("conv", base_filters)]
    for stage in range(3):
        for index in range(blocks):
            layers.append(Layer("block", base_filters * 2 ** stage,
                                strides=1 if index else strides[stage],
                                dropout_rate=dropout_rate))
    return Network(tuple(layers), num_classes, norm=norm, shortcut=shortcut,
                   norm_momentum=norm_momentum,
                   renorm_schedule=renorm_schedule,
                   microbatch=microbatch, data_format=data_format,
                   name=f"resnet{depth}")


# He et al. 2015, Table 1: blocks per stage, and whether they are bottlenecks.
IMAGENET_STAGES = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False),
                   50: ((3, 4, 6, 3), True), 101: ((3, 4, 23, 3), True),
                   152: ((3, 8, 36, 3), True)}


def imagenet_resnet(depth, num_classes=1000, norm="batch_norm", shortcut="B",
                    norm_momentum=0.99, renorm_schedule=None, microbatch=None,
                    data_format="NHWC"):
    """The ImageNet ResNet of He et al. 2015 (Table 1): 18 or 34 layers of
    basic blocks, 50, 101 or 152 of bottleneck blocks.

    A 7x7 convolution of stride 2 to 64 filters and a 3x3 max pooling of
    stride 2 (224x224 images: 56x56 maps), four stages of blocks with 64,
    128, 256 and 512 filters (x4 out of a bottleneck), the first block of
    stages 2-4 with stride 2, global average pooling and a dense layer.
    ResNet-50 with 1,000 classes has 25,557,032 parameters.

    Args:
      depth: 18, 34, 50, 101 or 152.
      shortcut: "B" (projections where a block changes size: the paper's
        ImageNet choice) or "A" (zero padding).
      num_classes, norm, norm_momentum, renorm_schedule, microbatch,
        data_format: as `resnet`.
    """
    if depth not in IMAGENET_STAGES:
        raise ValueError(f"ImageNet ResNet depth must be one of "
                         f"{sorted(IMAGENET_STAGES)}, got {depth!r}")
    stages, bottleneck = IMAGENET_STAGES[depth]
    layers = [Layer("conv", 64, strides=2, kernel_size=7, pool="max3")]
    for stage, blocks in enumerate(stages):
        for index in range(blocks):
            layers.append(Layer(
                "bottleneck" if bottleneck else "block",
                64 * 2 ** stage * (4 if bottleneck else 1),
                strides=2 if stage and not index else 1))
    return Network(tuple(layers), num_classes, norm=norm, shortcut=shortcut,
                   norm_momentum=norm_momentum,
                   renorm_schedule=renorm_schedule, microbatch=microbatch,
                   data_format=data_format, name=f"resnet{depth}")


def parse_layers(text):
    """Layers from a spec like "conv:32:pool=max,block:64:strides=2,dense:128".

    Each comma-separated item is kind:size, then key=value options among
    strides, kernel_size, dropout (the dropout rate) and pool (max or avg).
    """
    layers = []
    for item in text.split(","):
        kind, _, rest = item.strip().partition(":")
        size, *options = rest.split(":") if rest else ("",)
        keys = [option.partition("=")[0] for option in options]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"bad layer {item!r}: option(s) {twice} given "
                             f"twice")
        try:
            kwargs = dict(option.split("=", 1) for option in options)
            fields = dict(
                strides=int(kwargs.pop("strides", 1)),
                kernel_size=int(kwargs.pop("kernel_size", 3)),
                dropout_rate=float(kwargs.pop("dropout", 0.0)),
                pool=kwargs.pop("pool", None))
            size = int(size)
        except ValueError:
            raise ValueError(f"bad layer {item!r}: expected kind:size[:key=value...], "
                             f"e.g. conv:32:pool=max") from None
        if kwargs:
            raise ValueError(f"bad layer {item!r}: unknown option(s) {sorted(kwargs)}")
        layers.append(Layer(kind, size, **fields))
    return tuple(layers)


# Small stacks for 28x28 (MNIST-sized) and 8x8 (digits) inputs.
PRESETS = {
    "mnist_small": "conv:32,block:32:pool=max,block:64:strides=2,dense:128:dropout=0.3",
    "digits_small": "conv:16,block:16,block:32:strides=2",
}


def custom(layers, num_classes, norm="batch_renorm", **kwargs):
    """A `Network` from a spec string (see `parse_layers`) or a preset name."""
    layers = PRESETS.get(layers, layers)
    return Network(parse_layers(layers) if isinstance(layers, str) else tuple(layers),
                   num_classes, norm=norm, **kwargs)
