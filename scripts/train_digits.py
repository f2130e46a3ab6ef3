"""Train CNNClassifier on scikit-learn's digits and compare it with classic classifiers.

    python scripts/train_digits.py                       # train, score, save digits_cnn.npz
    python scripts/train_digits.py --model out.npz --cv  # also 5-fold cross-validation

The data: the 1797 8x8 digits of ``sklearn.datasets.load_digits``, raw pixels
0..16 (no scaler: the estimator fits its own input normalisation), split 80/20,
stratified, ``random_state=0``. The CNN trains with per-epoch progress; then
the script prints its test accuracy, confusion matrix and training time, and
scores ``SVC()``, ``MLPClassifier`` and ``LogisticRegression`` on the same
split. With ``--cv`` it adds scikit-learn's default 5-fold ``cross_val_score``
(unshuffled stratified folds) for the CNN and ``SVC()``.
"""
import argparse
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cnn.estimator import CNNClassifier


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="digits_cnn.npz",
                        help="where to save the fitted CNNClassifier (default: %(default)s)")
    parser.add_argument("--cv", action="store_true",
                        help="also run 5-fold cross_val_score for the CNN and SVC()")
    parser.add_argument("--seed", type=int, default=0,
                        help="the CNN's random_state (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="max_iter of the CNN (default: the estimator's)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return parser.parse_args()


def print_confusion(y_true, y_pred, labels):
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    width = max(3, len(str(matrix.max())) + 1)
    print("Confusion matrix (rows: true digit, columns: predicted digit):")
    print(" " * 4 + "".join(f"{label:>{width}}" for label in labels))
    for label, row in zip(labels, matrix):
        print(f"{label:>3} " + "".join(f"{n:>{width}}" for n in row))


def main():
    args = parse_args()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8, "
          f"pixels {X.min():g}..{X.max():g}; {os.cpu_count()} CPU cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    params = dict(random_state=args.seed, verbose=not args.quiet)
    if args.epochs is not None:
        params["max_iter"] = args.epochs
    clf = CNNClassifier(**params)
    started = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    y_pred = clf.predict(X_test)
    accuracy = accuracy_score(y_test, y_pred)
    print(f"\nCNNClassifier(random_state={args.seed}): test accuracy {100 * accuracy:.2f} % "
          f"({np.sum(y_pred != y_test)} of {len(y_test)} wrong), trained in {seconds:.1f} s "
          f"({clf.n_iter_} epochs)")
    print_confusion(y_test, y_pred, clf.classes_)
    clf.save(args.model)
    print(f"Saved to {args.model}")

    print("\nThe same split, other classifiers:")
    others = {
        "SVC()": SVC(),
        "MLPClassifier(random_state=0)": MLPClassifier(random_state=0),
        "LogisticRegression(max_iter=5000) on scaled pixels":
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    }
    rows = [("CNNClassifier", accuracy, seconds)]
    for name, model in others.items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        rows.append((name, model.score(X_test, y_test), time.perf_counter() - started))
    for name, score, fit_seconds in rows:
        print(f"  {name:<52} {100 * score:6.2f} %   fit {fit_seconds:5.1f} s")

    if args.cv:
        print("\n5-fold cross_val_score on all 1797 digits (unshuffled stratified folds):")
        for name, model in (("CNNClassifier", CNNClassifier(random_state=args.seed)),
                            ("SVC()", SVC())):
            started = time.perf_counter()
            scores = cross_val_score(model, X, y, cv=5)
            print(f"  {name:<14} mean {100 * scores.mean():.2f} %  folds "
                  f"{' '.join(f'{100 * s:.2f}' for s in scores)}  "
                  f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
