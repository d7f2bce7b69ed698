import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.prune import is_nm, magnitude_masks, polynomial_schedule
from slimstack.prune._eval import quality


def _dir_size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_magnitude_gives_real_zeros_and_leaves_input_alone(cnn):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    r = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.8))
    for k, v in cnn.state_dict().items():
        assert torch.equal(v, before[k])
    for rec in r.record:
        w = r.model.get_submodule(rec.layer).weight
        assert rec.action == "pruned" and rec.after == int(torch.count_nonzero(w))
        assert abs(1 - rec.after / rec.before - 0.8) < 0.01
    assert r.model is not cnn


def test_global_scope_uses_one_threshold():
    w = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    masks = magnitude_masks(w, 0.5, "global")
    assert masks["b"].all()
    assert masks["a"].sum() == 1  # emptied by the global threshold, so its largest weight is kept


def test_polynomial_schedule_reaches_target_fast_then_slow():
    s = polynomial_schedule(0.8, 4)
    assert s[-1] == pytest.approx(0.8) and s[0] > 0.8 / 4 and all(a < b for a, b in zip(s, s[1:], strict=False))


def test_iterative_finetune_keeps_zeros_and_recovers(cnn, digits):
    train, test = digits
    one = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.9))
    it = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.9, schedule="iterative", steps=2, recovery="finetune",
                                           recovery_epochs=1), data=train)
    assert it.summary["sparsity_of_pruned_layers"] >= 0.89
    assert [s["sparsity"] for s in it.summary["steps"]] == [round(x, 4) for x in polynomial_schedule(0.9, 2)]
    assert quality(it.model, test) > quality(one.model, test)


def test_sparse_file_really_shrinks_and_round_trips(cnn, digits, tmp_path):
    ss.save(cnn, tmp_path / "dense")
    r = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.8, scope="global"))
    ss.save(r.model, tmp_path / "sparse")
    dense, sparse = _dir_size(tmp_path / "dense"), _dir_size(tmp_path / "sparse")
    assert sparse < 0.3 * dense  # 20% values + 1/32 bitmask
    back = ss.load(tmp_path / "sparse")
    x = torch.as_tensor(digits[1].X[:8])
    assert torch.equal(back(x), r.model(x))
    assert ss.load(tmp_path / "sparse").__class__ is type(cnn)
    assert (tmp_path / "sparse" / "sparse.safetensors").exists()


def test_nm_pattern_skip_record_and_compact_save(cnn, tmp_path):
    r = ss.prune(cnn, ss.NMPruning(n=2, m=4))
    first = r.layer("features.0")
    assert first.action == "skipped" and "9 inputs, not a multiple of m=4" in first.reason
    for rec in r.pruned:
        assert is_nm(r.model.get_submodule(rec.layer).weight, 2, 4)
        assert rec.after == rec.before // 2
    ss.save(cnn, tmp_path / "dense")
    ss.save(r.model, tmp_path / "nm")
    assert _dir_size(tmp_path / "nm") < 0.6 * _dir_size(tmp_path / "dense")


def test_nm_finetune_keeps_pattern(cnn, digits):
    r = ss.prune(cnn, ss.NMPruning(n=4, m=8, recovery="finetune", recovery_epochs=1), data=digits[0])
    assert all(is_nm(r.model.get_submodule(rec.layer).weight, 4, 8) for rec in r.pruned)
    assert quality(r.model, digits[1]) > 0.85


def test_ignore_is_recorded_and_bad_names_list_near_matches(cnn):
    r = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.5, ignore=("classifier.3",)))
    assert r.layer("classifier.3").action == "skipped" and r.layer("classifier.3").reason == "listed in ignore"
    assert int(torch.count_nonzero(r.model.classifier[3].weight)) == cnn.classifier[3].weight.numel()
    with pytest.raises(ss.UnknownNameError, match="Did you mean 'classifier.3'"):
        ss.prune(cnn, ss.MagnitudePruning(ignore=("clasifier.3",)))


def test_recovery_without_data_says_what_to_pass(cnn):
    with pytest.raises(ss.ConfigError, match="needs data=None|trains on data, but data=None"):
        ss.prune(cnn, ss.MagnitudePruning(recovery="finetune"))


def test_deterministic(cnn, digits):
    a = ss.prune(cnn, ss.NMPruning(recovery="distill", recovery_epochs=1, seed=3), data=digits[0])
    b = ss.prune(cnn, ss.NMPruning(recovery="distill", recovery_epochs=1, seed=3), data=digits[0])
    x = torch.as_tensor(digits[1].X[:16])
    assert np.allclose(a.model(x).detach(), b.model(x).detach())
