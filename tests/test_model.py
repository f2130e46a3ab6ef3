"""cnn.model.Sequential: gradients of a whole network, torch parity, state dicts, files, summary."""
import json
import os

import numpy as np
import pytest

import cnn.layers as L
from cnn.model import Sequential
from gradcheck import numerical_grad


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def every_layer(nn, rng=None):
    """A network with every layer type; nn is cnn.layers or torch.nn. Input (N, 2, 8, 8)."""
    kw = {} if rng is None else {"rng": rng}
    return [
        nn.Conv2d(2, 4, 3, padding=1, **kw),            # (N, 4, 8, 8)
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),                                 # (N, 4, 4, 4)
        nn.ConvTranspose2d(4, 3, 2, stride=2, **kw),    # (N, 3, 8, 8)
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2),                                 # (N, 3, 4, 4)
        nn.Dropout(0.3, **kw),
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect", **kw),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(3),                         # (N, 4, 3, 3): uneven windows
        nn.Flatten(2),                                   # (N, 4, 9)
        nn.Conv1d(4, 5, 3, padding=1, **kw),             # (N, 5, 9)
        nn.BatchNorm1d(5),
        nn.MaxPool1d(2),                                 # (N, 5, 4)
        nn.AvgPool1d(2),                                 # (N, 5, 2)
        nn.Identity(),
        nn.Flatten(),                                    # (N, 10)
        nn.Linear(10, 6, **kw),
        nn.BatchNorm1d(6),
        nn.Sigmoid(),
        nn.Linear(6, 3, **kw),
    ]


# ---------------------------------------------------------------- gradients
def test_whole_network_gradients_match_finite_differences():
    model = Sequential(
        L.Conv2d(2, 3, 3, padding=1, rng=0), L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2),
        L.ConvTranspose2d(3, 2, 2, stride=2, rng=1), L.AvgPool2d(2), L.Flatten(),
        L.Linear(8, 3, rng=2),
    ).astype(np.float64)
    model.needs_input_grad = True
    x = _rand((3, 2, 4, 4), seed=1)
    weights = _rand((3, 3), seed=2)  # loss = sum(out * weights)

    def loss():
        return float(np.sum(model(x) * weights))

    model(x)
    grad_input = model.backward(weights)
    np.testing.assert_allclose(grad_input, numerical_grad(loss, x), rtol=1e-6, atol=1e-8)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, numerical_grad(loss, p.data), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_first_layer_skips_its_input_gradient():
    model = Sequential(L.Conv2d(1, 2, 3, rng=0), L.ReLU(), L.Flatten(), L.Linear(8, 2, rng=1))
    x = np.ones((2, 1, 4, 4), np.float32)
    assert model.needs_input_grad is False
    model(x)
    assert model.backward(np.ones((2, 2), np.float32)) is None
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.needs_input_grad = True
    model(x)
    assert model.backward(np.ones((2, 2), np.float32)).shape == x.shape
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    # the first conv shared with a second network, where it is not first, still passes its
    # gradient on after the first network turned its input gradient off
    model.needs_input_grad = False
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    other = Sequential(L.Identity(), model[0])
    other(x)
    assert other.backward(np.ones((2, 2, 2, 2), np.float32)).shape == x.shape


def test_eval_mode_keeps_no_cache_anywhere():
    model = Sequential(*every_layer(L, rng=0))
    x = _rand((4, 2, 8, 8)).astype(np.float32)
    model(x)
    assert all(layer._cache is not None for layer in model if not isinstance(layer, L.Identity))
    model.eval()
    model(x)
    for layer in model:
        assert layer._cache is None and not layer.training
        arrays = {k for k, v in vars(layer).items() if isinstance(v, np.ndarray)}
        assert arrays <= set(layer._buffer_names)


