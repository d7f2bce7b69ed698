from __future__ import annotations

import pytest
from tests.ensemble.ens_helpers import small_members
from sklearn.datasets import make_classification


@pytest.fixture(scope="session")
def data3():
    """300 rows, 3 classes: small enough that every test file stays fast."""
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3, random_state=0)
    return X, y


@pytest.fixture(scope="session")
def data2():
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=1)
    return X, y


@pytest.fixture
def members():
    return small_members()
