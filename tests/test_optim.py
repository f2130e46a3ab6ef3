"""SGD, Adam and the learning-rate schedules against torch.optim, step for step."""
import itertools
import math

import numpy as np
import pytest

from cnn.optim import SGD, Adam, CosineAnnealingLR, ReduceLROnPlateau, StepLR


class Param:
    """The interface the optimisers see: .data and .grad (cnn.parameter.Parameter has it)."""

    def __init__(self, data):
        self.data = np.array(data)  # a copy, float64 for lists of floats
        self.grad = np.zeros_like(self.data)


SHAPES = [(3, 4), (5,)]


def _start(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def _gradient(values, step):
    """A gradient that depends on the parameters and on the step, as a real one does."""
    return [np.sin(3 * v) + 0.1 * step * np.cos(v) for v in values]


def _run_ours(make_optimizer, n_steps=6, seed=0, lr_changes=None, dtype=np.float64):
    params = [Param(v) for v in _start(seed, dtype)]
    optimizer = make_optimizer(params)
    for step in range(n_steps):
        if lr_changes and step in lr_changes:
            optimizer.lr = lr_changes[step]
        optimizer.zero_grad()
        for p, g in zip(params, _gradient([p.data for p in params], step)):
            p.grad += g
        optimizer.step()
    return [p.data for p in params], optimizer


def _run_torch(torch, make_optimizer, n_steps=6, seed=0, lr_changes=None, dtype=np.float64):
    params = [torch.tensor(v, requires_grad=True) for v in _start(seed, dtype)]
    optimizer = make_optimizer(params)
    for step in range(n_steps):
        if lr_changes and step in lr_changes:
            optimizer.param_groups[0]["lr"] = lr_changes[step]
        optimizer.zero_grad()
        for p, g in zip(params, _gradient([p.detach().numpy() for p in params], step)):
            p.grad = torch.tensor(g)
        optimizer.step()
    return [p.detach().numpy() for p in params], optimizer


def _assert_same(ours, theirs):
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


# every valid combination; nesterov needs momentum and no dampening
SGD_SETTINGS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.3], [False, True],
                                             [0.0, 0.05], [False, True])
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("settings", SGD_SETTINGS,
                         ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_sgd_trajectory_matches_torch(settings):
    torch = pytest.importorskip("torch")
    lr_changes = {4: 0.05}  # a schedule changing the lr mid-way
    ours, _ = _run_ours(lambda p: SGD(p, lr=0.1, **settings), lr_changes=lr_changes)
    theirs, _ = _run_torch(torch, lambda p: torch.optim.SGD(p, lr=0.1, **settings),
                           lr_changes=lr_changes)
    _assert_same(ours, theirs)


def test_sgd_plain_step_by_hand():
    p = Param([1.0, -2.0])
    p.grad[:] = [0.5, 0.25]
    data = p.data  # the step must happen in place: layers hold this array
    SGD([p], lr=0.1).step()
    assert p.data is data
    np.testing.assert_allclose(p.data, [0.95, -2.025])


def test_sgd_first_momentum_step_is_undampened():
    p = Param([0.0])
    opt = SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    p.grad[:] = 1.0
    opt.step()  # buf = g = 1 (no dampening on the first step)
    assert p.data[0] == -1.0
    opt.step()  # buf = 0.9 * 1 + 0.5 * 1 = 1.4
    assert p.data[0] == pytest.approx(-2.4)


ADAM_SETTINGS = [
    dict(),
    dict(weight_decay=0.05),
    dict(amsgrad=True),
    dict(amsgrad=True, weight_decay=0.05, maximize=True),
    dict(betas=(0.3, 0.5), eps=1e-3),  # beta1 < 0.5: torch's lerp takes its other formula
    dict(maximize=True),
]


@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=str)
def test_adam_trajectory_matches_torch(settings):
    torch = pytest.importorskip("torch")
    lr_changes = {3: 0.02}
    ours, _ = _run_ours(lambda p: Adam(p, lr=0.01, **settings), n_steps=8,
                        lr_changes=lr_changes)
    theirs, _ = _run_torch(torch, lambda p: torch.optim.Adam(p, lr=0.01, **settings),
                           n_steps=8, lr_changes=lr_changes)
    _assert_same(ours, theirs)


@pytest.mark.parametrize("name, settings", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
])
def test_float32_trajectory_matches_torch_to_float32_rounding(name, settings):
    # torch fuses p + alpha * g into one rounding (FMA) where NumPy rounds twice,
    # so float32 results may differ in the last bit; the rules are the same
    torch = pytest.importorskip("torch")
    ours_cls = {"SGD": SGD, "Adam": Adam}[name]
    ours, _ = _run_ours(lambda p: ours_cls(p, **settings), dtype=np.float32)
    theirs, _ = _run_torch(torch, lambda p: getattr(torch.optim, name)(p, **settings),
                           dtype=np.float32)
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adam_first_step_moves_each_weight_by_lr():
    # after one step m_hat = g and v_hat = g**2, so the update is lr * sign(g)
    p = Param([1.0, 1.0, 1.0])
    p.grad[:] = [3.0, -0.5, 100.0]
    Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, [0.99, 1.01, 0.99], rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda p: Adam(p, lr=0.1, amsgrad=True)])
