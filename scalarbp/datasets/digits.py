"""The embedded default dataset: UCI optical recognition of handwritten digits.

Source: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI
Machine Learning Repository, 1998, https://doi.org/10.24432/C50P49, licensed under
Creative Commons Attribution 4.0 (CC BY 4.0).  These are the 1,797 samples of the UCI
test set (the copy scikit-learn distributes as ``load_digits``): 8x8 images of pixel
counts 0..16, 10 classes.

``data/digits.npz`` stores them as uint8, already split once, stratified by class (seed
20261123): 1,438 training and 359 test samples, about 20% of each class held out.
"""
from importlib import resources

import numpy as np


def load_digits():
    """``(X_train, y_train), (X_test, y_test)``: float64 pixels scaled to [0, 1], int64 labels.

    Shapes: ``(1438, 64)``, ``(1438,)``, ``(359, 64)``, ``(359,)``.
    """
    with resources.files(__package__).joinpath("data", "digits.npz").open("rb") as file:
        with np.load(file, allow_pickle=False) as data:
            parts = {key: data[key] for key in data.files}
    return tuple((parts[f"X_{s}"].astype(np.float64) / 16.0, parts[f"y_{s}"].astype(np.int64))
                 for s in ("train", "test"))
