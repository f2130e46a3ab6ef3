"""cnn.layers: each layer against finite differences (float64) and, when installed, torch.nn.

Every configuration in LAYERS is built twice, ours and torch's, from the same
arguments; the finite-difference tests check our gradients against our forward,
and the torch tests check our forward and gradients against torch's.
"""
import math

import numpy as np
import pytest

import cnn.layers as L
from cnn.parameter import Parameter
from gradcheck import numerical_grad

RNG_SEED = 1234


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# (id, our layer from the torch-like module namespace, input shape)
# The same lambda builds torch's layer when passed torch.nn.
LAYERS = [
    ("conv2d", lambda nn: nn.Conv2d(2, 3, 3), (2, 2, 5, 5)),
    ("conv2d_stride_pad_dil", lambda nn: nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2),
                                                   dilation=(1, 2)), (2, 2, 6, 5)),
    ("conv2d_groups_nobias", lambda nn: nn.Conv2d(4, 6, 3, groups=2, bias=False), (2, 4, 5, 4)),
    ("conv2d_depthwise", lambda nn: nn.Conv2d(3, 3, 3, padding=1, groups=3), (2, 3, 5, 5)),
    ("conv2d_same_reflect", lambda nn: nn.Conv2d(2, 3, 4, padding="same",
                                                 padding_mode="reflect"), (2, 2, 5, 6)),
    ("conv2d_circular", lambda nn: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"),
     (1, 2, 4, 5)),
    ("conv1d", lambda nn: nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2), (2, 2, 9)),
    ("conv1d_same", lambda nn: nn.Conv1d(3, 2, 4, padding="same", padding_mode="replicate"),
     (2, 3, 7)),
    ("conv_transpose2d", lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                       output_padding=1), (2, 3, 3, 4)),
    ("conv_transpose2d_groups", lambda nn: nn.ConvTranspose2d(4, 2, 2, stride=2, groups=2,
                                                              bias=False), (2, 4, 3, 3)),
    ("maxpool2d", lambda nn: nn.MaxPool2d(2), (2, 3, 6, 6)),
    ("maxpool2d_pad_dil_ceil", lambda nn: nn.MaxPool2d(3, stride=2, padding=1, dilation=2,
                                                       ceil_mode=True), (2, 2, 7, 8)),
    ("maxpool1d", lambda nn: nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 9)),
    ("avgpool2d", lambda nn: nn.AvgPool2d(2), (2, 3, 6, 6)),
    ("avgpool2d_pad_nocount", lambda nn: nn.AvgPool2d(3, stride=2, padding=1,
                                                      count_include_pad=False, ceil_mode=True),
     (2, 2, 6, 7)),
    ("avgpool2d_divisor", lambda nn: nn.AvgPool2d((2, 3), divisor_override=4), (1, 2, 4, 6)),
    ("avgpool1d", lambda nn: nn.AvgPool1d(2, padding=1), (2, 3, 7)),
    ("adaptive1", lambda nn: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    ("adaptive_irregular", lambda nn: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    ("adaptive_none", lambda nn: nn.AdaptiveAvgPool2d((None, 2)), (2, 2, 3, 4)),
    ("flatten", lambda nn: nn.Flatten(), (2, 3, 2, 2)),
    ("flatten_middle", lambda nn: nn.Flatten(1, 2), (2, 3, 2, 2)),
    ("linear", lambda nn: nn.Linear(5, 3), (4, 5)),
    ("linear_3d_nobias", lambda nn: nn.Linear(4, 2, bias=False), (2, 3, 4)),
    ("relu", lambda nn: nn.ReLU(), (2, 3, 4, 4)),
    ("leaky_relu", lambda nn: nn.LeakyReLU(0.2), (2, 3, 4, 4)),
    ("tanh", lambda nn: nn.Tanh(), (2, 3, 4)),
    ("sigmoid", lambda nn: nn.Sigmoid(), (2, 3, 4)),
    ("identity", lambda nn: nn.Identity(), (2, 3)),
    ("batchnorm2d", lambda nn: nn.BatchNorm2d(3), (4, 3, 3, 3)),
    ("batchnorm2d_noaffine", lambda nn: nn.BatchNorm2d(2, affine=False, momentum=None),
     (3, 2, 2, 3)),
    ("batchnorm2d_nobias", lambda nn: nn.BatchNorm2d(2, bias=False),
     (3, 2, 2, 3)),
    ("batchnorm1d", lambda nn: nn.BatchNorm1d(4, eps=1e-3, momentum=0.3), (6, 4)),
    ("batchnorm1d_3d", lambda nn: nn.BatchNorm1d(3), (4, 3, 5)),
    ("batchnorm2d_untracked", lambda nn: nn.BatchNorm2d(3, track_running_stats=False),
     (4, 3, 2, 2)),
]
IDS = [c[0] for c in LAYERS]


def _make(factory, dtype=np.float64):
    """Our layer, in dtype, with seeded, non-trivial weights."""
    layer = factory(L)
    layer.astype(dtype)
    rng = np.random.default_rng(RNG_SEED)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5 + 0.1
    return layer


# ---------------------------------------------------------------- finite differences
@pytest.mark.parametrize("factory,shape", [c[1:] for c in LAYERS], ids=IDS)
def test_gradients_match_finite_differences(factory, shape):
    layer = _make(factory)
    x = _rand(shape, seed=1)
    out = layer(x)
    weights = _rand(out.shape, seed=2)  # loss = sum(out * weights): its grad_out is weights

    def loss():
        if isinstance(layer, L.Dropout):
            layer.rng = np.random.default_rng(0)
        value = float(np.sum(layer(x) * weights))
        layer._cache = None
        return value

    layer.zero_grad()
    if isinstance(layer, L.Dropout):
        layer.rng = np.random.default_rng(0)
    layer(x)
    grad_input = layer.backward(weights)
    np.testing.assert_allclose(grad_input, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, numerical_grad(loss, p.data), rtol=1e-6, atol=1e-7,
                                   err_msg=name)


def test_dropout_gradient_uses_the_forward_mask():
    layer = L.Dropout(0.4, rng=3)
    x = _rand((3, 50), seed=1)
    out = layer(x)
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad != 0, out != 0)
    np.testing.assert_allclose(grad[grad != 0], 1 / 0.6)


