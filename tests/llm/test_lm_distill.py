"""``ss.distill`` for causal LMs: top-k logit distillation on text, cached teacher, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.distill._lm import topk_kl
from slimstack.errors import DataError, ModelError
from slimstack.llm import CausalLM

from .conftest import TEXT, make_config, make_tokenizer

TRAIN = [TEXT[i : i + 160] for i in range(0, len(TEXT) - 160, 40)]
VAL = [TEXT[7 : 7 + 200]]


def _teacher() -> CausalLM:
    """A random tiny Llama whose larger initial weights give peaked (non-uniform) next-token distributions."""
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = make_config("llama", len(tok), initializer_range=0.1)
    return CausalLM(AutoModelForCausalLM.from_config(cfg).eval(), tok, name="teacher")


def _fresh_student(teacher: CausalLM, layers: int = 1) -> CausalLM:
    """A student of the teacher's vocabulary, with its own random weights (far from the teacher)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    cfg = make_config("llama", teacher.vocab_size, num_hidden_layers=layers)
    return CausalLM(AutoModelForCausalLM.from_config(cfg).eval(), teacher.tokenizer, name="student")


def _kld(teacher: CausalLM, student: CausalLM, texts: list[str]) -> float:
    from slimstack.llm._measure import kld_top1

    vals = []
    for t in texts:
        _, ref = teacher.logprobs(t)
        _, lp = student.logprobs(t)
        vals.append(kld_top1(ref, lp)[0].mean())
    return float(np.mean(vals))


def _cfg(**kw) -> ss.DistillConfig:
    base = dict(temperature=1.0, epochs=4, batch_size=4, lr=3e-3, max_length=32, top_k=64, progress=False,
                grad_clip=1.0, seed=0)
    return ss.DistillConfig(**{**base, **kw})


def test_distilled_student_moves_toward_the_teacher_and_input_is_unchanged():
    teacher = _teacher()
    student = _fresh_student(teacher)
    before_state = {k: v.clone() for k, v in student.state_dict().items()}
    kld_before = _kld(teacher, student, VAL)
    d = ss.distill(teacher, student, _cfg(), train=TRAIN, val=VAL)
    kld_after = _kld(teacher, d.model, VAL)
    assert isinstance(d.model, CausalLM) and d.model is not student
    assert kld_after < 0.8 * kld_before, (kld_before, kld_after)
    assert all(torch.equal(before_state[k], v) for k, v in student.state_dict().items())
    assert d.record["tail_bucket"] is True and d.record["top_k"] == 64
    assert d.history[-1]["kd"] < d.history[1]["kd"]
    assert isinstance(d.model.generate("The quick", max_new_tokens=4), str)


def test_topk_loss_equals_full_kl_when_k_is_the_vocabulary():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g) * 2
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    T = 2.0
    full = (torch.softmax(t / T, -1) * (torch.log_softmax(t / T, -1) - torch.log_softmax(s / T, -1))).sum(-1)
    want = float((full * mask).sum() / mask.sum() * T**2)
    lp = torch.log_softmax(t / T, -1)
    top, idx = lp.topk(11, dim=-1)
    assert float(topk_kl(s, top, idx, mask, T)) == pytest.approx(want, rel=1e-5)
    # top-k plus the tail bucket is a lower bound of the full KL, and it is tight at k = vocab
    top4, idx4 = lp.topk(4, dim=-1)
    partial = float(topk_kl(s, top4, idx4, mask, T))
    assert 0 < partial <= want + 1e-6


def test_teacher_cache_written_once_and_reused(tmp_path):
    teacher = _teacher()
    calls = {"n": 0}
    forward = teacher.forward

    def counting(*a, **kw):
        calls["n"] += 1
        return forward(*a, **kw)

    teacher.forward = counting
    cfg = _cfg(epochs=1, cache_dir=str(tmp_path / "cache"))
    student = ss.zoo.shrink(teacher, layers=1)
    d1 = ss.distill(teacher, student, cfg, train=TRAIN)
    first = calls["n"]
    assert first > 0 and d1.record["cache_hit"] is False
    files = list((tmp_path / "cache").glob("lm-teacher-*.safetensors"))
    assert len(files) == 1
    d2 = ss.distill(teacher, student, cfg, train=TRAIN)
    assert calls["n"] == first and d2.record["cache_hit"] is True
    assert torch.equal(next(iter(d1.model.state_dict().values())), next(iter(d2.model.state_dict().values())))
    # another temperature is another cache entry (the stored log-probabilities are at T)
    ss.distill(teacher, student, _cfg(epochs=1, temperature=2.0, cache_dir=str(tmp_path / "cache")), train=TRAIN)
    assert calls["n"] > first and len(list((tmp_path / "cache").glob("lm-teacher-*"))) == 2


def test_resume_continues_from_the_saved_epoch(tmp_path):
    teacher = _teacher()
    student = ss.zoo.shrink(teacher, layers=1)
    full = ss.distill(teacher, student, _cfg(epochs=3), train=TRAIN)
    ckpt = str(tmp_path / "ckpt")

    def stop_after_two(rec):
        if rec["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ss.distill(teacher, student, _cfg(epochs=3, checkpoint_dir=ckpt), train=TRAIN, on_epoch_end=stop_after_two)
    resumed = ss.distill(teacher, student, _cfg(epochs=3, checkpoint_dir=ckpt), train=TRAIN)
    assert resumed.record["resumed_from_epoch"] == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["step"] == full.history[-1]["step"]
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-4)


def test_empty_text_raises_a_clear_error():
    teacher = _teacher()
    student = ss.zoo.shrink(teacher, layers=1)
    with pytest.raises(DataError, match="empty"):
        ss.distill(teacher, student, _cfg(), train=["   ", ""])
    with pytest.raises(DataError, match="empty"):
        ss.distill(teacher, student, _cfg(), train=[])


def test_vocabulary_mismatch_names_both_sizes():
    teacher = _teacher()
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer(vocab_size=300)
    other = CausalLM(AutoModelForCausalLM.from_config(make_config("llama", len(tok) + 7)), tok)
    with pytest.raises(ModelError, match=rf"{teacher.vocab_size}.*{other.vocab_size}"):
        ss.distill(teacher, other, _cfg(), train=TRAIN)


def test_window_longer_than_the_context_is_refused():
    teacher = _teacher()
    with pytest.raises(DataError, match="context of 128"):
        ss.distill(teacher, ss.zoo.shrink(teacher, layers=1), _cfg(max_length=500), train=[TEXT * 3])


def test_distilled_lm_saves_and_loads(tmp_path):
    teacher = _teacher()
    d = ss.distill(teacher, ss.zoo.shrink(teacher, layers=2), _cfg(epochs=1), train=TRAIN)
    ss.save(d.model, tmp_path / "student")
    back = ss.load(tmp_path / "student")
    assert back.perplexity(VAL) == pytest.approx(d.model.perplexity(VAL), rel=1e-5)
