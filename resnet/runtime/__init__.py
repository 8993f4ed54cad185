"""Runtime: session settings (threads, precision, XLA), the CPU's flags,
the quiet TensorFlow import, and the data-parallel cluster."""