# ---------------------------------------------------------------- behaviour
def test_gradients_accumulate_until_zero_grad():
    layer = _make(lambda nn: nn.Conv2d(2, 3, 3))
    x, g = _rand((2, 2, 5, 5)), _rand((2, 3, 3, 3), seed=3)
    layer(x)
    layer.backward(g)
    once = [p.grad.copy() for p in layer.parameters()]
    layer(x)
    layer.backward(g)
    for p, g1 in zip(layer.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g1)
    grads = [p.grad for p in layer.parameters()]
    layer.zero_grad()
    for p, same in zip(layer.parameters(), grads):
        assert not p.grad.any()
        assert p.grad is same  # zeroed in place: an optimiser may hold the array


def test_parameter():
    data = np.arange(6.0).reshape(2, 3)
    p = Parameter(data)
    assert p.data is not data and p.grad.shape == (2, 3) and p.grad.dtype == data.dtype
    assert not p.grad.any()
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float64)"
    p.grad += 1
    p.zero_grad()
    assert not p.grad.any()


@pytest.mark.parametrize("factory,shape", [c[1:] for c in LAYERS], ids=IDS)
def test_eval_mode_keeps_no_cache(factory, shape):
    layer = _make(factory)
    x = _rand(shape)
    layer(x)
    if not isinstance(layer, L.Identity):
        assert layer._cache is not None
    layer.eval()
    assert layer.training is False
    layer(x)
    # nothing but parameters, buffers and settings stays on the layer
    assert layer._cache is None
    arrays = {k for k, v in vars(layer).items() if isinstance(v, np.ndarray)}
    assert arrays <= set(layer._buffer_names)
    if not isinstance(layer, L.Identity):
        with pytest.raises(RuntimeError, match="training mode"):
            layer.backward(np.ones_like(layer(x)))
    assert layer.train() is layer and layer.training


def test_backward_runs_once_per_forward():
    layer = L.ReLU()
    layer(np.ones((2, 2)))
    layer.backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(np.ones((2, 2)))


def test_conv_without_input_grad():
    layer = _make(lambda nn: nn.Conv2d(2, 3, 3))
    x, g = _rand((2, 2, 5, 5)), _rand((2, 3, 3, 3), seed=3)
    layer(x)
    layer.backward(g)
    expected = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    layer.needs_input_grad = False
    layer(x)
    assert layer.backward(g) is None
    for p, e in zip(layer.parameters(), expected):
        np.testing.assert_array_equal(p.grad, e)


