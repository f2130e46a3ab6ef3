"""End to end: layers + loss + SGD + the loop train like PyTorch, and learn."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

import cnn
import cnn.layers as L
from cnn.losses import CrossEntropyLoss
from cnn.model import Sequential
from cnn.optim import SGD
from test_model import every_layer


def test_sgd_steps_match_torch():
    """Same logits, loss, gradients, weights and running statistics after SGD steps
    with momentum, nesterov and weight decay, from the same state dict."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = Sequential(*every_layer(L, rng=0)).astype(np.float64)
        theirs = torch.nn.Sequential(*every_layer(torch.nn)).double()
        theirs.load_state_dict({k: torch.from_numpy(np.array(v))
                                for k, v in ours.state_dict().items()})
        ours.needs_input_grad = True

        # Dropout masks come from different generators: torch is given ours, step by step.
        class Mask(torch.nn.Module):
            mask = None

            def forward(self, t):
                return t * self.mask

        theirs[7] = Mask()
        hyper = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
        optimizer = SGD(ours.parameters(), **hyper)
        t_optimizer = torch.optim.SGD(theirs.parameters(), **hyper)
        loss_fn, t_loss_fn = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
        rng = np.random.default_rng(3)
        for step in range(5):
            x = rng.standard_normal((6, 2, 8, 8))
            y = rng.integers(0, 3, size=6)
            optimizer.zero_grad()
            t_optimizer.zero_grad()
            logits = ours(x)
            theirs[7].mask = torch.from_numpy(ours[7]._cache[0])
            tx = torch.tensor(x, requires_grad=True)
            t_logits = theirs(tx)
            np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"logits, step {step}")
            loss = loss_fn(logits, y)
            t_loss = t_loss_fn(t_logits, torch.from_numpy(y))
            assert loss == pytest.approx(t_loss.item(), rel=1e-10), f"loss, step {step}"
            grad_input = ours.backward(loss_fn.backward())
            t_loss.backward()
            np.testing.assert_allclose(grad_input, tx.grad.numpy(), rtol=1e-8, atol=1e-12,
                                       err_msg=f"input gradient, step {step}")
            optimizer.step()
            t_optimizer.step()
        t_state = theirs.state_dict()
        for name, value in ours.state_dict().items():  # weights and running statistics
            np.testing.assert_allclose(value, t_state[name].numpy(), rtol=1e-8, atol=1e-11,
                                       err_msg=name)
    finally:
        torch.set_num_threads(threads)


def test_a_small_network_overfits_32_digits():
    """Learning works end to end: 32 of scikit-learn's digits are learnt to 100 %."""
    digits = load_digits()
    X = (digits.images[:32] / 16.0).reshape(32, 1, 8, 8)
    y = digits.target[:32]
    model = Sequential(
        cnn.Conv2d(1, 8, 3, padding=1, rng=0), cnn.ReLU(), cnn.MaxPool2d(2),
        cnn.Flatten(), cnn.Linear(8 * 4 * 4, 10, rng=1),
    )
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = cnn.fit(model, CrossEntropyLoss(), optimizer, X, y, epochs=60, batch_size=8,
                      rng=0, verbose=0)
    predictions = cnn.predict_batches(model, X).argmax(axis=1)
    assert np.mean(predictions == y) == 1.0
    assert history["loss"][-1] < 0.05 < history["loss"][0]