# ---------------------------------------------------------------- the container
def test_sequential_container():
    layers = [L.Conv2d(1, 2, 3, rng=0), L.ReLU(), L.Flatten()]
    model = Sequential(*layers)
    assert len(model) == 3 and model[0] is layers[0] and model[-1] is layers[2]
    assert list(model) == layers
    assert isinstance(model[1:], Sequential) and list(model[1:]) == layers[1:]
    assert model.parameters() == [layers[0].weight, layers[0].bias]
    assert model.eval() is model and not any(layer.training for layer in model)
    assert model.train() is model and all(layer.training for layer in model)
    with pytest.raises(TypeError, match="layer 1"):
        Sequential(L.ReLU(), "relu")
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))\n"
        "  (1): ReLU()\n"
        "  (2): Flatten(start_dim=1, end_dim=-1)\n"
        ")")


def test_astype():
    model = Sequential(L.Conv2d(1, 2, 3, rng=0), L.BatchNorm2d(2))
    w32 = model[0].weight.data.copy()
    assert model.astype(np.float64) is model
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    assert model[1].running_var.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64
    np.testing.assert_array_equal(model[0].weight.data, w32)  # float32 widens exactly
    assert model(np.zeros((2, 1, 4, 4))).dtype == np.float64
    with pytest.raises(TypeError, match="float32"):
        model(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(TypeError):
        model.astype(np.int32)


# ---------------------------------------------------------------- state dicts
def test_state_dict_round_trip_is_bit_exact():
    a, b = Sequential(*every_layer(L, rng=0)), Sequential(*every_layer(L, rng=1))
    a(_rand((4, 2, 8, 8)).astype(np.float32))  # move the running statistics off their start
    state = a.state_dict()
    b.load_state_dict(state)
    for key, value in b.state_dict().items():
        assert value.dtype == state[key].dtype
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    # a copy: training a does not change a state dict taken before
    a[0].weight.data += 1
    assert not np.array_equal(a.state_dict()["0.weight"], state["0.weight"])
    # loading writes in place: arrays an optimiser holds stay the parameters
    held = b[0].weight.data
    b.load_state_dict(a.state_dict())
    assert b[0].weight.data is held
    np.testing.assert_array_equal(held, a[0].weight.data)


def test_load_state_dict_errors_name_the_key():
    model = Sequential(L.Conv2d(1, 2, 3, rng=0), L.BatchNorm2d(2))
    good = model.state_dict()
    missing = {k: v for k, v in good.items() if k != "1.running_var"}
    with pytest.raises(ValueError, match=r"missing key\(s\) '1.running_var'"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) '2.weight'"):
        model.load_state_dict({**good, "2.weight": np.zeros(2)})
    with pytest.raises(ValueError, match=r"'0.weight'.*\(2, 1, 5, 5\).*\(2, 1, 3, 3\)"):
        model.load_state_dict({**good, "0.weight": np.zeros((2, 1, 5, 5))})
    with pytest.raises(TypeError, match="'0.bias'"):
        model.load_state_dict({**good, "0.bias": np.array(["a", "b"])})
    with pytest.raises(TypeError):
        model.load_state_dict([1, 2])
    # nothing was changed by the failed loads
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, good[key])


def test_nested_sequential_keys():
    model = Sequential(Sequential(L.Conv2d(1, 2, 3, rng=0), L.BatchNorm2d(2)), L.ReLU())
    assert list(model.state_dict()) == [
        "0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "0.1.running_mean",
        "0.1.running_var", "0.1.num_batches_tracked"]
    assert repr(model).startswith("Sequential(\n  (0): Sequential(\n    (0): Conv2d(")


# ---------------------------------------------------------------- files
def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = Sequential(*every_layer(L, rng=0))
    x = _rand((4, 2, 8, 8)).astype(np.float32)
    model(x)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Sequential.load(path)
    assert repr(loaded) == repr(model)
    for key, value in loaded.state_dict().items():
        expected = model.state_dict()[key]
        assert value.dtype == expected.dtype
        np.testing.assert_array_equal(value, expected, err_msg=key)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))
    # float64 models stay float64; non-default arguments survive
    model = Sequential(L.Conv2d(2, 4, (3, 2), stride=2, padding="valid", groups=2, bias=False),
                       L.BatchNorm1d(3, momentum=None, affine=False),
                       L.MaxPool1d(3, stride=1, ceil_mode=True), L.AvgPool2d((2, 1), divisor_override=3),
                       L.AdaptiveAvgPool2d((None, 2)), L.LeakyReLU(0.25),
                       Sequential(L.Linear(2, 3, bias=False), L.Dropout(0.1))).astype(np.float64)
    model.save(str(path))  # overwrites
    loaded = Sequential.load(str(path))
    assert loaded.get_config() == model.get_config()
    assert loaded[0].weight.dtype == np.float64
    for key, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[key])
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    Sequential(L.Linear(2, 2, rng=0)).save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        Sequential(L.Linear(2, 2, rng=1)).save(path)
    assert path.read_bytes() == before  # the old file is whole
    assert os.listdir(tmp_path) == ["model.npz"]  # and the temporary file is gone