def test_dtype_is_kept_and_never_mixed():
    conv = L.Conv2d(1, 2, 3, rng=0)
    assert conv.weight.dtype == np.float32 and conv.bias.dtype == np.float32
    assert conv(np.zeros((1, 1, 4, 4), np.float32)).dtype == np.float32
    assert conv(np.zeros((1, 1, 4, 4), np.int64)).dtype == np.float32  # integers are converted
    with pytest.raises(TypeError, match="float64"):
        conv(np.zeros((1, 1, 4, 4)))
    with pytest.raises(TypeError, match="float64"):
        L.Linear(3, 2)(np.zeros((1, 3)))
    lin = L.Linear(3, 2, dtype=np.float64)
    assert lin.weight.dtype == np.float64 and lin(np.zeros((1, 3))).dtype == np.float64
    assert L.ReLU()(np.ones(3, np.float32)).dtype == np.float32
    with pytest.raises(TypeError):
        L.Linear(3, 2, dtype=np.int32)
    bn = L.BatchNorm2d(3).astype(np.float64)
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert bn.get_config()["dtype"] == "float64"


def test_seeded_initialisation_is_reproducible():
    a, b = L.Conv2d(3, 4, 3, rng=7), L.Conv2d(3, 4, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, L.Conv2d(3, 4, 3, rng=8).weight.data)


@pytest.mark.parametrize("make,fan_in", [
    (lambda rng: L.Conv2d(6, 40, 5, groups=2, rng=rng), 3 * 25),
    (lambda rng: L.Conv1d(4, 30, 7, rng=rng), 4 * 7),
    (lambda rng: L.ConvTranspose2d(8, 12, 3, groups=4, rng=rng), 3 * 9),
    (lambda rng: L.Linear(50, 30, rng=rng), 50),
])
def test_default_initialisation_bounds(make, fan_in):
    # kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias has the same bound
    layer = make(0)
    bound = 1 / math.sqrt(fan_in)
    w = layer.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.mean()) < 0.1 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # the std of U(-b, b)
    assert np.abs(layer.bias.data).max() <= bound


def test_batchnorm_running_statistics_by_hand():
    bn = L.BatchNorm2d(2, momentum=0.25, dtype=np.float64)
    x = _rand((3, 2, 2, 2))
    bn(x)
    n = 3 * 2 * 2
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean, 0.25 * mean)
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * var * n / (n - 1))  # unbiased
    assert bn.num_batches_tracked == 1
    # momentum None: the cumulative average of the batches seen
    bn = L.BatchNorm1d(2, momentum=None, dtype=np.float64)
    batches = [_rand((4, 2), seed=s) for s in range(3)]
    for b in batches:
        bn(b)
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(0) for b in batches], axis=0))
    # eval: the running statistics normalise
    bn.eval()
    out = bn(batches[0])
    np.testing.assert_allclose(out, (batches[0] - bn.running_mean) / np.sqrt(bn.running_var + 1e-5))
    with pytest.raises(ValueError, match="more than 1 value"):
        L.BatchNorm1d(2)(np.zeros((1, 2), np.float32))


def test_dropout_modes():
    x = np.ones((200, 50), np.float32)
    d = L.Dropout(0.3, rng=0)
    out = d(x)
    assert set(np.unique(out)) == {0, np.float32(1 / 0.7)}
    assert abs((out == 0).mean() - 0.3) < 0.02
    np.testing.assert_array_equal(L.Dropout(0.3, rng=0)(x), out)  # seeded masks
    assert not np.array_equal(d(x), out)  # a new mask each call
    d.eval()
    assert d(x) is x
    np.testing.assert_array_equal(L.Dropout(0.0)(x), x)
    assert not L.Dropout(1.0)(x).any()


