"""ResNet-20 training throughput: this library against what a user would
otherwise pick, side by side on this machine.

    python benchmarks/peers.py                  # batch 128 and 8
    python benchmarks/peers.py --batch 8 --precision float32

Peers (each skipped, with a note, when not installed):
  tf_keras    `model.fit` with its fused batch norm, and with its own
              (unfused) batch renorm, `BatchNormalization(renorm=True)`
  keras3      Keras 3 `model.fit` (TensorFlow backend), batch norm
  torch       PyTorch, channels-last, batch norm
  ours        `benchmarks/throughput.py`'s training step, batch norm and
              batch renorm
Every case is the CIFAR ResNet-20 of He et al. (option A shortcuts, 269,722
parameters), SGD with momentum and softmax cross-entropy, on random
in-memory 32x32x3 images; the peers use as many threads as the machine has
cores, ours the threads resnet-run picks for the step (session_config);
"bfloat16" is each framework's own mixed precision (Keras "mixed_bfloat16",
`torch.autocast`, our oneDNN rewrite). Each case runs in its own process,
warms up, then times blocks of `--images` images: the cases of a batch size
and precision take turns, a block each per round for `--repeats` rounds, so
that the machine's slow spells fall on all of them. images/s is the median
block, with min and max; the last column is how many times faster our batch
renorm ran than the case, the median over rounds of their time ratio. The
peers need their own environment:

    python -m venv peers && . peers/bin/activate
    pip install -e . tf-keras==2.21.0 torch
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMETERS = 269722
IMAGES_IN_MEMORY = 1024
CASES = [("ours", "batch_renorm"), ("ours", "batch_norm"),
         ("tf_keras", "batch_norm"), ("tf_keras", "batch_renorm"),
         ("keras3", "batch_norm"), ("torch", "batch_norm")]
THREADS = os.cpu_count() or 1


def random_data():
    """IMAGES_IN_MEMORY random 32x32x3 images and labels."""
    import numpy as np
    rng = np.random.RandomState(0)
    return (rng.rand(IMAGES_IN_MEMORY, 32, 32, 3).astype(np.float32),
            rng.randint(0, 10, IMAGES_IN_MEMORY).astype(np.int64))


def keras_resnet20(keras, tf, renorm):
    """ResNet-20 in the Keras API that `keras` (Keras 3 or tf_keras) has."""
    layers = keras.layers

    def norm(h):
        extra = {"renorm": True} if renorm else {}
        return layers.BatchNormalization(momentum=0.99, epsilon=1e-3, **extra)(h)

    def conv(h, filters, strides=1):
        return layers.Conv2D(filters, 3, strides, padding="same", use_bias=False,
                             kernel_initializer="he_normal")(h)

    def shortcut_a(h, filters):
        extra = filters - h.shape[-1]
        return layers.Lambda(lambda t: tf.pad(
            t[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0],
                                [extra // 2, extra - extra // 2]]))(h)

    images = keras.Input((32, 32, 3))
    h = layers.ReLU()(norm(conv(images, 16)))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage and not block else 1
            skip = shortcut_a(h, filters) if strides == 2 else h
            y = layers.ReLU()(norm(conv(h, filters, strides)))
            y = norm(conv(y, filters))
            h = layers.ReLU()(layers.Add()([y, skip]))
    h = layers.GlobalAveragePooling2D()(h)
    logits = layers.Dense(10, dtype="float32")(h)
    return keras.Model(images, logits)


def keras_serve(keras, tf, norm, batch, precision, steps, warmup):
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras_resnet20(keras, tf, renorm=norm == "batch_renorm")
    check_parameters(sum(int(tf.size(w)) for w in model.trainable_weights))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch)

    class Blocks(keras.callbacks.Callback):
        """Times every `steps` steps after the warm-up, waiting for its turn
        before each block."""
        start = None

        def on_train_batch_end(self, index, logs=None):
            done = index + 1 - warmup
            if done < 0 or done % steps:
                return
            report(time.perf_counter() - self.start if done else None)
            if not my_turn():
                self.model.stop_training = True
            self.start = time.perf_counter()

    model.fit(data.prefetch(2), steps_per_epoch=2 ** 31 - 1, epochs=1,
              verbose=0, callbacks=[Blocks()])


def torch_serve(norm, batch, precision, steps, warmup):
    import torch
    from torch import nn
    torch.set_num_threads(THREADS)

    class Block(nn.Module):
        def __init__(self, cin, cout, strides):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, strides, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
            self.strides, self.extra = strides, cout - cin

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            skip = x
            if self.strides == 2:  # option A: subsample, zero-pad channels
                e = self.extra
                skip = nn.functional.pad(x[:, :, ::2, ::2],
                                         (0, 0, 0, 0, e // 2, e - e // 2))
            return torch.relu(y + skip)

    blocks, cin = [], 16
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            blocks.append(Block(cin, filters, 2 if stage and not block else 1))
            cin = filters
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False),
                          nn.BatchNorm2d(16, eps=1e-3, momentum=0.01),
                          nn.ReLU(), *blocks, nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10))
    check_parameters(sum(p.numel() for p in model.parameters()))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = random_data()
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last)
    y = torch.from_numpy(y)
    position = 0

    def step():
        nonlocal position
        if position + batch > len(x):
            position = 0
        images, labels = x[position:position + batch], y[position:position + batch]
        position += batch
        with torch.autocast("cpu", torch.bfloat16,
                            enabled=precision == "bfloat16"):
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    serve(step, steps, warmup)


def our_serve(norm, batch, precision, steps, warmup):
    sys.path.insert(0, ROOT)
    from benchmarks.throughput import Case
    from resnet.session_config import session_config
    config = session_config(precision=precision, batch_size=batch,
                            image_shape=(32, 32, 3))  # resnet-run's threads
    case = Case(20, norm, batch, "synthetic", "train", config, warmup=warmup)
    serve(case.time_step, steps, 0)


def serve(step, steps, warmup):
    """Warm-up steps, then a timed block of `steps` steps at each turn."""
    for _ in range(warmup):
        step()
    report(None)
    while my_turn():
        start = time.perf_counter()
        for _ in range(steps):
            step()
        report(time.perf_counter() - start)


def report(seconds):
    """To the parent: "ready" after the warm-up, then each block's seconds."""
    print("ready" if seconds is None else repr(seconds), flush=True)


