"""A pure-NumPy network (im2col convolutions): the benchmark's baseline for whole training runs.

The layers are the ones ``scripts/benchmark.py`` compares (Conv2d, ReLU,
MaxPool2d, Flatten, Linear), built on the im2col functions of
``_numpy_im2col.py``, with PyTorch's semantics: the same state-dict keys and
layouts, mean cross-entropy, and ``torch.optim.SGD``'s momentum rule, so that
one set of initial weights gives the three libraries the same starting point.
Written the way a competent NumPy user would write it (one BLAS product per
layer and batch, vectorised everything), not as a strawman.
"""
import numpy as np

import _numpy_im2col as ops


class Conv2d:
    def __init__(self, padding, needs_input_grad=True):
        self.padding, self.needs_input_grad = padding, needs_input_grad
        self.weight = self.bias = None

    def params(self):
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x):
        self.x = x
        return ops.conv2d(x, self.weight, self.bias, padding=self.padding)

    def backward(self, grad_out):
        grad_x, self.grad_weight, self.grad_bias = ops.conv2d_backward(
            grad_out, self.x, self.weight, padding=self.padding,
            needs_input_grad=self.needs_input_grad)
        return grad_x

    def grads(self):
        return {"weight": self.grad_weight, "bias": self.grad_bias}


class ReLU:
    def forward(self, x):
        self.positive = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out):
        return grad_out * self.positive


class MaxPool2d:
    def __init__(self, kernel_size):
        self.kernel_size = kernel_size

    def forward(self, x):
        self.x_shape = x.shape
        out, self.indices = ops.max_pool2d(x, self.kernel_size, return_indices=True)
        return out

    def backward(self, grad_out):
        return ops.max_pool2d_backward(grad_out, self.indices, self.x_shape)


class Flatten:
    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad_out):
        return grad_out.reshape(self.x_shape)


class Linear:
    def __init__(self):
        self.weight = self.bias = None

    def params(self):
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad_out):
        self.grad_weight = grad_out.T @ self.x
        self.grad_bias = grad_out.sum(axis=0)
        return grad_out @ self.weight

    def grads(self):
        return {"weight": self.grad_weight, "bias": self.grad_bias}


class Network:
    """Layers in a row; ``load_state_dict`` takes PyTorch's keys (``"0.weight"``, ...)."""

    def __init__(self, layers):
        self.layers = layers

    def load_state_dict(self, state):
        for i, layer in enumerate(self.layers):
            for name in getattr(layer, "params", dict)():
                setattr(layer, name, np.array(state[f"{i}.{name}"], dtype=np.float32))

    def state_dict(self):
        return {f"{i}.{name}": value for i, layer in enumerate(self.layers)
                for name, value in getattr(layer, "params", dict)().items()}

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)


def cross_entropy(logits, y):
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -log_p[np.arange(n), y].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), y] -= 1
    return float(loss), grad / n


class SGD:
    """torch.optim.SGD with momentum: buf = momentum * buf + grad; p -= lr * buf."""

    def __init__(self, network, lr, momentum):
        self.network, self.lr, self.momentum = network, lr, momentum
        self.buffers = {}

    def step(self):
        for i, layer in enumerate(self.network.layers):
            if not hasattr(layer, "grads"):
                continue
            for name, grad in layer.grads().items():
                buf = self.buffers.get((i, name))
                if buf is None:
                    buf = self.buffers[(i, name)] = grad.copy()
                else:
                    buf *= self.momentum
                    buf += grad
                getattr(layer, name)[...] -= self.lr * buf
