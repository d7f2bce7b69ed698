"""ss.save/ss.load of causal LMs and of transformers folders: the class the config names, head kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.llm import CausalLM, HFImageClassifier, HFTextClassifier

from .conftest import TEXT, make_hf_model, make_tokenizer, save_hf


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(ids)[None]).logits[0].numpy()


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral", "phi"])
def test_load_transformers_causal_lm_folder(tmp_path, family):
    folder, model = save_hf(tmp_path, family)
    lm = ss.load(folder)
    assert isinstance(lm, CausalLM) and type(lm.model).__name__ == type(model).__name__
    ids = lm.tokenize(TEXT[:80])
    np.testing.assert_allclose(lm.logprobs(ids)[1], torch.log_softmax(torch.as_tensor(_logits(model, ids)), -1).numpy(),
                               atol=1e-5)


def test_save_load_round_trip_without_pickle_and_tied_weights_once(tmp_path, tiny_llama):
    out = ss.save(tiny_llama, tmp_path / "lm")
    assert json.loads((out / "slimstack.json").read_text())["format"] == "causal_lm"
    files = {p.name for p in out.rglob("*") if p.is_file()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    from safetensors import safe_open

    with safe_open(str(out / "model" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys  # tied: stored once
    back = ss.load(out)
    assert isinstance(back, CausalLM) and back.name == "tiny-llama"
    assert back.model.lm_head.weight is back.model.model.embed_tokens.weight
    ids = tiny_llama.tokenize(TEXT[:80])
    np.testing.assert_array_equal(back.logprobs(ids)[1], tiny_llama.logprobs(ids)[1])
    assert back.generate("The quick", max_new_tokens=4) == tiny_llama.generate("The quick", max_new_tokens=4)


def test_untied_head_round_trips(tmp_path):
    model, tok = make_hf_model("qwen2")
    lm = CausalLM(model, tok)
    back = ss.load(ss.save(lm, tmp_path / "q"))
    assert back.model.lm_head.weight is not back.model.model.embed_tokens.weight
    torch.testing.assert_close(back.model.lm_head.weight, model.lm_head.weight)


def _bert_config(**kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(make_tokenizer()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, **kw)


def test_sequence_classifier_folder_keeps_its_head(tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(_bert_config(num_labels=3)).eval()
    tok = make_tokenizer()
    model.save_pretrained(str(tmp_path / "clf"))
    tok.save_pretrained(str(tmp_path / "clf"))
    clf = ss.load(tmp_path / "clf")
    assert isinstance(clf, HFTextClassifier) and list(clf.classes_) == [0, 1, 2]
    texts = ["the quick brown fox", "a language model"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.softmax(model(**enc).logits, -1).numpy()
    np.testing.assert_allclose(clf.predict_proba(texts), want, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(texts), want.argmax(1))
    back = ss.load(ss.save(clf, tmp_path / "saved"))
    np.testing.assert_allclose(back.predict_proba(texts), want, atol=1e-5)


def test_image_classifier_folder_keeps_its_head(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    model = ViTForImageClassification(cfg).eval()
    model.save_pretrained(str(tmp_path / "vit"))
    clf = ss.load(tmp_path / "vit")
    assert isinstance(clf, HFImageClassifier)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(pixel_values=torch.as_tensor(x)).logits.numpy()
    np.testing.assert_allclose(clf(torch.as_tensor(x)).detach().numpy(), want, atol=1e-5)
    assert clf.predict(x).shape == (4,)
    m = ss.measure(clf, ss.datasets.load("digits", split="test").head(8))  # a torch module: logits in, as for CNNs
    assert 0 <= m.quality <= 1


def test_other_heads_are_refused_and_bases_stay_encoders(tmp_path):
    from transformers import BertForMaskedLM, BertModel

    BertForMaskedLM(_bert_config()).save_pretrained(str(tmp_path / "mlm"))
    make_tokenizer().save_pretrained(str(tmp_path / "mlm"))
    with pytest.raises(ss.ModelError, match="holds a BertForMaskedLM.*Only the base encoder"):
        ss.load(tmp_path / "mlm")
    BertModel(_bert_config()).save_pretrained(str(tmp_path / "base"))
    make_tokenizer().save_pretrained(str(tmp_path / "base"))
    assert isinstance(ss.load(tmp_path / "base"), ss.zoo.SentenceEncoder)
    with pytest.raises(ss.ModelError, match="is not a causal language model: its config names BertModel"):
        ss.llm.load_hf_causal_lm(tmp_path / "base")


def test_pickle_only_folder_needs_trusted(tmp_path):
    folder, model = save_hf(tmp_path, "gpt2")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ss.UnsafeFileError, match="pytorch_model.bin.*trusted=True"):
        ss.load(folder)


def test_gguf_architecture_transformers_cannot_read(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv7")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ss.ModelFileError, match="GGUF architecture 'rwkv7'"):
        ss.load(path)
