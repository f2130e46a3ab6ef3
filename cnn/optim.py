"""Optimisers and learning-rate schedules with PyTorch's update rules.

An optimiser sees only the parameters (objects with ``.data`` and ``.grad``
ndarrays, e.g. ``model.parameters()``) and updates ``.data`` in place, so the
layers that hold those arrays see the new values::

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
    for epoch in range(epochs):
        for x, y in batches:
            optimizer.zero_grad()
            loss = loss_fn(model.forward(x), y)
            model.backward(loss_fn.backward())
            optimizer.step()
        scheduler.step()

The arithmetic follows ``torch.optim`` step for step (the same operations in
the same order), so trajectories agree with PyTorch's to rounding (PyTorch's
CPU kernels fuse ``p + alpha * g`` into one rounding where NumPy rounds twice,
so the last bit may differ). There is a
single learning rate, ``optimizer.lr``, which is what the schedules change
(PyTorch's parameter groups are not needed here).

``state_dict()`` has PyTorch's layout (``{"state": {index: {...}},
"param_groups": [{...}]}``) with NumPy arrays in place of tensors.
"""
import math
import numbers

import numpy as np

from .functional import _int

__all__ = ["Optimizer", "SGD", "Adam", "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------


def _real(value, name, minimum=None, below=None):
    """value as a float; TypeError for non-numbers, ValueError outside [minimum, below)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    # written as `not (... )` so that NaN fails too
    if minimum is not None and not value >= minimum:
        raise ValueError(f"Invalid {name}: {value} (must be >= {minimum})")
    if below is not None and not value < below:
        raise ValueError(f"Invalid {name}: {value} (must be < {below})")
    return value


# --------------------------------------------------------------------------
# Optimisers
# --------------------------------------------------------------------------


class Optimizer:
    """Base class: holds the parameter list, the learning rate and per-parameter state.

    Parameters
    ----------
    params : iterable of Parameter
        Objects with ``.data`` and ``.grad`` ndarrays of the same shape.
    lr : float
        The learning rate; ``optimizer.lr`` may be changed between steps.
    """

    # names of the hyper-parameters that go into state_dict()["param_groups"]
    _hyperparameters = ()
    # names of the per-parameter state arrays (in state_dict()["state"][i])
    _state_keys = ()

    def __init__(self, params, lr):
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError("params must be an iterable of parameters (e.g. "
                            "model.parameters()), got a single parameter")
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(self.params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"params[{i}] must have .data and .grad, got "
                                f"{type(p).__name__}")
        if len({id(p) for p in self.params}) != len(self.params):
            # a parameter listed twice would be updated twice per step
            raise ValueError("params contains the same parameter more than once")
        self.lr = _real(lr, "learning rate", minimum=0.0)
        # one dict per parameter, filled on the first step (as PyTorch's lazy state)
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Set every parameter's gradient to zero (in place: layers keep their arrays)."""
        for p in self.params:
            if p.grad is not None:
                p.grad[...] = 0

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _grads(self, maximize):
        """(index, param, grad) for each parameter that has a gradient; -grad to maximise."""
        for i, p in enumerate(self.params):
            if p.grad is None:  # PyTorch skips parameters without a gradient too
                continue
            yield i, p, (-p.grad if maximize else p.grad)

    def __repr__(self):
        settings = "".join(f"\n    {name}: {getattr(self, name)}"
                           for name in ("lr",) + self._hyperparameters)
        return f"{type(self).__name__} ({settings}\n)"

    # ---------------------------------------------------------------- state

    def state_dict(self):
        """The optimiser's state in PyTorch's layout, with copies of the arrays.

        Returns
        -------
        dict
            ``{"state": {i: {name: value}}, "param_groups": [{"lr": ..., ...,
            "params": [0, 1, ...]}]}``; ``i`` indexes the parameter list.
        """
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        group = {"lr": self.lr}
        group.update({name: getattr(self, name) for name in self._hyperparameters})
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict()`` returned (hyper-parameters and buffers).

        Raises
        ------
        ValueError
            If the number of parameters or a buffer's shape does not match.
        """
        groups = state_dict["param_groups"]
        if len(groups) != 1:
            raise ValueError(f"expected one parameter group, got {len(groups)}")
        group = groups[0]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"state_dict is for {len(group['params'])} parameters, "
                             f"this optimizer has {len(self.params)}")
        new_state = [{} for _ in self.params]
        for i, saved in state_dict["state"].items():
            i = int(i)
            if not 0 <= i < len(self.params):
                raise ValueError(f"state_dict has state for parameter {i}, this optimizer "
                                 f"has {len(self.params)} parameters")
            p = self.params[i]
            for key, value in saved.items():
                if key == "step":
                    value = int(value)  # PyTorch keeps it as a float tensor
                elif key in self._state_keys:
                    value = np.array(value, dtype=p.data.dtype)  # a copy in the param's dtype
                    if value.shape != p.data.shape:
                        raise ValueError(f"state_dict['state'][{i}][{key!r}] has shape "
                                         f"{value.shape}, parameter {i} has {p.data.shape}")
                new_state[i][key] = value
        self.lr = _real(group["lr"], "learning rate", minimum=0.0)
        for name in self._hyperparameters:
            if name in group:
                value = group[name]
                setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``, one step does::

        g = g + weight_decay * p                      # if weight_decay
        buf = g                                       # first step (no dampening)
        buf = momentum * buf + (1 - dampening) * g    # later steps
        g = g + momentum * buf if nesterov else buf   # if momentum
        p = p - lr * g

    (``g`` is negated first when ``maximize``.)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate (>= 0).
    momentum : float, default=0
    dampening : float, default=0
    weight_decay : float, default=0
        L2 penalty coefficient (added to the gradient).
    nesterov : bool, default=False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default=False
        Climb the objective instead of descending it.
    """

    _hyperparameters = ("momentum", "dampening", "weight_decay", "nesterov", "maximize")
    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        super().__init__(params, lr)
        self.momentum = _real(momentum, "momentum value", minimum=0.0)
        self.dampening = _real(dampening, "dampening")
        self.weight_decay = _real(weight_decay, "weight_decay value", minimum=0.0)
        self.nesterov = bool(nesterov)
        self.maximize = bool(maximize)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self):
        """Update every parameter's ``.data`` in place from its ``.grad``."""
        for i, p, grad in self._grads(self.maximize):
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * p.data
            if self.momentum != 0:
                buf = self.state[i].get("momentum_buffer")
                if buf is None:
                    # first step: the buffer starts as the gradient itself, undampened
                    buf = self.state[i]["momentum_buffer"] = np.array(grad, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * grad
                grad = grad + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * grad


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (L2 weight decay added to the gradient, not AdamW).

    With ``t`` the step count (from 1)::

        g = g + weight_decay * p
        m = m + (1 - beta1) * (g - m)             # m.lerp_(g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                     # if amsgrad (then used for v)
        denom = sqrt(v) / sqrt(1 - beta2 ** t) + eps
        p = p - lr / (1 - beta1 ** t) * m / denom

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default=1e-3
    betas : (float, float), default=(0.9, 0.999)
        Decay rates of the running averages of the gradient and its square.
    eps : float, default=1e-8
        Added to the denominator for numerical stability.
    weight_decay : float, default=0
    amsgrad : bool, default=False
        Use the maximum of the past squared-gradient averages.
    maximize : bool, default=False
    """

    _hyperparameters = ("betas", "eps", "weight_decay", "amsgrad", "maximize")
    _state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of floats, got {betas!r}")
        self.betas = (_real(betas[0], "beta parameter at index 0", minimum=0.0, below=1.0),
                      _real(betas[1], "beta parameter at index 1", minimum=0.0, below=1.0))
        self.eps = _real(eps, "epsilon value", minimum=0.0)
        self.weight_decay = _real(weight_decay, "weight_decay value", minimum=0.0)
        self.amsgrad = bool(amsgrad)
        self.maximize = bool(maximize)

    def step(self):
        """Update every parameter's ``.data`` in place from its ``.grad``."""
        beta1, beta2 = self.betas
        for i, p, grad in self._grads(self.maximize):
            state = self.state[i]
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
                if self.amsgrad:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            state["step"] += 1
            step = state["step"]
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * p.data
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            # exp_avg.lerp_(grad, 1 - beta1), with the two formulas torch's lerp uses
            weight = 1 - beta1
            if weight < 0.5:
                exp_avg += weight * (grad - exp_avg)
            else:
                exp_avg[...] = grad - (grad - exp_avg) * (1 - weight)
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            # the running averages start at 0 and so are biased towards 0 early on
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
            step_size = self.lr / bias_correction1
            if self.amsgrad:
                if "max_exp_avg_sq" not in state:  # amsgrad switched on after a load
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
                np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                denom = np.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt + self.eps
            else:
                denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + self.eps
            p.data -= step_size * (exp_avg / denom)


# --------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------


class _LRScheduler:
    """Base class: the epoch counter, ``base_lr`` and ``get_last_lr``.

    As in PyTorch, creating a schedule counts as its epoch 0 and sets the
    optimiser's lr to the schedule's value there (``base_lr``); each
    ``step()`` (once per epoch, after the optimiser's steps) moves it on.
    """

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def get_last_lr(self):
        """The learning rate after the last ``step()``, as a one-element list (as PyTorch)."""
        return list(self._last_lr)

    def step(self):
        """Move to the next epoch and set ``optimizer.lr``."""
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr()
        self._last_lr = [self.optimizer.lr]

    def state_dict(self):
        """Everything but the optimiser, as a dict."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class StepLR(_LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs, as PyTorch's ``StepLR``.

    ``lr = base_lr * gamma ** (epoch // step_size)``, computed as PyTorch does
    it, by multiplying the current lr (so a change made to ``optimizer.lr``
    by hand carries over).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Epochs between two decays (>= 1).
    gamma : float, default=0.1
        Multiplicative factor.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _int(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma", minimum=0.0)
        super().__init__(optimizer)

    def _next_lr(self):
        if self.last_epoch % self.step_size != 0:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class CosineAnnealingLR(_LRScheduler):
    """Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs, as PyTorch's.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``
    (the closed form; PyTorch computes the same values recursively, so the two
    agree to rounding). After ``T_max`` epochs the cosine goes on: the lr rises again.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Epochs of a half period (>= 1).
    eta_min : float, default=0
        The smallest learning rate.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _int(T_max, "T_max", 1)
        self.eta_min = _real(eta_min, "eta_min", minimum=0.0)
        super().__init__(optimizer)

    def _next_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


class ReduceLROnPlateau:
    """Divide the learning rate when a metric stops improving, as PyTorch's ``ReduceLROnPlateau``.

    After each epoch call ``step(metric)``. When the metric has not improved on
    its best value for more than ``patience`` epochs in a row, the lr becomes
    ``max(lr * factor, min_lr)``; then ``cooldown`` epochs pass during which
    bad epochs are not counted.

    "Improved" means, for ``mode="min"``: ``metric < best * (1 - threshold)``
    (``threshold_mode="rel"``) or ``metric < best - threshold`` ("abs"); for
    ``mode="max"``: ``metric > best * (1 + threshold)`` or ``metric > best + threshold``.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}, default="min"
        Whether lower (a loss) or higher (an accuracy) is better.
    factor : float < 1, default=0.1
    patience : int, default=10
        Bad epochs tolerated before the lr drops.
    threshold : float, default=1e-4
    threshold_mode : {"rel", "abs"}, default="rel"
    cooldown : int, default=0
    min_lr : float, default=0
    eps : float, default=1e-8
        A drop smaller than this is not made.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = _real(factor, "factor", minimum=0.0)
        if self.factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) \
                or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, numbers.Integral) \
                or cooldown < 0:
            raise ValueError(f"cooldown must be an int >= 0, got {cooldown!r}")
        self.optimizer = optimizer
        self.mode = mode
        self.patience = int(patience)
        self.threshold = _real(threshold, "threshold", minimum=0.0)
        self.threshold_mode = threshold_mode
        self.cooldown = int(cooldown)
        self.min_lr = _real(min_lr, "min_lr", minimum=0.0)
        self.eps = _real(eps, "eps", minimum=0.0)
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, metric, best):
        """Whether ``metric`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return metric < best * (1.0 - self.threshold)
        if self.mode == "min":
            return metric < best - self.threshold
        if self.threshold_mode == "rel":
            return metric > best * (self.threshold + 1.0)
        return metric > best + self.threshold

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def step(self, metric):
        """Record one epoch's metric and drop the lr if it has plateaued.

        Parameters
        ----------
        metric : float
            E.g. the validation loss (``mode="min"``). NaN never counts as an improvement.
        """
        current = float(metric)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during the cooldown are not counted
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self):
        """The learning rate after the last ``step()``, as a one-element list (as PyTorch)."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimiser, as a dict."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)
