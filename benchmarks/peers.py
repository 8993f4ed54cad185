"""ResNet-20 training throughput: this library against what a user would
otherwise pick, side by side on this machine.

    python benchmarks/peers.py                  # batch 128 and 8, ~6 min
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
`torch.autocast`, our oneDNN rewrite). Each case runs in a fresh process:
warm-up steps, then `--repeats` timed runs of `--images` images; images/s is
the median, with min and max. The peers need their own environment:

    python -m venv peers && . peers/bin/activate
    pip install -e . tf-keras==2.21.0 torch
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMETERS = 269722
IMAGES_IN_MEMORY = 1024
CASES = [("ours", "batch_renorm"), ("ours", "batch_norm"),
         ("tf_keras", "batch_norm"), ("tf_keras", "batch_renorm"),
         ("keras3", "batch_norm"), ("torch", "batch_norm")]
THREADS = os.cpu_count() or 1


def random_data(batch_dims=(IMAGES_IN_MEMORY,)):
    import numpy as np
    rng = np.random.RandomState(0)
    return (rng.rand(*batch_dims, 32, 32, 3).astype(np.float32),
            rng.randint(0, 10, batch_dims).astype(np.int64))


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


def keras_rates(keras, tf, norm, batch, precision, steps, repeats, warmup):
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
    ends = []

    class StepEnds(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            ends.append(time.perf_counter())

    model.fit(data.prefetch(2), steps_per_epoch=warmup + steps * repeats,
              epochs=1, verbose=0, callbacks=[StepEnds()])
    timed = ends[warmup - 1:]  # from the end of the last warm-up step
    return [batch * steps / (timed[(i + 1) * steps] - timed[i * steps])
            for i in range(repeats)]


def torch_rates(norm, batch, precision, steps, repeats, warmup):
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

    return timed_rates(step, batch, steps, repeats, warmup)


def our_rates(norm, batch, precision, steps, repeats, warmup):
    sys.path.insert(0, ROOT)
    from benchmarks.throughput import Case
    from resnet.session_config import session_config
    config = session_config(precision=precision, batch_size=batch,
                            image_shape=(32, 32, 3))  # resnet-run's threads
    case = Case(20, norm, batch, "synthetic", "train", config, warmup=warmup)
    rates = timed_rates(case.time_step, batch, steps, repeats, 0)
    case.session.close()
    return rates


def timed_rates(step, batch, steps, repeats, warmup):
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return rates


def check_parameters(count):
    if count != PARAMETERS:
        raise AssertionError(f"not the paper's ResNet-20: {count} parameters, "
                             f"want {PARAMETERS}")


def child(peer, norm, batch, precision, steps, repeats, warmup):
    """One case, in this process; prints its JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if peer == "torch":
        rates = torch_rates(norm, batch, precision, steps, repeats, warmup)
    elif peer == "ours":
        rates = our_rates(norm, batch, precision, steps, repeats, warmup)
    else:
        if peer == "tf_keras":
            import tf_keras as keras
        else:
            import keras
        import tensorflow as tf
        rates = keras_rates(keras, tf, norm, batch, precision, steps, repeats,
                            warmup)
    print(json.dumps({"peer": peer, "norm": norm, "batch": batch,
                      "precision": precision,
                      "images_per_second": round(statistics.median(rates), 1),
                      "min": round(min(rates), 1), "max": round(max(rates), 1)}))


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
              args.repeats, args.warmup)
        return
    missing = [peer for peer in args.peers if not installed(peer)]
    for peer in missing:
        print(f"# {peer}: not installed here, skipped (see --help)")
    print(f"{'peer':>9} {'norm':>12} {'batch':>5} {'precision':>9} "
          f"{'img/s':>8} {'min':>8} {'max':>8}", flush=True)
    results = []
    for batch in args.batch:
        for precision in args.precision:
            for peer, norm in CASES:
                if peer not in args.peers or peer in missing:
                    continue
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", peer,
                     norm, str(batch), precision, "--images", str(args.images),
                     "--repeats", str(args.repeats), "--warmup", str(args.warmup)],
                    capture_output=True, text=True, cwd=ROOT,
                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
                if out.returncode:
                    sys.exit(f"{peer} {norm} batch {batch} {precision} failed:\n"
                             f"{out.stderr[-2000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(result)
                print(f"{peer:>9} {norm:>12} {batch:>5} {precision:>9} "
                      f"{result['images_per_second']:>8.1f} "
                      f"{result['min']:>8.1f} {result['max']:>8.1f}", flush=True)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
