"""The scripts run: scripts/soak.py end to end, its failure path, and its checks.

The soak's own loop runs in a child process (as a user runs it); its failure
reporting and checks are exercised in-process on a stubbed or tampered estimator.
"""
import importlib.util
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", os.path.join(SCRIPTS, "soak.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _counts(output):
    """The summary table's counters, as {name: int}."""
    return {m.group(1).strip(): int(m.group(2))
            for m in re.finditer(r"^([a-zA-Z][a-zA-Z ]+?)\s{2,}(\d+)$", output, re.M)}


def test_soak_runs_a_few_iterations_and_reports_counts():
    result = subprocess.run([sys.executable, os.path.join(SCRIPTS, "soak.py"), "--fits", "4",
                             "--seed", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = _counts(result.stdout)
    assert counts["iterations"] == 4 and counts["failures"] == 0
    assert counts["fits"] + counts["clear errors"] == 4
    # every fit that got through was predicted and reloaded, the Sequential twice
    # (the fitted network and a random one)
    assert counts["predictions"] == counts["estimator reloads"] == counts["fits"] >= 1
    assert counts["Sequential reloads"] == 2 * counts["fits"]
    assert re.search(r"^RSS end\s+\d+ MiB$", result.stdout, re.M)
    assert result.stdout.rstrip().endswith("OK")


def test_soak_reports_a_failure_with_its_configuration_and_exits_1(soak, monkeypatch, capsys):
    def broken(clf, X_test, counts):
        raise soak.Failure("predict_proba is not finite (stubbed)")

    monkeypatch.setattr(soak, "check_predictions", broken)
    monkeypatch.setattr(sys, "argv", ["soak.py", "--fits", "2", "--seed", "0"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_info:
            soak.main()
    finally:
        signal.signal(signal.SIGINT, handler)  # main installs its Ctrl-C handler
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert _counts(out)["failures"] >= 1
    assert "in predict: Failure: predict_proba is not finite (stubbed)" in out
    assert "config: {" in out and "repeat: python3 scripts/soak.py --seed 0 --iteration" in out
    assert out.rstrip().endswith("FAIL")


def test_soak_configurations_depend_only_on_seed_and_iteration(soak):
    first = soak.draw_config(np.random.default_rng([3, 17]))
    assert soak.draw_config(np.random.default_rng([3, 17])) == first
    assert soak.draw_config(np.random.default_rng([3, 18])) != first


def test_soak_reload_check_catches_a_changed_weight(soak, tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    from cnn import CNNClassifier

    X, y = load_digits(return_X_y=True)
    clf = CNNClassifier(conv_channels=(2,), dense_units=(), max_iter=1, batch_size=50,
                        random_state=0).fit(X[:100], y[:100])
    counts = dict.fromkeys(soak.COUNTERS, 0)
    proba = soak.check_predictions(clf, X[:10], counts)
    soak.check_reload(clf, X[:10], proba, str(tmp_path), counts)
    assert counts["predictions"] == counts["estimator reloads"] == 1
    assert counts["Sequential reloads"] == 1

    load = CNNClassifier.load

    def load_and_nudge(path):
        loaded = load(path)
        weight = loaded.model_.parameters()[0].data
        weight.flat[0] = np.nextafter(weight.flat[0], np.float32(np.inf))  # one ulp
        return loaded

    monkeypatch.setattr(CNNClassifier, "load", staticmethod(load_and_nudge))
    with pytest.raises(soak.Failure, match="not bit-identical"):
        soak.check_reload(clf, X[:10], proba, str(tmp_path), counts)
