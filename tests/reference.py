"""NumPy float64 reference of Algorithm 1 (Ioffe 2017), independent of TF."""
import numpy as np


def renorm_train_step(x, state, gamma, beta, rmax, dmax, momentum, epsilon):
    """One training step. Returns (y, r, d, new_state); state = (mu, sigma);
    momentum: the moving statistics' decay at this step (`average_decay`).

    rmax = 1, dmax = 0 is plain batch normalization.
    """
    mu, sigma = state
    axes = tuple(range(x.ndim - 1))
    batch_mean = x.mean(axis=axes)
    batch_std = np.sqrt(x.var(axis=axes) + epsilon)  # biased variance
    r = np.clip(batch_std / sigma, 1.0 / rmax, rmax)
    d = np.clip((batch_mean - mu) / sigma, -dmax, dmax)
    x_hat = (x - batch_mean) / batch_std * r + d
    alpha = 1.0 - momentum
    new_state = (mu + alpha * (batch_mean - mu),
                 sigma + alpha * (batch_std - sigma))
    return gamma * x_hat + beta, r, d, new_state


def average_decay(momentum, step):
    """The moving statistics' decay at a global step: the paper's constant
    momentum once (1 + step) / (10 + step) exceeds it, that ratio before."""
    return min(momentum, (1.0 + step) / (10.0 + step))


def renorm_inference(x, state, gamma, beta):
    mu, sigma = state
    return gamma * (x - mu) / sigma + beta


def renorm_loss(x, weights, gamma, beta, r, d, epsilon):
    """sum(weights * y) with r and d held constant: what backprop sees."""
    axes = tuple(range(x.ndim - 1))
    batch_mean = x.mean(axis=axes)
    batch_std = np.sqrt(x.var(axis=axes) + epsilon)
    y = gamma * ((x - batch_mean) / batch_std * r + d) + beta
    return float(np.sum(weights * y))


def numeric_gradient(f, value, delta=1e-6):
    """Central finite differences of the scalar f at every entry of value."""
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        saved = value[index]
        value[index] = saved + delta
        up = f(value)
        value[index] = saved - delta
        down = f(value)
        value[index] = saved
        grad[index] = (up - down) / (2 * delta)
    return grad


def grouped_train_step(x, state, gamma, beta, rmax, dmax, momentum, epsilon,
                       microbatch):
    """Algorithm 1 on each group of `microbatch` consecutive examples; the
    moving statistics move toward the mean of the groups' statistics.
    Returns (y, r per group, d per group, new_state)."""
    mu, sigma = state
    ys, rs, ds, means, stds = [], [], [], [], []
    for start in range(0, len(x), microbatch):
        # momentum 0: the "new state" is the group's own mean and std.
        y, r, d, (mean, std) = renorm_train_step(
            x[start:start + microbatch], state, gamma, beta, rmax, dmax,
            0.0, epsilon)
        ys.append(y), rs.append(r), ds.append(d)
        means.append(mean), stds.append(std)
    alpha = 1.0 - momentum
    new_state = (mu + alpha * (np.mean(means, axis=0) - mu),
                 sigma + alpha * (np.mean(stds, axis=0) - sigma))
    return np.concatenate(ys), np.array(rs), np.array(ds), new_state
