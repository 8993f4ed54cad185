"""Data: the datasets in their original formats, the in-graph training
input (order, groups, augmentation) and checks of arrays fed to a model."""
