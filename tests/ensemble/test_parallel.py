"""joblib n_jobs, and the same code on a Dask cluster through joblib's dask backend."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ensemble.ens_helpers import small_members

import slimstack as ss


def _models():
    return [ss.StackingEnsemble(small_members(), cv=3, random_state=0),
            ss.VotingEnsemble(small_members(), weights="learn", cv=3, random_state=0)]


def test_n_jobs_gives_identical_predictions(data3):
    X, y = data3
    for serial, parallel in zip(_models(), _models()):
        a = serial.fit(X, y).predict_proba(X)
        b = parallel.set_params(n_jobs=2).fit(X, y).predict_proba(X)
        np.testing.assert_array_equal(a, b)


def test_dask_backend_gives_identical_predictions(data3):
    distributed = pytest.importorskip("distributed")
    import joblib

    X, y = data3
    expected = [m.fit(X, y).predict_proba(X) for m in _models()]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            models = [m.set_params(n_jobs=-1) for m in _models()]
            got = [m.fit(X, y).predict_proba(X) for m in models]
        # the fold fits ran as tasks on the cluster: 3 members x 3 folds per model, in joblib batches
        assert len(stream.data) >= 2
        assert len(client.scheduler_info()["workers"]) == 2
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
