import importlib

import slimstack as ss

# ``ss.prune`` is the subpackage, callable as the verb (``sp.prune``).
sp = importlib.import_module("slimstack.prune")


def test_public_names_exist_and_are_documented():
    for name in sp.__all__:
        obj = getattr(sp, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    assert "prune" in ss.__all__ and ss.prune is sp and sp.__verb__ is sp.prune
    for name in ("MagnitudePruning", "NMPruning", "StructuredPruning", "TreePruning", "PruneResult"):
        assert name in ss.__all__ and getattr(ss, name) is getattr(sp, name)


def test_sparse_and_pruned_encoder_formats_outrank_plain_ones():
    from slimstack.io._registry import _FORMATS

    assert _FORMATS["sparse"].priority > _FORMATS["torch"].priority
    assert _FORMATS["sparse"].priority > _FORMATS["pruned_encoder"].priority > _FORMATS["sentence_encoder"].priority


def test_pack_unpack_round_trip():
    import torch

    from slimstack.prune._sparse_io import pack, unpack

    t = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    values, bits = pack(t)
    assert values.tolist() == [1.5, 2.0, -3.0] and bits.numel() == 1
    assert torch.equal(unpack(values, bits, [2, 3]), t)


def test_corrupt_sparse_file_is_a_clear_error():
    import pytest
    import torch

    from slimstack.prune._sparse_io import pack, unpack

    values, bits = pack(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ss.ModelFileError, match="bitmask marks 2 values but 1 are stored"):
        unpack(values[:1], bits, [3])
