"""The public surface: every exported name exists and is documented."""

import inspect

import slimstack as ss


def test_every_name_in_all_exists_and_is_documented():
    missing = [n for n in ss.__all__ if not hasattr(ss, n)]
    assert missing == []
    undocumented = [
        n for n in ss.__all__
        if (inspect.isclass(getattr(ss, n)) or inspect.isfunction(getattr(ss, n)) or inspect.ismodule(getattr(ss, n)))
        and not (getattr(ss, n).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_foundation_names_from_api_md():
    for name in ("datasets", "zoo", "measure", "compare", "save", "load", "SlimstackError"):
        assert name in ss.__all__
    for name in ("load", "Dataset"):
        assert hasattr(ss.datasets, name)
    for name in ("digits_cnn", "digits_mlp", "train", "minilm"):
        assert hasattr(ss.zoo, name)


def test_errors_derive_from_builtin_kinds():
    assert issubclass(ss.DataError, ValueError)
    assert issubclass(ss.ModelFileError, OSError)
    assert issubclass(ss.UnsafeFileError, ss.SlimstackError)
