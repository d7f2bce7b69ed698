"""ss.save / ss.load of a user's own nn.Module subclass, pruned or not: no registration, no pickle."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn

import slimstack as ss


class Block(nn.Module):
    def __init__(self, c: int, scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.scale = scale  # a plain attribute forward reads

    def forward(self, x):
        return torch.relu(x + self.scale * self.conv2(torch.relu(self.bn(self.conv1(x)))))


class TinyResNet(nn.Module):
    """Constructor arguments the saver never sees (``depth``, ``width``), nested blocks, a buffer."""

    def __init__(self, depth: int = 2, width: int = 6, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(Block(width, 0.5 + i) for i in range(depth))
        self.head = nn.Linear(width, classes)
        self.register_buffer("offset", torch.linspace(-1, 1, classes))
        self.pool_dims = (2, 3)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean(self.pool_dims)) + self.offset


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4)
        self.out = nn.Linear(4, 11, bias=False)
        self.out.weight = self.emb.weight  # one tensor, two names
        self.again = self.emb  # one module, two places

    def forward(self, ids):
        return self.out(self.again(ids))


def _x():
    return torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_own_class_round_trips_without_registration_or_pickle(tmp_path):
    torch.manual_seed(0)
    model = TinyResNet(depth=3, width=5).eval()
    path = ss.save(model, tmp_path / "m")
    manifest = json.loads((path / "slimstack.json").read_text())
    assert manifest["format"] == "module_tree" and manifest["spec"]["class"] == f"{__name__}:TinyResNet"
    assert _files(path) == ["model.safetensors", "slimstack.json"]
    loaded = ss.load(path)
    assert type(loaded) is TinyResNet and len(loaded.blocks) == 3 and loaded.pool_dims == (2, 3)
    assert [b.scale for b in loaded.blocks] == [0.5, 1.5, 2.5]
    assert not loaded.training and all(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded(_x()), model(_x()))


@pytest.mark.parametrize("config", [ss.StructuredPruning(ratio=0.5), ss.MagnitudePruning(sparsity=0.7),
                                    ss.NMPruning(n=2, m=4)], ids=["structured", "magnitude", "nm"])
def test_pruned_own_class_round_trips(tmp_path, config):
    torch.manual_seed(1)
    model = TinyResNet(depth=2, width=8).eval()
    pruned = ss.prune(model, config, example_inputs=_x()).model
    ss.save(pruned, tmp_path / "p")
    loaded = ss.load(tmp_path / "p")
    assert type(loaded) is TinyResNet
    assert [m.weight.shape for m in loaded.modules() if isinstance(m, nn.Conv2d)] == \
           [m.weight.shape for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    if isinstance(config, ss.StructuredPruning):
        assert loaded.stem.out_channels == pruned.stem.out_channels < 8
    torch.testing.assert_close(loaded(_x()), pruned(_x()))


def test_shared_tensors_and_modules_stay_shared(tmp_path):
    torch.manual_seed(2)
    model = Tied().eval()
    ss.save(model, tmp_path / "t")
    loaded = ss.load(tmp_path / "t")
    assert loaded.out.weight is loaded.emb.weight and loaded.again is loaded.emb
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(ids), model(ids))


def _write_package(root, name):
    (root / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 3)
                self.gain = 2.0

            def forward(self, x):
                return self.gain * self.fc(x)
    """))


def test_a_class_from_a_module_not_imported_needs_import_or_trusted(tmp_path, monkeypatch):
    name = "slimstack_usermodels_probe"
    _write_package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(name)
    torch.manual_seed(3)
    model = mod.Net().eval()
    ss.save(model, tmp_path / "m")
    x = torch.randn(2, 4)
    del sys.modules[name]  # a fresh program that has not imported it
    with pytest.raises(ss.UnsafeFileError, match=rf"class {name}\.Net.*`import {name}` before ss.load.*trusted=True"):
        ss.load(tmp_path / "m")
    assert name not in sys.modules  # refusing did not run the module
    loaded = ss.load(tmp_path / "m", trusted=True)
    torch.testing.assert_close(loaded(x), model(x))
    del sys.modules[name]
    (tmp_path / f"{name}.py").unlink()
    with pytest.raises(ss.ModelFileError, match=rf"class {name}\.Net is not importable.*PYTHONPATH"):
        ss.load(tmp_path / "m", trusted=True)
    sys.modules.pop(name, None)


def test_a_class_from_the_saving_script_is_found_in_the_loading_script(tmp_path, monkeypatch):
    main = sys.modules["__main__"]
    Script = type("ScriptNet", (nn.Module,), {"__module__": "__main__", "__qualname__": "ScriptNet",
                                              "forward": lambda self, x: self.fc(x) * 3})
    monkeypatch.setattr(main, "ScriptNet", Script, raising=False)
    model = Script()
    model.fc = nn.Linear(2, 2)
    ss.save(model, tmp_path / "s")
    x = torch.randn(1, 2)
    torch.testing.assert_close(ss.load(tmp_path / "s")(x), model(x))
    monkeypatch.delattr(main, "ScriptNet")
    with pytest.raises(ss.ModelFileError, match=r"class __main__\.ScriptNet, defined in the script that saved.*define "
                                                r"or import a class of that name"):
        ss.load(tmp_path / "s")


def test_what_cannot_be_described_is_named(tmp_path):
    def local():
        class Inner(nn.Module):
            def forward(self, x):
                return x
        return Inner()

    with pytest.raises(ss.ModelError, match=r"module '<root>'.*Inner is defined inside a function"):
        ss.save(local(), tmp_path / "a")
    model = TinyResNet()
    model.blocks[1].act = None
    model.blocks[0].fn = lambda t: t
    with pytest.raises(ss.ModelError, match=r"TinyResNet\.fn = builtins\.function|blocks\.0\.fn = builtins\.function"):
        ss.save(model, tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("cls", ["os:system", "subprocess:Popen", "builtins:eval"])
def test_a_tampered_tree_cannot_name_a_non_module(tmp_path, cls):
    ss.save(Tied(), tmp_path / "t")
    manifest_file = tmp_path / "t" / "slimstack.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["spec"]["tree"]["root"]["class"] = cls
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ss.ModelFileError, match="not an nn.Module class"):
        ss.load(tmp_path / "t")
