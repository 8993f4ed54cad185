"""Storage: a model directory (its lock, checkpoints and records), atomic
files, and the SavedModel export."""
