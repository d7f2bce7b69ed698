"""Saved folders: paths stay inside the folder, ss.save never replaces what it did not write, replacement
is atomic and leftovers are cleaned, folders are private, and damaged manifests give one clear error."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import slimstack as ss
from slimstack.cli import main as cli

@pytest.fixture(scope="module")
def iris():
    return ss.datasets.load("iris")


@pytest.fixture(scope="module")
def lr(iris):
    return LogisticRegression(max_iter=500).fit(iris.X, iris.y)


def _manifest(folder: Path, fmt: str, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slimstack.json").write_text(json.dumps({"format": fmt, "format_version": 1, "spec": spec}))
    return folder


# --- item 2: every path in a manifest stays inside the folder ---------------------------------------

@pytest.mark.parametrize(("fmt", "spec"), [
    ("sklearn", {"file": "OUTSIDE"}),  # absolute path of a file elsewhere
    ("sklearn", {"file": "../elsewhere/model.skops"}),
    ("onnx", {"file": "sub/../../elsewhere/model.onnx"}),
    ("sentence_encoder", {"encoder": "../elsewhere"}),
    ("torch_int8", {"skeleton": {"encoder": "/etc"}, "layers": {}}),
    ("onnxruntime_model", {"file": "model.onnx", "kind": "encoder", "tokenizer": "../../tok"}),
])
def test_manifest_paths_outside_the_folder_are_refused(tmp_path, lr, fmt, spec):
    elsewhere = ss.save(lr, tmp_path / "elsewhere")
    spec = json.loads(json.dumps(spec).replace("OUTSIDE", str(elsewhere / "model.skops")))
    folder = _manifest(tmp_path / "innocent", fmt, spec)
    with pytest.raises(ss.ModelFileError, match=r"not a relative path inside the folder"):
        ss.load(folder)


def test_symlink_leading_outside_is_refused(tmp_path, lr):
    elsewhere = ss.save(lr, tmp_path / "elsewhere")
    folder = _manifest(tmp_path / "innocent", "sklearn", {"file": "model.skops"})
    (folder / "model.skops").symlink_to(elsewhere / "model.skops")
    with pytest.raises(ss.ModelFileError, match=r"symlink to .* outside the model folder"):
        ss.load(folder)
    # a link to a folder outside, holding files the loaders read without naming them
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "weights").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ss.ModelFileError, match="outside the model folder"):
        ss.load(hf)


def test_links_inside_the_folder_and_a_linked_folder_still_load(tmp_path, lr, iris):
    saved = ss.save(lr, tmp_path / "m")
    (saved / "sub").mkdir(mode=0o700)
    (saved / "model.skops").rename(saved / "sub" / "real.skops")
    (saved / "model.skops").symlink_to(Path("sub") / "real.skops")
    np.testing.assert_array_equal(ss.load(saved).predict(iris.X), lr.predict(iris.X))
    (tmp_path / "link").symlink_to(saved, target_is_directory=True)
    np.testing.assert_array_equal(ss.load(tmp_path / "link").predict(iris.X), lr.predict(iris.X))


# --- item 3: ss.save replaces only what it wrote ----------------------------------------------------

def test_save_refuses_a_users_folder_and_file(tmp_path, lr):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ss.ModelFileError, match=r"did not write .* choose another path"):
        ss.save(lr, mine)
    assert (mine / "thesis.tex").read_text() == "years of work"
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    with pytest.raises(ss.ModelFileError, match="is a file that ss.save did not write"):
        ss.save(lr, f)
    assert f.read_text() == "keep"


def test_save_replaces_its_own_folder_but_not_added_files(tmp_path, lr, iris):
    path = ss.save(ss.zoo.digits_mlp(), tmp_path / "m")
    assert "model.safetensors" in json.loads((path / "slimstack.json").read_text())["files"]
    ss.save(lr, path)  # its own folder: replaced
    np.testing.assert_array_equal(ss.load(path).predict(iris.X), lr.predict(iris.X))
    assert not (path / "model.safetensors").exists()
    (path / "my_notes.md").write_text("added by the user")
    with pytest.raises(ss.ModelFileError, match=r"holds files ss.save did not write \(my_notes.md\)"):
        ss.save(lr, path)
    assert (path / "my_notes.md").exists()
    (tmp_path / "empty").mkdir()
    ss.save(lr, tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "model.skops").exists()


@pytest.mark.parametrize("where", [".", "..", ""])
def test_save_into_the_current_folder_is_refused(tmp_path, monkeypatch, lr, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(work)
    with pytest.raises(ss.ModelFileError, match="the current folder or one above it"):
        ss.save(lr, where)
    assert (work / "data.csv").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_saves_are_cleaned_on_the_next_save(tmp_path, lr):
    dead = _dead_pid()
    tmp_left = tmp_path / f".m.tmp-{dead}-abcd1234"
    old_left = tmp_path / f".m.old-{dead}-abcd1234"
    alive = tmp_path / f".m.tmp-{os.getppid()}-inflight"  # another live process's save: left alone
    for d in (tmp_left, old_left, alive):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"partial")
    ss.save(lr, tmp_path / "m")
    assert not tmp_left.exists() and not old_left.exists() and alive.exists()


def _killed_save(tmp_path: Path, patch) -> None:
    """ss.save(a tree, tmp_path/'m') in a forked child that dies (os._exit, no cleanup) where ``patch`` says."""
    from sklearn.tree import DecisionTreeClassifier

    ds = ss.datasets.load("iris")
    tree = DecisionTreeClassifier(max_depth=1).fit(ds.X, ds.y)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            patch()
            ss.save(tree, tmp_path / "m")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9


def _exit(*_a, **_k):
    os._exit(9)


def test_save_killed_while_writing_keeps_the_old_model(tmp_path, lr, iris, monkeypatch):
    from slimstack.io import _registry

    ss.save(lr, tmp_path / "m")
    _killed_save(tmp_path, lambda: setattr(_registry, "written_files", _exit))
    assert isinstance(ss.load(tmp_path / "m"), LogisticRegression)
    assert list(tmp_path.glob(".m.tmp-*"))  # the dead save's folder ...
    ss.save(lr, tmp_path / "m")
    assert not list(tmp_path.glob(".m.*"))  # ... is gone after the next save


def test_save_killed_after_the_swap_holds_the_new_model(tmp_path, lr):
    from slimstack.io import _replace

    ss.save(lr, tmp_path / "m")
    _killed_save(tmp_path, lambda: setattr(_replace.shutil, "rmtree", _exit))
    assert type(ss.load(tmp_path / "m")).__name__ == "DecisionTreeClassifier"


def test_fallback_save_killed_between_two_renames_is_recovered(tmp_path, lr):
    from slimstack.io import _replace

    def patch():
        real = os.replace

        def once(a, b):
            real(a, b)
            if ".old-" in str(b):
                os._exit(9)

        _replace._exchange = lambda a, b: False
        _replace.os.replace = once

    ss.save(lr, tmp_path / "m")
    _killed_save(tmp_path, patch)
    assert not (tmp_path / "m").exists()
    assert isinstance(ss.load(tmp_path / "m"), LogisticRegression)  # the old model, put back


def test_saved_folders_are_private_whatever_the_umask(tmp_path, lr):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=16, max_position_embeddings=32))
    old = os.umask(0)
    try:
        paths = [ss.save(lr, tmp_path / "a" / "lr"), ss.save(ss.zoo.SentenceEncoder(bert.eval(), tok), tmp_path / "e")]
    finally:
        os.umask(old)
    for path in paths:
        for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# --- item 9: damaged manifests and pickle-only Hugging Face folders ---------------------------------

@pytest.mark.parametrize("content", [b"\x00\xff\xfe\x89PNG\r\n", b"[1, 2]", b'{"format": 3, "spec": {}}',
                                     b'{"format": "torch", "spec": "x"}', "{\"format\": \"torch\"".encode("utf-16")])
def test_binary_or_malformed_manifest_is_one_clear_error(tmp_path, capsys, content):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "slimstack.json").write_bytes(content)
    with pytest.raises(ss.ModelFileError, match=r"slimstack.json' is corrupt.*save the model again"):
        ss.load(folder)
    assert cli(["measure", str(folder), "--data", "iris", "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err


def test_transformers_folder_with_only_pytorch_model_bin(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)).eval()
    folder = tmp_path / "hf"
    bert.config.save_pretrained(folder)
    tok.save_pretrained(folder)
    torch.save(bert.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ss.UnsafeFileError, match=r"pytorch_model.bin, a pickle-based format.*trusted=True"):
        ss.load(folder)
    enc = ss.load(folder, trusted=True)
    torch.testing.assert_close(enc.model.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