def test_relu_inplace_and_gradient_at_zero():
    x = np.array([-1.0, 0.0, 2.0])
    r = L.ReLU(inplace=True)
    out = r(x)
    assert out is x and list(x) == [0, 0, 2]
    np.testing.assert_array_equal(r.backward(np.ones(3)), [0, 0, 1])  # 0 at 0, as torch


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.Conv2d(0, 2, 3), ValueError, "in_channels"),
    (lambda: L.Conv2d(2, 2, 0), ValueError, "kernel_size"),
    (lambda: L.Conv2d(2, 2, 3.0), TypeError, "kernel_size"),
    (lambda: L.Conv2d(2, 2, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: L.Conv2d(3, 2, 3, groups=2), ValueError, "groups"),
    (lambda: L.Conv2d(2, 2, 3, padding=-1), ValueError, "padding"),
    (lambda: L.Conv2d(2, 2, 3, padding="full"), ValueError, "padding"),
    (lambda: L.Conv2d(2, 2, 3, stride=2, padding="same"), ValueError, "same"),
    (lambda: L.Conv2d(2, 2, 3, padding_mode="mirror"), ValueError, "padding_mode"),
    (lambda: L.Conv2d(2, 2, 3, bias=1), TypeError, "bias"),
    (lambda: L.Conv1d(2, 2, (3, 3)), ValueError, "kernel_size"),
    (lambda: L.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), ValueError, "output_padding"),
    (lambda: L.ConvTranspose2d(2, 2, 3, padding_mode="reflect"), ValueError, "zeros"),
    (lambda: L.MaxPool2d(2, padding=2), ValueError, "padding"),
    (lambda: L.MaxPool2d(2, return_indices=True), ValueError, "return_indices"),
    (lambda: L.MaxPool2d(0), ValueError, "kernel_size"),
    (lambda: L.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: L.AdaptiveAvgPool2d(0), ValueError, "output_size"),
    (lambda: L.AdaptiveAvgPool2d((1, 2, 3)), ValueError, "output_size"),
    (lambda: L.Linear(0, 2), ValueError, "in_features"),
    (lambda: L.LeakyReLU("x"), TypeError, "negative_slope"),
    (lambda: L.Dropout(1.5), ValueError, "p"),
    (lambda: L.Dropout(-0.1), ValueError, "p"),
    (lambda: L.BatchNorm2d(0), ValueError, "num_features"),
    (lambda: L.BatchNorm2d(2, eps=0), ValueError, "eps"),
    (lambda: L.BatchNorm2d(2, momentum=2), ValueError, "momentum"),
    (lambda: L.Flatten(1.5), TypeError, "start_dim"),
])
def test_bad_hyper_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer,x,match", [
    (L.Conv2d(2, 2, 3), np.zeros((1, 3, 5, 5), np.float32), "C_in"),
    (L.Conv1d(2, 2, 3), np.zeros((1, 2, 5, 5), np.float32), r"\(N, C, L\)"),
    (L.MaxPool1d(2), np.zeros((1, 2, 5, 5)), r"\(N, C, L\)"),
    (L.Linear(3, 2), np.zeros((2, 4), np.float32), "in_features"),
    (L.BatchNorm2d(3), np.zeros((2, 4, 2, 2), np.float32), "num_features"),
    (L.BatchNorm1d(3), np.zeros((2, 3, 2, 2), np.float32), "num_features"),
    (L.Flatten(2), np.zeros((2, 3)), "flatten"),
    (L.AdaptiveAvgPool2d(1), np.zeros((2, 3)), r"\(N, C, H, W\)"),
])
def test_bad_inputs(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)


# ---------------------------------------------------------------- against torch
@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only spins
    yield torch
    torch.set_num_threads(n)


def _to_torch(ours, theirs, torch):
    theirs.double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return theirs


@pytest.mark.parametrize("factory,shape", [c[1:] for c in LAYERS], ids=IDS)
def test_forward_and_backward_match_torch(torch, factory, shape):
    ours = _make(factory)
    theirs = _to_torch(ours, factory(torch.nn), torch)
    assert repr(ours) == str(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = _rand(shape, seed=1)
    tx = torch.tensor(x, requires_grad=True)
    out, tout = ours(x), theirs(tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = _rand(out.shape, seed=2)
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    for (name, b), tb in zip(ours.named_buffers(), theirs.buffers()):
        np.testing.assert_allclose(b, tb.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
    # eval mode: running statistics (BatchNorm), identity (Dropout)
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda nn: nn.Conv2d(6, 40, 5, groups=2), lambda nn: nn.Conv1d(4, 30, 7),
    lambda nn: nn.ConvTranspose2d(8, 12, 3, groups=4), lambda nn: nn.Linear(50, 30),
    lambda nn: nn.BatchNorm2d(5), lambda nn: nn.BatchNorm1d(5, affine=False),
])
def test_default_initialisation_like_torch(torch, make):
    # Same keys, shapes and dtypes; the random tensors of both lie in torch's bound
    # 1/sqrt(fan_in) (fan_in as torch computes it) and, when large, reach near it.
    ours, theirs = make(L), make(torch.nn)
    state, tstate = ours.state_dict(), theirs.state_dict()
    assert list(state) == list(tstate)
    random = "weight" in tstate and tstate["weight"].ndim > 1
    if random:
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
        bound = 1 / math.sqrt(fan_in)
    for key, value in state.items():
        t = tstate[key].numpy()
        assert value.shape == t.shape and value.dtype == t.dtype, key
        if random:
            for arr in (value, t):
                assert np.abs(arr).max() <= bound, key
                if arr.size >= 500:
                    assert np.abs(arr).max() > 0.95 * bound, key
        else:  # BatchNorm: constants
            np.testing.assert_array_equal(value, t, err_msg=key)