def test_optimizers_keep_the_parameter_dtype(make, dtype):
    p = Param([1.0, 2.0])
    p.data = p.data.astype(dtype)
    p.grad = np.ones_like(p.data)
    opt = make([p])
    opt.step()
    opt.step()
    assert p.data.dtype == dtype
    assert all(v.dtype == dtype for s in opt.state for v in s.values()
               if isinstance(v, np.ndarray))


def test_zero_grad_in_place_and_parameter_without_grad_is_skipped():
    p, q = Param([1.0]), Param([2.0])
    p.grad[:] = 5.0
    grad = p.grad
    q.grad = None
    opt = SGD([p, q], lr=0.1, momentum=0.9)
    opt.step()
    assert q.data[0] == 2.0 and not opt.state[1]
    opt.zero_grad()
    assert p.grad is grad and p.grad[0] == 0.0


def test_works_with_cnn_parameter():
    Parameter = pytest.importorskip("cnn.parameter").Parameter
    p = Parameter(np.array([1.0, 2.0]))
    p.grad += 1.0
    opt = SGD([p], lr=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, [0.5, 1.5])
    opt.zero_grad()
    assert not p.grad.any()


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda p: Adam(p, lr=0.01, amsgrad=True),
])
def test_state_dict_round_trip_resumes_exactly(make):
    straight, _ = _run_ours(make, n_steps=6)
    # 3 steps, save, build a fresh optimiser, load, 3 more steps
    params = [Param(v) for v in _start()]
    opt = make(params)
    for step in range(3):
        opt.zero_grad()
        for p, g in zip(params, _gradient([p.data for p in params], step)):
            p.grad += g
        opt.step()
    saved = opt.state_dict()
    opt = make(params)
    opt.load_state_dict(saved)
    for step in range(3, 6):
        opt.zero_grad()
        for p, g in zip(params, _gradient([p.data for p in params], step)):
            p.grad += g
        opt.step()
    for a, b in zip(straight, [p.data for p in params]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_loads_a_torch_optimizer_state_dict(name):
    torch = pytest.importorskip("torch")
    settings = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    ours_cls = {"SGD": SGD, "Adam": Adam}[name]
    _, torch_opt = _run_torch(torch, lambda p: getattr(torch.optim, name)(p, **settings),
                              n_steps=3)
    state = torch_opt.state_dict()
    converted = {
        "state": {i: {k: v.numpy() for k, v in s.items()} for i, s in state["state"].items()},
        "param_groups": state["param_groups"],
    }
    params = [Param(v) for v in _start()]
    opt = ours_cls(params, **settings)
    opt.load_state_dict(converted)
    key = "momentum_buffer" if name == "SGD" else "exp_avg"
    np.testing.assert_array_equal(opt.state[0][key], state["state"][0][key].numpy())
    if name == "Adam":
        assert opt.state[0]["step"] == 3


def test_load_state_dict_errors():
    params = [Param(v) for v in _start()]
    opt = SGD(params, lr=0.1, momentum=0.9)
    good = {"state": {0: {"momentum_buffer": np.zeros((3, 4))}},
            "param_groups": [{"lr": 0.1, "params": [0, 1]}]}
    opt.load_state_dict(good)
    with pytest.raises(ValueError, match=r"has shape \(2,\), parameter 0 has \(3, 4\)"):
        opt.load_state_dict({**good, "state": {0: {"momentum_buffer": np.zeros(2)}}})
    with pytest.raises(ValueError, match="for 3 parameters, this optimizer has 2"):
        opt.load_state_dict({**good, "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]})


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD(p, lr=-0.1), "Invalid learning rate"),
    (lambda p: SGD(p, lr=float("nan")), "Invalid learning rate"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum value"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), "Invalid weight_decay value"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires"),
    (lambda p: Adam(p, lr=-1.0), "Invalid learning rate"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "beta parameter at index 0"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), "beta parameter at index 1"),
    (lambda p: Adam(p, betas=0.9), "betas must be a pair"),
    (lambda p: Adam(p, eps=-1e-8), "Invalid epsilon value"),
    (lambda p: Adam(p, weight_decay=-1e-2), "Invalid weight_decay value"),
    (lambda p: SGD([], lr=0.1), "empty parameter list"),
    (lambda p: SGD(p + p, lr=0.1), "more than once"),
])
def test_bad_optimizer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make([Param([1.0])])


