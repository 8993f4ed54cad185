"""ResNet-20 training and inference throughput: this library against what a
user would otherwise pick, side by side on this machine.

    python -m benchmarks.peers                  # batch 128 and 8, both precisions: ~25 min
    python -m benchmarks.peers --batch 8 --precision float32
    python -m benchmarks.peers --peers ours --our-threads 1x1 1x2 2x1 2x2 auto   # the thread grid

Peers (each skipped, with a note, when not installed):
  tf_keras    `model.fit` / `model.predict`, its fused batch norm and its
              own batch renorm, `BatchNormalization(renorm=True)`
  keras3      Keras 3 (TensorFlow backend), the same two
  torch       PyTorch, channels-last, batch norm; `torch.no_grad` inference
  ours        batch norm and batch renorm: a training step on in-memory
              batches (`TrainInput`, no augmentation), and `loop.predict`
Every case is the CIFAR ResNet-20 of He et al. (option A shortcuts, 269,722
parameters), SGD with momentum and softmax cross-entropy, on the same kind
of input: random 32x32x3 images held in memory. "bfloat16" is each
framework's own mixed precision (Keras "mixed_bfloat16", `torch.autocast`,
our oneDNN rewrite). Ours runs with the threads resnet-run picks for the
step (and, with `--our-threads`, its batch renorm also at fixed intra- x
inter-op threads, and "auto": the default again, in a process of its own,
whose ratio to the default is the method's resolution); every peer runs
once with 1 thread per op and once with all cores (`--peer-threads`), and
its faster setting is kept for the table.

Each case runs in its own process and warms up; then the cases of a batch
size and precision take turns, one block of `--images` images each per
round, for `--repeats` rounds of training and then of inference, so that
the machine's slow spells fall on all of them. images/s is the median
block. A ratio is taken round by round (this round's block time of one
case over another's), and reported as its median [min, max] over rounds.
The last lines check the speed targets with those ratios.

The TensorFlow peers run as ours does: this process imports `resnet`,
which on x86 turns oneDNN on where TensorFlow leaves it off (unless
TF_ENABLE_ONEDNN_OPTS is set), and they inherit the setting (the faster
one for them too). Each row also
gives the process's peak resident memory after its training blocks and
the fraction of the machine's peak its rate reaches (the best 2048^3
matrix product in the precision, by TensorFlow and PyTorch).

The peers need their own environment:

    python -m venv peers && . peers/bin/activate
    pip install -e . tf-keras==2.21.0 torch   # torch==2.13.0: a CPU build
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import resnet  # noqa: F401  (its oneDNN default, which every child inherits)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARAMETERS = 269722
IMAGES_IN_MEMORY = 1024
# Ours again with TF_ENABLE_ONEDNN_OPTS set (`--our-onednn`): the peer
# names these cases go by, and the setting.
OUR_ONEDNN = {"ours_onednn_on": "1", "ours_onednn_off": "0"}
CASES = [("ours", "batch_renorm"), ("ours", "batch_norm"),
         ("tf_keras", "batch_norm"), ("tf_keras", "batch_renorm"),
         ("keras3", "batch_norm"), ("keras3", "batch_renorm"),
         ("torch", "batch_norm")]
MODES = ("train", "infer")
CORES = os.cpu_count() or 1
# Issue 34's targets: (batch, mode, against, sign, bound). "ours batch
# norm": our batch renorm's step time over our batch norm's; "peers": the
# fastest peer's block time over our batch renorm's (how many times faster
# ours is); "fixed threads": each `--our-threads` setting's block time over
# our defaults' (at most 3% behind any fixed setting).
TARGETS = [(128, "train", "ours batch norm", "<=", 1.05),
           (8, "train", "ours batch norm", "<=", 1.05),
           (8, "train", "peers", ">=", 1.0),
           (128, "train", "peers", ">=", 1.0),
           (8, "train", "fixed threads", ">=", 0.97),
           (128, "train", "fixed threads", ">=", 0.97)]


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


def keras_serve(keras, tf, norm, batch, precision, threads, steps, warmup):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras_resnet20(keras, tf, renorm=norm == "batch_renorm")
    check_parameters(sum(int(tf.size(w)) for w in model.trainable_weights))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch)
    command = []

    class Blocks(keras.callbacks.Callback):
        """Times every `steps` steps after the warm-up, waiting for its turn
        before each block; leaves `fit` at the first other command."""
        start = None

        def on_train_batch_end(self, index, logs=None):
            done = index + 1 - warmup
            if done < 0 or done % steps:
                return
            report(time.perf_counter() - self.start if done else None)
            command[:] = [next_command()]
            if command[0] != "train":
                self.model.stop_training = True
            self.start = time.perf_counter()

    model.fit(data.prefetch(2), steps_per_epoch=2 ** 31 - 1, epochs=1,
              verbose=0, callbacks=[Blocks()])
    block = x[:batch * steps]
    serve({"infer": lambda: model.predict(block, batch_size=batch, verbose=0)},
          command[0])


def torch_serve(norm, batch, precision, threads, steps, warmup):
    import torch
    from torch import nn
    torch.set_num_threads(threads)

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
    bfloat16 = precision == "bfloat16"

    def next_batch():
        nonlocal position
        if position + batch > len(x):
            position = 0
        position += batch
        return x[position - batch:position], y[position - batch:position]

    def train():
        model.train()
        for _ in range(steps):
            images, labels = next_batch()
            with torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
                loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def infer():
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16,
                                             enabled=bfloat16):
            for _ in range(steps):
                model(next_batch()[0]).argmax(1)

    serve({"train": train, "infer": infer}, warm_up(train, warmup, steps))


def our_serve(norm, batch, precision, threads, steps, warmup):
    """`threads`: "INTRAxINTER" (e.g. "2x1"), or None for the threads
    resnet-run picks for the step."""
    from benchmarks.throughput import Case
    from resnet.train import loop
    from resnet.runtime.session_config import session_config
    intra, inter = map(int, threads.split("x")) if threads else (None, None)
    config = session_config(intra, inter, precision=precision,
                            batch_size=batch, image_shape=(32, 32, 3))
    data = random_data()  # the peers' images
    case = Case(20, norm, batch, "memory", "train", config, warmup=warmup,
                with_inference=True, data=data)
    block = data[0][:batch * steps]

    def infer():
        loop.predict(case.session, case.inference, block, batch)

    serve({"train": lambda: [case.time_step() for _ in range(steps)],
           "infer": infer}, next_command(after_warmup=True))


def warm_up(train, warmup, steps):
    """Runs ~`warmup` steps, says ready; returns the first command."""
    for _ in range(max(1, warmup // steps)):
        train()
    return next_command(after_warmup=True)


def serve(work, command, warm=("train",)):
    """At each command ("train", "infer") times one block of that work,
    after an untimed one the first time unless it is `warm` (training is
    warmed up before "ready"); "memory" answers the peak resident memory so
    far, in MiB."""
    warm = set(warm)
    while command:
        if command == "memory":
            report(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            command = next_command()
            continue
        if command not in warm:
            work[command]()
            warm.add(command)
        start = time.perf_counter()
        work[command]()
        report(time.perf_counter() - start)
        command = next_command()


def report(seconds):
    """To the parent: "ready" after the warm-up, then each block's seconds."""
    print("ready" if seconds is None else repr(seconds), flush=True)