def _meta(path):
    with np.load(path) as f:
        return json.loads(str(f["__cnn_model__"][()])), {k: f[k] for k in f.files}


def test_bad_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    Sequential(L.Conv2d(1, 2, 3, rng=0), L.ReLU()).save(good)
    data = good.read_bytes()
    meta, arrays = _meta(good)

    cases = {}
    cases["truncated.npz"] = data[: len(data) // 2]
    cases["empty.npz"] = b""
    cases["text.npz"] = b"hello, world\n" * 10
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    np.save(tmp_path / "array.npy", np.arange(3))
    np.savez(tmp_path / "pickled.npz", **{**arrays, "0.weight": np.array([{"x": 1}], dtype=object)})
    for name, version in (("newer.npz", 99), ("noversion.npz", None)):
        np.savez(tmp_path / name, **{**arrays, "__cnn_model__": np.array(json.dumps(
            {**meta, "version": version}))})
    np.savez(tmp_path / "notjson.npz", **{**arrays, "__cnn_model__": np.array("{not json")})
    np.savez(tmp_path / "otherformat.npz",
             **{**arrays, "__cnn_model__": np.array(json.dumps({**meta, "format": "keras"}))})
    np.savez(tmp_path / "badclass.npz", **{**arrays, "__cnn_model__": np.array(json.dumps(
        {**meta, "architecture": {"layers": [{"class": "os.system", "config": {}}]}}))})
    np.savez(tmp_path / "missingkey.npz", **{k: v for k, v in arrays.items() if k != "0.bias"})
    np.savez(tmp_path / "extrakey.npz", **arrays, **{"5.weight": np.zeros(1)})
    np.savez(tmp_path / "badshape.npz", **{**arrays, "0.weight": np.zeros((2, 1, 5, 5), np.float32)})

    expected = {
        "truncated.npz": "not a cnn model file", "empty.npz": "not a cnn model file",
        "text.npz": "not a cnn model file", "foreign.npz": "not a cnn model file",
        "array.npy": "not an .npz", "pickled.npz": "pickled",
        "newer.npz": "version 99 is not supported", "noversion.npz": "version None",
        "notjson.npz": "not valid JSON", "otherformat.npz": "'keras'",
        "badclass.npz": "unknown class 'os.system'",
        "missingkey.npz": "missing key.*'0.bias'", "extrakey.npz": "unexpected key.*'5.weight'",
        "badshape.npz": r"'0.weight'.*\(2, 1, 5, 5\)",
    }
    for name, match in expected.items():
        with pytest.raises(ValueError, match=match) as info:
            Sequential.load(tmp_path / name)
        assert name in str(info.value), name  # the message names the file
    with pytest.raises(FileNotFoundError):
        Sequential.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------- summary
def test_summary_numbers_worked_by_hand():
    model = Sequential(
        L.Conv2d(1, 2, 3, padding=1, rng=0),            # 0
        L.ReLU(),                                       # 1
        L.MaxPool2d(2),                                 # 2
        L.Conv2d(2, 4, 3, padding=2, dilation=2, rng=0),  # 3
        L.Conv2d(4, 4, 2, stride=2, rng=0),              # 4
        L.Flatten(),                                    # 5
        L.Linear(16, 10, rng=0),                        # 6
    )
    lines = []
    s = model.summary((1, 8, 8), print_fn=lines.append)
    # Output shapes: 8x8 -> conv 3, pad 1 keeps 8x8 -> pool 2 gives 4x4 -> dilated conv
    # (span 2*(3-1)+1 = 5, pad 2: 4 + 4 - 5 + 1 = 4) keeps 4x4 -> conv 2 stride 2 gives 2x2
    # -> flatten 4*2*2 = 16 -> 10.
    assert [r.output_shape for r in s.layers] == [
        (1, 2, 8, 8), (1, 2, 8, 8), (1, 2, 4, 4), (1, 4, 4, 4), (1, 4, 2, 2), (1, 16), (1, 10)]
    # Parameters: 2*1*3*3 + 2 = 20; 4*2*3*3 + 4 = 76; 4*4*2*2 + 4 = 68; 16*10 + 10 = 170.
    assert [r.params for r in s.layers] == [20, 0, 0, 76, 68, 0, 170]
    assert s.total_params == 20 + 76 + 68 + 170 == 334
    # Multiply-adds: outputs x taps per output.
    # conv0: (2*8*8) * (1*3*3) = 128 * 9 = 1152; conv3: (4*4*4) * (2*3*3) = 64 * 18 = 1152;
    # conv4: (4*2*2) * (4*2*2) = 16 * 16 = 256; linear: 10 * 16 = 160.
    assert [r.macs for r in s.layers] == [1152, 0, 0, 1152, 256, 0, 160]
    assert s.total_macs == 2720
    # Receptive field r, jump j, start (centre of the first output's field, pixel centres 0..7):
    # conv0 (k3 s1 p1):   r = 1 + 2*1 = 3,   j = 1, start = 0 + (1 - 1)*1 = 0
    # pool  (k2 s2 p0):   r = 3 + 1*1 = 4,   j = 2, start = 0 + (0.5 - 0)*1 = 0.5
    # conv3 (k3 d2 p2, dilated span 4): r = 4 + 4*2 = 12, j = 2, start = 0.5 + (2 - 2)*2 = 0.5
    # conv4 (k2 s2 p0):   r = 12 + 1*2 = 14, j = 4, start = 0.5 + (0.5 - 0)*2 = 1.5
    # linear: a 2x2 kernel over the 2x2 map: r = 14 + 1*4 = 18, j = 4,
    #         start = 1.5 + 0.5*4 = 3.5 (the centre of the 8-pixel image)
    assert [r.receptive_field for r in s.layers] == [
        (3, 3), (3, 3), (4, 4), (12, 12), (14, 14), (14, 14), (18, 18)]
    assert [r.jump for r in s.layers] == [(1, 1), (1, 1), (2, 2), (2, 2), (4, 4), (4, 4), (4, 4)]
    assert [r.start for r in s.layers] == [
        (0, 0), (0, 0), (0.5, 0.5), (0.5, 0.5), (1.5, 1.5), (1.5, 1.5), (3.5, 3.5)]
    # Activations (float32): 128 + 128 + 32 + 64 + 16 + 16 + 10 = 394 values = 1576 bytes.
    assert s.activation_bytes == 394 * 4
    assert lines == [str(s)] and "18x18" in lines[0]
    assert "Total parameters: 334" in lines[0]
    # a batch scales shapes, multiply-adds and memory, not the parameters
    s8 = model.summary((1, 8, 8), batch_size=8, print_fn=None)
    assert s8.total_macs == 8 * 2720 and s8.activation_bytes == 8 * 1576 and s8.total_params == 334


def test_summary_1d_transposed_and_modes():
    # 1-D: conv k5 s2 p2 on L = 16: r = 5, j = 2, start = 0 + (2 - 2) = 0;
    # maxpool k2: r = 5 + 1*2 = 7, j = 4, start = 0 + 0.5*2 = 1
    model = Sequential(L.Conv1d(1, 2, 5, stride=2, padding=2, rng=0), L.BatchNorm1d(2),
                       L.MaxPool1d(2))
    s = model.summary((1, 16), print_fn=None)
    assert [r.receptive_field for r in s.layers] == [(5,), (5,), (7,)]
    assert [r.jump for r in s.layers] == [(2,), (2,), (4,)]
    assert [r.start for r in s.layers] == [(0,), (0,), (1,)]
    assert s.layers[1].macs == 2 * 8  # BatchNorm: one multiply-add an output once folded
    assert model[1].training and model[1].num_batches_tracked == 0  # modes restored, stats untouched
    # transposed k2 s2 after a stride-2 pool: each output sees one input, the jump halves,
    # and its first output sits a quarter of the input jump before the input's first:
    # pool: r 2, j 2, start 0.5; convT: r 2, j 1, start 0.5 + (0 - 1)/(2*2) * 2 = 0
    s = Sequential(L.MaxPool2d(2), L.ConvTranspose2d(1, 1, 2, stride=2, rng=0)).summary(
        (1, 4, 4), print_fn=None)
    assert s.layers[1].receptive_field == (2, 2) and s.layers[1].jump == (1, 1)
    assert s.layers[1].start == (0, 0)
    # uneven adaptive windows have no single jump; feature vectors have no spatial axes
    s = Sequential(L.AdaptiveAvgPool2d(3)).summary((1, 7, 7), print_fn=None)
    assert s.layers[0].receptive_field is None
    s = Sequential(L.Linear(4, 2, rng=0)).summary((4,), print_fn=None)
    assert s.layers[0].receptive_field is None and s.total_macs == 8


# ---------------------------------------------------------------- against torch
@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(n)


def _torch_state(state, torch):
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def _close(got, expected, rtol, name="", scale=None):
    # The tolerance scales with the largest entry (of the array, or `scale`): sums
    # that cancel to nearly zero keep the absolute error of their terms, not a
    # relative one (the bias gradient of a conv before BatchNorm is exactly 0 in theory).
    expected = np.asarray(expected)
    scale = np.abs(expected).max() if scale is None else scale
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_layer_network_matches_torch(torch, dtype, rtol):
    ours = Sequential(*every_layer(L, rng=0)).astype(dtype)
    theirs = torch.nn.Sequential(*every_layer(torch.nn))
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    assert repr(ours) == str(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(_torch_state(ours.state_dict(), torch))
    ours.needs_input_grad = True

    x = _rand((4, 2, 8, 8), seed=1).astype(dtype)
    grad_out = _rand((4, 3), seed=2).astype(dtype)
    out = ours(x)
    # Dropout masks come from different generators: in training, torch gets ours
    mask = torch.from_numpy(ours[7]._cache[0])

    class Mask(torch.nn.Module):
        def forward(self, t):
            return t * mask

    dropout, theirs[7] = theirs[7], Mask()
    tx = torch.tensor(x, requires_grad=True)
    tout = theirs(tx)
    _close(out, tout.detach().numpy(), rtol, "logits")
    tout.backward(torch.from_numpy(grad_out))
    _close(ours.backward(grad_out), tx.grad.numpy(), rtol, "input gradient")
    tparams = dict(theirs.named_parameters())
    scale = max(np.abs(p.grad.numpy()).max() for p in tparams.values())
    for name, p in ours.named_parameters():
        _close(p.grad, tparams[name].grad.numpy(), rtol, name, scale)
    tstate = theirs.state_dict()
    for name, value in ours.state_dict().items():  # running statistics after a training pass
        _close(value, tstate[name].numpy(), rtol, name)

    theirs[7] = dropout
    ours.eval()
    theirs.eval()
    _close(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol, "eval logits")


def test_torch_state_dict_loads_as_is_and_back(torch, tmp_path):
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(*every_layer(torch.nn))
    x = _rand((4, 2, 8, 8), seed=3).astype(np.float32)
    theirs(torch.from_numpy(x))  # non-trivial running statistics
    theirs.eval()
    ours = Sequential(*every_layer(L))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-4, atol=1e-6)
    # through a file, and back into a fresh torch model
    ours.save(tmp_path / "m.npz")
    again = torch.nn.Sequential(*every_layer(torch.nn)).eval()
    again.load_state_dict(_torch_state(Sequential.load(tmp_path / "m.npz").state_dict(), torch))
    np.testing.assert_array_equal(again(torch.from_numpy(x)).detach().numpy(), expected)