def test_bad_optimizer_argument_types():
    with pytest.raises(TypeError, match="learning rate must be a real number"):
        SGD([Param([1.0])], lr="0.1")
    with pytest.raises(TypeError, match="got a single parameter"):
        SGD(Param([1.0]), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must have .data and .grad"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR(object(), step_size=2)


def test_repr():
    text = repr(SGD([Param([1.0])], lr=0.1, momentum=0.9))
    assert text.startswith("SGD (") and "momentum: 0.9" in text


# --------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------


def _lr_sequence_ours(make_scheduler, metrics=None, n_epochs=30, lr=0.1):
    opt = SGD([Param([1.0])], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = [opt.lr]
    for epoch in range(n_epochs):
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[epoch])
        lrs.append(opt.lr)
        assert scheduler.get_last_lr() == [opt.lr]
    return lrs


def _lr_sequence_torch(torch, make_scheduler, metrics=None, n_epochs=30, lr=0.1):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for epoch in range(n_epochs):
        opt.step()  # torch warns when a schedule steps before the optimiser
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[epoch])
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("kwargs", [dict(step_size=3), dict(step_size=1, gamma=0.5),
                                    dict(step_size=7, gamma=0.9)], ids=str)
def test_step_lr_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours = _lr_sequence_ours(lambda o: StepLR(o, **kwargs))
    theirs = _lr_sequence_torch(torch, lambda o: torch.optim.lr_scheduler.StepLR(o, **kwargs))
    assert ours == theirs  # same multiplications in the same order: bit for bit


def test_step_lr_by_hand():
    lrs = _lr_sequence_ours(lambda o: StepLR(o, step_size=2, gamma=0.5), n_epochs=5, lr=1.0)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("kwargs", [dict(T_max=10), dict(T_max=7, eta_min=0.01),
                                    dict(T_max=1, eta_min=0.001)], ids=str)
def test_cosine_annealing_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    # 30 epochs go past T_max: the cosine rises again, in both
    ours = _lr_sequence_ours(lambda o: CosineAnnealingLR(o, **kwargs))
    theirs = _lr_sequence_torch(
        torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, **kwargs))
    # torch's recursive form and our closed form agree to rounding
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_cosine_annealing_closed_form():
    lrs = _lr_sequence_ours(lambda o: CosineAnnealingLR(o, T_max=4, eta_min=0.1), n_epochs=4,
                            lr=1.1)
    expected = [0.1 + 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(5)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert lrs[-1] == pytest.approx(0.1)


_METRICS = [1.0, 0.9, 0.95, 0.95, 0.94, 0.96, 0.97, 0.5, 0.5, 0.50001, 0.6, 0.7, 0.4,
            0.4, 0.4, 0.4, 0.4, 0.39999, 0.3, 0.3, 0.3, 0.3, 0.31, 0.32, 0.33, 0.2, 0.2,
            0.2, 0.2, 0.2]
PLATEAU_SETTINGS = [
    dict(patience=2),
    dict(patience=0, factor=0.5),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=1, threshold=0.05, threshold_mode="abs"),
    dict(patience=2, mode="max"),
    dict(patience=1, mode="max", threshold_mode="abs", threshold=0.01),
    dict(patience=0, factor=0.5, min_lr=0.02),
    dict(patience=0, factor=0.5, min_lr=0.02, eps=0.03),
]


@pytest.mark.parametrize("kwargs", PLATEAU_SETTINGS, ids=str)
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours = _lr_sequence_ours(lambda o: ReduceLROnPlateau(o, **kwargs), metrics=_METRICS)
    theirs = _lr_sequence_torch(
        torch, lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs),
        metrics=_METRICS)
    assert ours == theirs


def test_reduce_lr_on_plateau_by_hand():
    # patience 1: the second bad epoch in a row drops the lr
    lrs = _lr_sequence_ours(lambda o: ReduceLROnPlateau(o, patience=1, factor=0.5),
                            metrics=[1.0, 1.0, 1.0, 0.5, 0.6, 0.7], n_epochs=6, lr=1.0)
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_reduce_lr_on_plateau_nan_metric_is_a_bad_epoch():
    lrs = _lr_sequence_ours(lambda o: ReduceLROnPlateau(o, patience=0), metrics=[1.0, np.nan],
                            n_epochs=2, lr=1.0)
    assert lrs == [1.0, 1.0, 0.1]


@pytest.mark.parametrize("make, error, match", [
    (lambda o: StepLR(o, step_size=0), ValueError, "step_size must be >= 1"),
    (lambda o: StepLR(o, step_size=2.5), TypeError, "step_size must be an int"),
    (lambda o: StepLR(o, step_size=2, gamma=-1), ValueError, "Invalid gamma"),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be >= 1"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), ValueError, "mode must be"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="x"), ValueError, "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: ReduceLROnPlateau(o, cooldown=1.5), ValueError, "cooldown"),
])
def test_bad_scheduler_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make(SGD([Param([1.0])], lr=0.1))


def test_scheduler_state_dict_round_trip():
    opt = SGD([Param([1.0])], lr=1.0)
    scheduler = ReduceLROnPlateau(opt, patience=1)
    for metric in [1.0, 2.0]:
        scheduler.step(metric)
    saved = scheduler.state_dict()
    fresh = ReduceLROnPlateau(opt, patience=1)
    fresh.load_state_dict(saved)
    fresh.step(3.0)  # the third bad epoch... counted from the restored state
    assert opt.lr == pytest.approx(0.1)