def my_turn():
    return sys.stdin.readline().strip() == "go"


def check_parameters(count):
    if count != PARAMETERS:
        raise AssertionError(f"not the paper's ResNet-20: {count} parameters, "
                             f"want {PARAMETERS}")


def child(peer, norm, batch, precision, steps, warmup):
    """One case in this process, timed a block at a time when the parent
    says "go" on stdin."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if peer == "torch":
        torch_serve(norm, batch, precision, steps, warmup)
    elif peer == "ours":
        our_serve(norm, batch, precision, steps, warmup)
    else:
        if peer == "tf_keras":
            import tf_keras as keras
        else:
            import keras
        import tensorflow as tf
        keras_serve(keras, tf, norm, batch, precision, steps, warmup)


class Running:
    """A case in its own process, waiting for its turns."""

    def __init__(self, peer, norm, batch, precision, args):
        self.key = {"peer": peer, "norm": norm, "batch": batch,
                    "precision": precision}
        self.batch, self.steps = batch, max(2, args.images // batch)
        self.seconds, self.log = [], tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", peer, norm,
             str(batch), precision, "--images", str(args.images),
             "--warmup", str(args.warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    def answer(self):
        for line in self.process.stdout:  # skipping anything else printed
            if line.strip() == "ready":
                return None
            try:
                return float(line)
            except ValueError:
                continue
        self.log.seek(0)
        sys.exit(f"{self.key} failed:\n{self.log.read()[-3000:]}")

    def turn(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self.seconds.append(self.answer())

    def stop(self):
        self.process.stdin.close()
        self.process.wait()
        rates = [self.batch * self.steps / s for s in self.seconds]
        return dict(self.key, images_per_second=round(statistics.median(rates), 1),
                    min=round(min(rates), 1), max=round(max(rates), 1))


def installed(peer):
    module = {"tf_keras": "tf_keras", "keras3": "keras", "torch": "torch",
              "ours": "tensorflow"}[peer]
    code = f"import importlib.util, sys; sys.exit(not importlib.util.find_spec({module!r}))"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8])
    p.add_argument("--precision", nargs="+", default=["float32", "bfloat16"],
                   choices=("float32", "bfloat16"))
    p.add_argument("--peers", nargs="+", default=sorted({c[0] for c in CASES}))
    p.add_argument("--images", type=int, default=512,
                   help="images per timed repeat (default 512)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--child", nargs=4, metavar=("PEER", "NORM", "BATCH", "PRECISION"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        peer, norm, batch, precision = args.child
        batch = int(batch)
        child(peer, norm, batch, precision, max(2, args.images // batch),
              args.warmup)
        return
    missing = [peer for peer in args.peers if not installed(peer)]
    for peer in missing:
        print(f"# {peer}: not installed here, skipped (see --help)")
    print(f"{'peer':>9} {'norm':>12} {'batch':>5} {'precision':>9} "
          f"{'img/s':>8} {'min':>8} {'max':>8}  ours renorm / this", flush=True)
    results = []
    for batch in args.batch:
        for precision in args.precision:
            group = [Running(peer, norm, batch, precision, args)
                     for peer, norm in CASES
                     if peer in args.peers and peer not in missing]
            for case in group:
                case.answer()  # ready: built and warmed up
            for _ in range(args.repeats):
                for case in group:  # in turns: slow spells hit all alike
                    case.turn()
            ours = group[0] if group[0].key["peer"] == "ours" else None
            for case in group:
                result = case.stop()
                if ours:  # step-time ratio of the peer to ours, round by round
                    result["speedup_of_our_renorm"] = round(statistics.median(
                        b / a for a, b in zip(ours.seconds, case.seconds)), 3)
                results.append(result)
                print(f"{result['peer']:>9} {result['norm']:>12} {batch:>5} "
                      f"{precision:>9} {result['images_per_second']:>8.1f} "
                      f"{result['min']:>8.1f} {result['max']:>8.1f}  "
                      f"{result.get('speedup_of_our_renorm', '')}", flush=True)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
