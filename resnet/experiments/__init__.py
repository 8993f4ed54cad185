"""The batch renorm paper's experiments: arms x seeds of a network trained
on one setup, their curves, final accuracies and diagnostics
(`harness`), their tables and plots (`report`), and the command line the
example scripts share (`cli`).

Typical use (examples/renorm_microbatch.py):
    from resnet.experiments import Arm, Setup, main
    arms = [Arm("batch norm", "batch_norm"),
            Arm("batch renorm, microbatches of 4", "batch_renorm",
                microbatch=4)]
    main(__doc__, arms, Setup(dataset="fashion_mnist", epochs=2),
         "results/microbatch")

Importing it imports TensorFlow, without its C++ start-up lines.
"""
from resnet.experiments.cli import main
from resnet.experiments.harness import Arm, Setup, run

__all__ = ["Arm", "Setup", "main", "run"]