def next_command(after_warmup=False):
    """The parent's next command ("train", "infer"), "" at the end."""
    if after_warmup:
        report(None)
    return sys.stdin.readline().strip()


def resnet20_flops(mode):
    """Floating-point operations per image of ResNet-20's convolutions and
    dense layer, 2 per multiply-add (the norms, ReLUs and additions are
    under 1% more): the forward pass for "infer"; for "train" also the
    input gradient (of every layer but the first) and the weight gradient,
    each as many as the forward pass."""
    convs = ([(32, 3, 16)] + [(32, 16, 16)] * 6 + [(16, 16, 32)]
             + [(16, 32, 32)] * 5 + [(8, 32, 64)] + [(8, 64, 64)] * 5)
    macs = [size * size * 9 * cin * cout for size, cin, cout in convs]
    forward = 2 * (sum(macs) + 64 * 10)
    return forward if mode == "infer" else 3 * forward - 2 * macs[0]


def matmul_gflops(framework, precision, n=2048, runs=10):
    """The best of `runs` [n, n] x [n, n] products in `precision` on all
    cores, GFLOP/s, by "tensorflow" (a graph, as ours runs) or "torch"."""
    seconds = []
    if framework == "torch":
        import torch
        torch.set_num_threads(CORES)
        a, b = (torch.randn(n, n, dtype=getattr(torch, precision))
                for _ in range(2))
        for _ in range(runs + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            seconds.append(time.perf_counter() - start)
    else:
        import tensorflow as tf
        tf1 = tf.compat.v1
        with tf.Graph().as_default():
            a, b = (tf1.Variable(tf.cast(tf.random.uniform([n, n]),
                                         precision)) for _ in range(2))
            product = tf.matmul(a, b).op  # run, not fetched
            config = tf1.ConfigProto(intra_op_parallelism_threads=CORES,
                                     inter_op_parallelism_threads=1)
            with tf1.Session(config=config) as session:
                session.run(tf1.global_variables_initializer())
                for _ in range(runs + 1):
                    start = time.perf_counter()
                    session.run(product)
                    seconds.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(seconds[1:]) / 1e9


def machine_peak(precision, frameworks):
    """{name: GFLOP/s} of `matmul_gflops` for each (name, framework, env),
    each in its own process (TensorFlow and PyTorch crash together)."""
    peaks = {}
    for name, framework, env in frameworks:
        code = ("from benchmarks.peers import matmul_gflops; "
                f"print(matmul_gflops({framework!r}, {precision!r}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                             capture_output=True, text=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                      **env))
        if out.returncode == 0:
            peaks[name] = float(out.stdout.split()[-1])
        else:
            print(f"# peak by {name} ({precision}) failed, left out: "
                  f"{out.stderr.strip()[-300:]}")
    return peaks


def check_parameters(count):
    if count != PARAMETERS:
        raise AssertionError(f"not the paper's ResNet-20: {count} parameters, "
                             f"want {PARAMETERS}")


def child(peer, norm, batch, precision, threads, steps, warmup):
    """One case in this process, timed a block at a time when the parent
    says "train" or "infer" on stdin. `threads`: a peer's intra-op threads
    ("0": its default), ours "INTRAxINTER" ("0" or "auto": resnet-run's)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if peer == "ours":
        our_serve(norm, batch, precision,
                  None if threads in ("0", "auto") else threads, steps, warmup)
        return
    threads = int(threads)
    if peer == "torch":
        torch_serve(norm, batch, precision, threads, steps, warmup)
    else:
        if peer == "tf_keras":
            import tf_keras as keras
        else:
            import keras
        import tensorflow as tf
        keras_serve(keras, tf, norm, batch, precision, threads, steps, warmup)


class Running:
    """A case in its own process, waiting for its turns."""

    def __init__(self, peer, norm, batch, precision, threads, args):
        self.key = {"peer": peer, "norm": norm, "batch": batch,
                    "precision": precision, "threads": threads}
        self.batch, self.steps = batch, max(2, args.images // batch)
        self.seconds = {mode: [] for mode in MODES}
        self.peak_mib = None
        self.log = tempfile.TemporaryFile("w+")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if peer in OUR_ONEDNN:  # ours with oneDNN on or off
            env["TF_ENABLE_ONEDNN_OPTS"] = OUR_ONEDNN[peer]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers", "--child",
             "ours" if peer.startswith("ours") else peer, norm, str(batch),
             precision, str(threads or 0), "--images", str(args.images),
             "--warmup", str(args.warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, cwd=ROOT, env=env)

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

    def turn(self, mode):
        self.process.stdin.write(mode + "\n")
        self.process.stdin.flush()
        self.seconds[mode].append(self.answer())

    def measure_memory(self):
        self.process.stdin.write("memory\n")
        self.process.stdin.flush()
        self.peak_mib = self.answer()

    def stop(self):
        self.process.stdin.close()
        self.process.wait()

    def rates(self, mode):
        rates = [self.batch * self.steps / s for s in self.seconds[mode]]
        return statistics.median(rates), min(rates), max(rates)


def ratio(numerator, denominator, mode):
    """Median, min and max over rounds of numerator's block time over
    denominator's (imported here, as in `cpu`)."""
    from benchmarks.throughput import paired_ratio
    return paired_ratio(numerator.seconds[mode], denominator.seconds[mode])


def installed(peer):
    module = {"tf_keras": "tf_keras", "keras3": "keras",
              "torch": "torch"}.get(peer, "tensorflow")
    code = f"import importlib.util, sys; sys.exit(not importlib.util.find_spec({module!r}))"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def cpu():
    """The machine's CPU, named as our figures name it (imported here: a
    torch child must not import TensorFlow, the two crash together)."""
    from resnet.runtime.session_config import cpu_description
    return cpu_description()


def run_group(batch, precision, peers, args):
    """Every case of one batch size and precision, taking turns; returns
    {(peer, norm): the Running kept (a peer's faster thread setting)}."""
    cases = [(peer, norm) for peer, norm in CASES if peer in peers]
    cases[2:2] = [(f"ours_onednn_{setting}", norm) for setting in args.our_onednn
                  for norm in ("batch_renorm", "batch_norm") if "ours" in peers]
    fixed = {f"ours_{threads}": threads for threads in args.our_threads
             if "ours" in peers}
    cases[2:2] = [(peer, "batch_renorm") for peer in fixed]
    group = [Running(peer, norm, batch, precision, threads, args)
             for peer, norm in cases
             for threads in ([fixed.get(peer)] if peer.startswith("ours")
                             else args.peer_threads)]
    for case in group:
        case.answer()  # ready: built and warmed up
    for mode in MODES:
        for _ in range(args.repeats + 1):
            for case in group:  # in turns: slow spells hit all alike
                # A pause first: threads that spin after their work (PyTorch's
                # OpenMP threads, for ~0.2 s) would slow the next case.
                time.sleep(args.pause)
                case.turn(mode)
        for case in group:
            # The first round is not timed: the processes just built their
            # graphs may still be busy (one ours block took 60 s there).
            del case.seconds[mode][0]
            if mode == "train":  # the peak of a training process
                case.measure_memory()
    for case in group:
        case.stop()
    kept = {}
    for case in group:
        name = (case.key["peer"], case.key["norm"])
        if name not in kept or case.rates("train")[0] > kept[name].rates("train")[0]:
            kept[name] = case
    return kept


def print_group(kept, batch, precision, peak):
    """The group's table rows; returns them as dicts. `peak`: the machine's
    GFLOP/s in this precision (None: not measured)."""
    ours, results = kept.get(("ours", "batch_renorm")), []
    for mode in MODES:
        for (peer, norm), case in kept.items():
            median, low, high = case.rates(mode)
            of_peak = peak and median * resnet20_flops(mode) / (peak * 1e9)
            memory = case.peak_mib if mode == "train" else None
            line = (f"{mode:>5} {peer:>15} {norm:>12} {batch:>5} "
                    f"{precision:>9} {case.key['threads'] or 'auto':>7} "
                    f"{median:>8.1f} {low:>8.1f} {high:>8.1f} "
                    + (f"{of_peak:>5.1%} " if peak else f"{'-':>5} ")
                    + (f"{memory:>6.0f}" if memory else f"{'':>6}"))
            if ours and case is not ours:
                line += " {:>6.3f} [{:.3f}, {:.3f}]".format(*ratio(case, ours, mode))
            print(line, flush=True)
            results.append(dict(case.key, mode=mode,
                                images_per_second=round(median, 1),
                                min=round(low, 1), max=round(high, 1),
                                fraction_of_peak=peak and round(of_peak, 4),
                                peak_mib=memory and round(memory, 1)))
    return results


def check_targets(groups):
    """Issue 34's targets, each against the ratios of one group."""
    print("# targets: ratios per round, median [min, max]")
    for batch, mode, against, sign, bound in TARGETS:
        for (b, precision), kept in groups.items():
            ours = kept.get(("ours", "batch_renorm"))
            if b != batch or not ours:
                continue
            if against == "ours batch norm":
                if ("ours", "batch_norm") not in kept:
                    continue
                what = "our batch renorm / batch norm, step time"
                got = ratio(ours, kept[("ours", "batch_norm")], mode)
            else:
                threads = against == "fixed threads"
                fixed = [case for (peer, _), case in kept.items()
                         if peer.startswith("ours_") and case.key["threads"]
                         not in (None, "auto")]
                peers = [case for (peer, _), case in kept.items()
                         if not peer.startswith("ours")]
                again = kept.get(("ours_auto", "batch_renorm"))
                if threads and again:
                    got = ratio(again, ours, mode)
                    print(f"{mode} batch {batch} {precision}: our default "
                          f"threads / the same again (the method's "
                          f"resolution), speed {got[0]:.3f} [{got[1]:.3f}, "
                          f"{got[2]:.3f}]")
                rivals = fixed if threads else peers
                if not rivals:
                    continue
                # The fastest peer by its median rate; the fixed setting
                # the default does worst against, round by round.
                best = (min(rivals, key=lambda case: ratio(case, ours, mode))
                        if threads else
                        max(rivals, key=lambda case: case.rates(mode)[0]))
                what = (f"our default threads / the worst-for-it fixed "
                        f"setting ({best.key['threads']}), speed" if threads
                        else f"our batch renorm / fastest peer "
                        f"({best.key['peer']} {best.key['norm']}), speed")
                got = ratio(best, ours, mode)
            met = got[0] <= bound if sign == "<=" else got[0] >= bound
            print(f"{mode} batch {batch} {precision}: {what} {got[0]:.3f} "
                  f"[{got[1]:.3f}, {got[2]:.3f}]; target {sign} {bound}: "
                  f"{'met' if met else 'missed'}")


def _threads(text):
    if text == "auto":
        return text
    try:
        intra, inter = map(int, text.split("x"))
    except ValueError:
        intra = inter = 0
    if intra < 1 or inter < 1:
        raise argparse.ArgumentTypeError(
            f"expected INTRAxINTER (e.g. 2x1) or auto, got {text!r}")
    return f"{intra}x{inter}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8])
    p.add_argument("--precision", nargs="+", default=["float32", "bfloat16"],
                   choices=("float32", "bfloat16"))
    p.add_argument("--peers", nargs="+", default=sorted({c[0] for c in CASES}),
                   choices=sorted({c[0] for c in CASES}))
    p.add_argument("--peer-threads", type=int, nargs="+",
                   default=sorted({1, CORES}),
                   help="intra-op threads each peer is tried with (default "
                        "1 and all cores); the faster is kept")
    p.add_argument("--images", type=int, default=512,
                   help="images per timed block (default 512)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--our-onednn", nargs="*", default=[],
                   choices=("on", "off"),
                   help="also run ours with TF_ENABLE_ONEDNN_OPTS=1 (on) "
                        "or 0 (off): TensorFlow's default leaves oneDNN off "
                        "on CPUs without AVX512_VNNI or newer")
    p.add_argument("--our-threads", nargs="*", default=[],
                   type=_threads, metavar="INTRAxINTER",
                   help="also run our batch renorm at these fixed threads "
                        "(e.g. 1x1 1x2 2x1 2x2), against the threads "
                        "resnet-run picks; 'auto': those again, for the "
                        "method's resolution")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds between two cases' blocks (default 0.5)")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS,
                   metavar=("PEER", "NORM", "BATCH", "PRECISION", "THREADS"))
    args = p.parse_args(argv)
    args.our_threads = list(dict.fromkeys(args.our_threads))  # each once
    if args.child:
        peer, norm, batch, precision, threads = args.child
        batch = int(batch)
        child(peer, norm, batch, precision, threads,
              max(2, args.images // batch), args.warmup)
        return
    missing = [peer for peer in args.peers if not installed(peer)]
    for peer in missing:
        print(f"# {peer}: not installed here, skipped (see --help)")
    print(f"# {cpu()}")
    peers = [peer for peer in args.peers if peer not in missing]
    frameworks = [("tensorflow", "tensorflow", {})] + [
        (f"tensorflow, oneDNN {setting}", "tensorflow",
         {"TF_ENABLE_ONEDNN_OPTS": OUR_ONEDNN[f"ours_onednn_{setting}"]})
        for setting in args.our_onednn] + (
        [("torch", "torch", {})] if "torch" in peers else [])
    peaks = {precision: machine_peak(precision, frameworks)
             for precision in args.precision}
    for precision, found in peaks.items():
        print(f"# peak, {precision}: the best of {CORES}-core 2048^3 matrix "
              "products, GFLOP/s: " + ", ".join(
                  f"{name} {gflops:.1f}" for name, gflops in found.items()))
    print(f"# ResNet-20, FLOPs per image: training "
          f"{resnet20_flops('train') / 1e6:.1f} M, inference "
          f"{resnet20_flops('infer') / 1e6:.1f} M")
    print(f"{'mode':>5} {'peer':>15} {'norm':>12} {'batch':>5} "
          f"{'precision':>9} {'threads':>7} {'img/s':>8} {'min':>8} "
          f"{'max':>8} {'peak':>5} {'MiB':>6}  ours renorm / this, speed",
          flush=True)
    groups, results = {}, []
    for batch in args.batch:
        for precision in args.precision:
            groups[batch, precision] = run_group(batch, precision, peers, args)
            results += print_group(groups[batch, precision], batch, precision,
                                   max(peaks[precision].values(), default=None))
    check_targets(groups)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
