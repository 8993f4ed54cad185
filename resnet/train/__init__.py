"""Training: the run's configuration, the optimisation (learning rate, loss,
train op), the graphs of each mode, the loop and its hooks, signals."""
