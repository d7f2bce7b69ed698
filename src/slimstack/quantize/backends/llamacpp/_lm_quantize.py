"""``ss.quantize(lm, WeightOnly(...), calibration=texts)`` for causal LMs.

Steps: cut calibration windows; gather each Linear's input Hessian in one float pass; choose a
format per tensor (the base format, or mixed precision from measured sensitivity under a
bits-per-weight budget); round with GPTQ (or to nearest); build the llama.cpp model (a GGUF file
slimstack writes with its own codes) and/or the torch one (int4/int8 group-quantized Linears);
with ``backend="auto"`` time both decoding and keep the faster; with ``tolerance=`` and ``data=``
move the most sensitive layers to Q8_0 until the KLD (or perplexity) is within it.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ....errors import ConfigError, DataError, ModelError
from ..._record import QuantRecord, QuantResult
from ._conv1d import conv1d_as_linear, has_conv1d
from ._smooth import applies as smooth_applies
from ._smooth import smooth
from ._grids import FORMATS as GRIDS
from ._kquants import KGrid
from ._gptq import collect_hessians, gptq, linear_names, output_error
from ._lm import LlamaCppLM, llama_cpp_available
from ._plan import EMBED, allocate, calibration_windows, check_group_size, kld, ladder, layer_of
from ._sensitivity import tensor_sensitivity
from ._tune import tune_scales
from ._writer import LLAMA_TYPES, QTensor, write_gguf

__all__ = ["quantize_lm", "lm_parts"]

SENS_WINDOWS = 4  # windows of 2 x WeightOnly.window tokens the sensitivity is measured on (the last half scored)


def lm_parts(lm: Any) -> tuple[nn.Module, Any]:
    """(transformers causal-LM module, tokenizer) of a ``CausalLM``."""
    for attr in ("model", "hf_model", "module"):
        m = getattr(lm, attr, None)
        if isinstance(m, nn.Module) and hasattr(m, "config"):
            return m, lm.tokenizer
    raise ModelError(f"{type(lm).__name__} exposes no transformers model (.model) to quantize")


def _rewrap(lm: Any, hf: nn.Module) -> Any:
    """A new CausalLM around the quantized transformers model (the input LM is left as it was)."""
    try:
        return type(lm)(hf, lm.tokenizer, name=f"{getattr(lm, 'name', 'lm')} (WeightOnly, torch)")
    except TypeError:
        new = copy.deepcopy(lm)
        new.model = hf
        return new


class _Rounder:
    """Rounds tensors once per (name, format) and caches the codes."""

    def __init__(self, model: nn.Module, hess: dict[str, torch.Tensor], n_tokens: int, method: str, group: int,
                 gptq_head: bool = False):
        self.params = dict(model.named_parameters())
        self.hess, self.n, self.method, self.group = hess, n_tokens, method, group
        self.cache: dict[tuple[str, str], QTensor] = {}
        self.gptq_head = gptq_head  # an untied head (its own tensor) is GPTQ-rounded for its inputs like any Linear

    def hessian(self, name: str) -> torch.Tensor | None:
        key = "lm_head" if name in (EMBED, "lm_head.weight") else name[: -len(".weight")]
        return self.hess.get(key)

    def __call__(self, name: str, fmt: str, method: str | None = None) -> QTensor:
        method = method or self.method
        key = (name, fmt + method)
        if key not in self.cache:
            h, grid = self.hessian(name), GRIDS[fmt]
            # the tied head: GPTQ's feedback, fitted to the head's inputs, would distort the input lookup
            head = name == EMBED or (name == "lm_head.weight" and not self.gptq_head)
            if method == "gptq" and h is not None and fmt != "Q8_0" and not head:
                # siblings reading the same input (q/k/v, gate/up) share H: one GPTQ over their stacked rows
                group = [n for n in self.params if n.endswith(".weight") and self.hessian(n) is h
                         and (n, key[1]) not in self.cache and n not in (EMBED, "lm_head.weight")] or [name]
                if name not in group:
                    group = [name]
                ws = [self.params[n].detach() for n in group]
                q, d, m, ex = gptq(torch.cat(ws), h, grid, self.group)
                at = 0
                for n, w in zip(group, ws):
                    sl = slice(at, at + w.shape[0])
                    part = None if ex is None else {k: v[sl] for k, v in ex.items()}
                    self.cache[(n, key[1])] = QTensor(fmt, q[sl], d[sl], None if m is None else m[sl], part)
                    at += w.shape[0]
            else:  # 8-bit rounding error is already far below what GPTQ's feedback buys at 4 bits; the embedding
                # is also the input lookup, which GPTQ's feedback (fitted to the head's inputs) would distort
                w = self.params[name].detach().float()
                imp = None if h is None else torch.diag(h).float().numpy().copy()
                if isinstance(grid, KGrid):
                    q, d, m, ex = grid.round(w, imp)
                    self.cache[key] = QTensor(fmt, q, d, m, ex)
                else:
                    q, d, m = grid.round(w, self.group, imp=imp, search=True)
                    self.cache[key] = QTensor(fmt, q, d, m)
        return self.cache[key]

    def error(self, name: str, fmt: str) -> float:
        h = self.hessian(name)
        qt = self(name, fmt, "rtn")
        w = self.params[name].detach()
        if h is None:
            return float((w - qt.dequantize()).pow(2).sum())
        return output_error(w, qt.dequantize(), h, self.n)


_MEMO: dict[tuple, dict] = {}


def _memo(hf: nn.Module, windows: list[torch.Tensor], names: list[str]) -> dict:
    """Per-process reuse of Hessians, roundings and sensitivities when the same float model and calibration
    windows are quantized again (several configs of one model: a benchmark, the fallback). One entry kept."""
    sig = sum(float(p.detach().float().abs().sum()) for p in list(hf.parameters())[:4])
    key = (id(hf), sig, hash(tuple(hash(w.numpy().tobytes()) for w in windows)), tuple(names))
    if key not in _MEMO:
        _MEMO.clear()
        _MEMO[key] = {}
    return _MEMO[key]


def group_size(cfg: Any) -> int:
    """The group size a causal LM is quantized with: ``WeightOnly.group_size``, or llama.cpp's 32 when None."""
    return cfg.group_size or 32


def _backend(cfg: Any, hf: nn.Module, notes: list[str]) -> list[str]:
    ok, why = llama_cpp_available()
    arch_ok = getattr(hf.config, "model_type", None) in LLAMA_TYPES
    if cfg.backend == "llamacpp":
        if not ok:
            raise ModelError(why)
        if not arch_ok:
            raise ModelError(f"backend='llamacpp' writes Llama-family GGUF files; model_type="
                             f"{hf.config.model_type!r} is not one; use backend='torch'")
        if group_size(cfg) != 32:
            raise ConfigError(f"WeightOnly.group_size={cfg.group_size} with backend='llamacpp': llama.cpp's block "
                              "formats hold one scale per 32 inputs; use group_size=32, or backend='torch'")
        return ["llamacpp"]
    odd = [GRIDS[f] for f in (cfg.formats or [_base(cfg)]) if GRIDS[f].affine or not GRIDS[f].uniform]
    torch_ok = not odd
    if cfg.backend == "torch":
        if not torch_ok:
            what = "stores a per-group minimum" if odd[0].affine else "has non-uniform levels"
            raise ConfigError(f"WeightOnly format {odd[0].name!r} {what}, which slimstack's torch "
                              "int4/int8 Linears do not hold; use format='Q4_0' or backend='llamacpp'")
        return ["torch"]
    out = []
    if not ok:
        notes.append(f"llama.cpp backend not built: {why}; fell back to torch")
    elif not arch_ok:
        notes.append(f"llama.cpp backend not built: model_type={hf.config.model_type!r} is not Llama-family")
    elif group_size(cfg) != 32:
        notes.append(f"llama.cpp backend not built: group_size={cfg.group_size} (its formats use 32)")
    else:
        out.append("llamacpp")
    if torch_ok:
        out.append("torch")
    if not out:
        raise ConfigError(f"no backend can run WeightOnly(format={cfg.format!r}) here: {notes[-1]}")
    return out


def _base(cfg: Any) -> str:
    if cfg.formats:
        return cfg.formats[0]
    return cfg.format if cfg.format != "auto" else ("Q8_0" if cfg.bits == 8 else "Q4_0")


def _build_torch(hf: nn.Module, chosen: dict[str, QTensor], group: int) -> nn.Module:
    from ..torch._convert import set_module
    from ..torch._kernels import pack_int4
    from ..torch._modules import WeightOnlyLinear

    model = copy.deepcopy(hf)
    for name, qt in chosen.items():
        if name in (EMBED, "lm_head.weight"):
            continue
        lin = model.get_submodule(name[: -len(".weight")])
        grid = GRIDS[qt.grid]
        bits = 4 if grid.qmin >= -8 and grid.qmax <= 7 else 8
        new = WeightOnlyLinear(lin.in_features, lin.out_features, lin.bias is not None, bits, group)
        codes = qt.q.to(torch.int8)
        new.weight_q.copy_(pack_int4(codes) if bits == 4 else codes)
        new.weight_scale.copy_(qt.d.half())
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach())
        set_module(model, name[: -len(".weight")], new)
    return model.eval()


def _untied(hf: nn.Module) -> nn.Module:
    """A copy of a tied-embedding LM whose head is its own parameter (same values, same function)."""
    model = copy.deepcopy(hf)
    model.config.tie_word_embeddings = False
    model.get_output_embeddings().weight = nn.Parameter(model.get_input_embeddings().weight.detach().clone(),
                                                        requires_grad=False)
    return model


def _decode_speed(models: dict[str, Any], tok: Any, threads: int) -> dict[str, float]:
    prompt = "slimstack measures decode speed on this CPU with a short prompt"
    ids = list(tok(prompt)["input_ids"])
    times: dict[str, list[float]] = {n: [] for n in models}
    torch.set_num_threads(threads)
    for _ in range(3):
        for name, m in models.items():
            t = time.perf_counter()
            if isinstance(m, LlamaCppLM):
                m.generate_ids(ids, 16, ignore_eos=True)
            else:
                with torch.no_grad():
                    m.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False)
            times[name].append(time.perf_counter() - t)
    return {n: 16 / float(np.median(v)) for n, v in times.items()}


def quantize_lm(lm: Any, cfg: Any, *, calibration: Any, data: Any = None, tolerance: float | None = None,
                threads: int = 2, seed: int = 0, out_dir: str | Path | None = None) -> QuantResult:
    """Quantize a CausalLM (see the module docstring); the caller's torch thread count is restored after."""
    before = torch.get_num_threads()
    try:
        return _quantize_lm(lm, cfg, calibration, data, tolerance, threads, seed, out_dir)
    finally:
        torch.set_num_threads(before)


def _quantize_lm(lm: Any, cfg: Any, calibration: Any, data: Any, tolerance: float | None, threads: int, seed: int,
                 out_dir: str | Path | None) -> QuantResult:
    hf, tok = lm_parts(lm)
    if has_conv1d(hf):  # GPT-2 family: Conv1D projections become equal nn.Linear layers (on a copy)
        hf = conv1d_as_linear(hf)
    if calibration is None:
        raise DataError("quantizing a causal LM needs calibration= text (a few hundred windows of representative "
                        "text, e.g. ss.datasets.load('notes.txt')); it is what GPTQ and the sensitivity read")
    if tolerance is not None and data is None:
        raise DataError(f"tolerance={tolerance} needs data= (held-out text) to measure {cfg.fallback} on")
    notes: list[str] = []
    backends = _backend(cfg, hf, notes)
    group = group_size(cfg) if backends != ["llamacpp"] else 32
    names = [n for n in linear_names(hf) if not any(s in n for s in cfg.skip)]
    skipped = [n for n in linear_names(hf) if n not in names]
    check_group_size(hf, names, group)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    hf = hf.eval()
    windows = calibration_windows(tok, calibration, cfg.window, cfg.calibration_size, seed)
    memo = _memo(hf, windows, names)
    # the Hessians feed GPTQ, the importance of every scale search (Q8_0's included) and the smoothing
    if (cfg.method == "gptq" or cfg.smooth) and "hess" not in memo:
        memo["hess"] = collect_hessians(hf, windows, names)
    hess, n_tok = memo.get("hess", ({}, 0))
    qm = hf  # the model whose weights are rounded and written: hf, or its smoothed copy (same function)
    untie = bool(cfg.untie_head) and getattr(hf.config, "tie_word_embeddings", False) and "llamacpp" in backends
    if cfg.untie_head and not untie:
        notes.append("untie_head: nothing to untie (the head is already its own tensor, or the llama.cpp backend "
                     "is not built)")
    if untie:  # a copy whose head is its own tensor: rounded for the head's inputs; the lookup stays at Q8_0
        if "untied" not in memo:
            memo["untied"] = _untied(hf)
        hf = qm = memo["untied"]
    if cfg.smooth:
        why = smooth_applies(hf)
        if why is not None:
            raise ConfigError(f"WeightOnly(smooth={cfg.smooth}) needs a Llama-family block layout: {why}; "
                              "use smooth=0")
        if ("smooth", cfg.smooth) not in memo:
            memo[("smooth", cfg.smooth)] = smooth(hf, hess, n_tok, cfg.smooth)
        qm, hess = memo[("smooth", cfg.smooth)]
        notes.append(f"smoothed (SmoothQuant, alpha={cfg.smooth}): RMSNorm weights, v rows and up rows divided by "
                     "per-channel scales that multiply the q/k/v, gate/up, o and down columns (same function)")
    params = dict(qm.named_parameters())
    tensors = [n + ".weight" for n in names]
    tied = getattr(hf.config, "tie_word_embeddings", False)
    head = EMBED if tied else "lm_head.weight"
    quant_head = "llamacpp" in backends and hf.get_input_embeddings().embedding_dim % 32 == 0
    if quant_head:
        tensors.append(head)
    base = _base(cfg)
    kq = backends == ["llamacpp"] and bool(cfg.bits_per_weight)  # K-quants: llama.cpp files under a budget only
    mods = dict(hf.named_modules())
    ladders = {n: ladder(base, cfg.bits, getattr(mods.get(n[: -len(".weight")]), "in_features", 0), kq)
               for n in tensors}
    if cfg.formats:  # the user's ladder for every tensor, the head included
        ladders = {n: list(cfg.formats) for n in tensors}
    elif quant_head and cfg.bits_per_weight == 0:
        ladders[head] = ["Q8_0"]  # the head decides every token: 8 bits unless a budget says otherwise
    rounder = memo.setdefault(("rounder", group, cfg.smooth, untie),
                              _Rounder(qm, hess, n_tok, cfg.method, group, gptq_head=untie))
    rounder.method, rounder.hess, rounder.n = cfg.method, hess, n_tok  # a memo'd rounder may predate the Hessians
    layer_kld: dict[str, float] = {}
    share: dict[str, float] = {}
    if cfg.bits_per_weight or tolerance is not None:
        # each tensor's KLD at its base format, with the values the method gives it (GPTQ's where it runs)
        values = {n: rounder(n, ladders[n][0]).dequantize() for n in tensors}
        sens_windows = calibration_windows(tok, calibration, 2 * cfg.window, SENS_WINDOWS, seed + 1)
        key = ("sensitivity", group, cfg.method, cfg.window, cfg.smooth,
               tuple(sorted((n, ladders[n][0]) for n in tensors)))
        if key not in memo:
            memo[key] = tensor_sensitivity(qm, tensors, values, sens_windows, context=cfg.window)
        share, layer_kld = memo[key]
        notes.append(f"sensitivity: {len(sens_windows)} windows of {2 * cfg.window} tokens, the last {cfg.window} "
                     "of each scored (the first are context); a layer's measured KLD shared among its tensors "
                     "by how far each alone moves the layer's output")
    if cfg.bits_per_weight:
        numel = {n: params[n].numel() for n in tensors}
        errors = {n: {f: rounder.error(n, f) for f in ladders[n]} for n in tensors}
        formats = allocate(numel, errors, share, ladders, cfg.bits_per_weight)
    else:
        formats = {n: ladders[n][0] for n in tensors}

    tuned: dict[tuple, tuple[nn.Module, dict[str, QTensor], dict[str, Any]]] = {}

    def build(fmts: dict[str, str]) -> tuple[dict[str, Any], dict[str, QTensor]]:
        chosen = {n: rounder(n, f) for n, f in fmts.items()}
        if untie:
            chosen[EMBED] = rounder(EMBED, "Q8_0")  # the input lookup: one row a token, so 8 bits cost no speed
        built: dict[str, Any] = {}
        rec: dict[str, Any] = {"formats": fmts, "config": cfg.to_dict()}
        src = qm
        if cfg.distill_steps:  # codes fixed; block scales and norm weights fitted to the float model
            key = tuple(sorted(fmts.items()))
            if key not in tuned:
                tuned[key] = tune_scales(qm, chosen, windows, steps=cfg.distill_steps, seed=seed)
            src, chosen, rec["distill"] = tuned[key]
        if "llamacpp" in backends:
            folder = Path(out_dir or tempfile.mkdtemp(prefix="slimstack-gguf-"))
            path = write_gguf(src, tok, folder / f"model-{len(list(folder.glob('*.gguf')))}.gguf", chosen,
                              record=rec, pre=pre, name=str(getattr(lm, "name", "slimstack")))
            built["llamacpp"] = LlamaCppLM(path, n_threads=threads, record=rec)
        if "torch" in backends:
            built["torch"] = _build_torch(src, chosen, group)
        return built, chosen

    # llama.cpp's pre-tokenizer: SmolLM2's own name where the vocabulary is SmolLM2's, else byte-level GPT-2
    pre = "smollm" if "smol" in str(getattr(lm, "name", "")).lower() and len(tok) == 49152 else "gpt-2"
    built, chosen = build(formats)
    candidates: dict[str, dict[str, Any]] = {b: {} for b in backends}
    if len(backends) > 1:
        speed = _decode_speed({**built, "float": hf}, tok, threads)
        for k, v in speed.items():
            candidates.setdefault(k, {})["decode_tokens_per_s"] = v
        pick = max(backends, key=lambda b: speed[b])
        reason = "fastest measured decode (" + ", ".join(f"{b} {speed[b]:.1f} tok/s" for b in speed) + ")"
    else:
        pick = backends[0]
        reason = "requested" if cfg.backend != "auto" else "the only backend available (see notes)"
    metric, q_float, q_quant, met = None, None, None, None
    if tolerance is not None:
        metric, q_float, q_quant, met, formats, built, chosen = _fallback(
            hf, tok, data, cfg, tolerance, pick, formats, layer_kld, build, built, chosen, seed)
    model = built[pick] if pick == "llamacpp" else _rewrap(lm, built[pick])
    layers = []
    for n in tensors:
        if pick == "torch" and n == head:
            continue
        r = {"name": n[: -len(".weight")] if n != EMBED else "model.embed_tokens", "type": "Linear" if n != EMBED
             else "Embedding (tied LM head)", "status": "quantized", "format": chosen[n].grid,
             "bits_per_weight": GRIDS[chosen[n].grid].bpw,
             "method": cfg.method if rounder.hessian(n) is not None and chosen[n].grid != "Q8_0"
             and (n != head or untie) else "rtn"}
        if n in share:
            r["kld_share"] = share[n]
        layers.append(r)
    if untie:
        layers.append({"name": "model.embed_tokens", "type": "Embedding (input lookup; head untied)",
                       "status": "quantized", "format": "Q8_0", "bits_per_weight": GRIDS["Q8_0"].bpw, "method": "rtn"})
    layers += [{"name": n, "type": "Linear", "status": "float", "reason": "listed in config.skip"} for n in skipped]
    if pick == "torch":
        layers.append({"name": "model.embed_tokens" if tied else "lm_head", "type": "Embedding", "status": "float",
                       "reason": "the torch backend keeps the (tied) embedding / LM head in float; the llama.cpp "
                                 "backend quantizes it"})
    for _, _, t in tuned.values():
        notes.append(f"scales distilled ({t['steps']} steps, {t['scales']} block scales of {t['tensors']} tensors and "
                     f"{t['norm_weights']} norm weights): held-out calibration KL {t['held_out_kl_before']} -> "
                     f"{t['held_out_kl_after']}, " + ("kept" if t["kept"] else "not lower, so the GPTQ values kept"))
    total = sum(params[n].numel() for n in tensors)
    bpw = sum(params[n].numel() * GRIDS[chosen[n].grid].bpw for n in tensors) / max(total, 1)
    notes.append(f"{len(windows)} calibration windows of {cfg.window} tokens; average {bpw:.3f} bits per "
                 f"quantized weight")
    if base in ("Q4_1",) and group == 32:
        notes.append("Q4_1 at group 32 re-emits the grid SmolLM2's packaged weights already lie on (lossless by "
                     "construction for that model): judge 4-bit methods at other formats")
    record = QuantRecord(config=cfg.to_dict(), backend=pick, backend_reason=reason, layers=layers,
                         candidates=candidates, tolerance=tolerance, quality_metric=metric, quality_float=q_float,
                         quality_quantized=q_quant, sensitivity=layer_kld, fallback_met=met, notes=notes)
    if isinstance(model, LlamaCppLM):
        model.record = record.to_dict()
    for b, m in built.items():
        if b != pick and isinstance(m, LlamaCppLM):
            m.close()
    return QuantResult(model, record)


def _fallback(hf, tok, data, cfg, tolerance, pick, formats, layer_kld, build, built, chosen, seed):
    """Move the most sensitive decoder layers to Q8_0, fewest first, until ``cfg.fallback`` is within tolerance."""
    windows = calibration_windows(tok, data, cfg.window, 8, seed, what="data")
    with torch.no_grad():
        ref = [torch.log_softmax(hf(input_ids=w.reshape(1, -1)).logits[0].float(), -1).numpy() for w in windows]

    def score(model: Any) -> float:
        if isinstance(model, LlamaCppLM):
            lps = [model.logprobs_ids(w.tolist()) for w in windows]
        else:
            with torch.no_grad():
                lps = [torch.log_softmax(model(input_ids=w.reshape(1, -1)).logits[0].float(), -1).numpy()
                       for w in windows]
        if cfg.fallback == "kld":
            return float(np.mean([kld(r, q) for r, q in zip(ref, lps)]))
        nll = np.mean(np.concatenate([-lp[np.arange(len(w) - 1), w[1:].numpy()] for lp, w in zip(lps, windows)]))
        return float(np.exp(nll))

    ppl_float = None
    if cfg.fallback == "perplexity":
        nll = np.mean(np.concatenate([-r[np.arange(len(w) - 1), w[1:].numpy()] for r, w in zip(ref, windows)]))
        ppl_float = float(np.exp(nll))
    ok = (lambda v: v <= tolerance) if cfg.fallback == "kld" else (lambda v: (v - ppl_float) / ppl_float <= tolerance)
    q = score(built[pick])
    if ok(q):
        return cfg.fallback, (0.0 if ppl_float is None else ppl_float), q, True, formats, built, chosen
    ranked = sorted(layer_kld, key=lambda u: -layer_kld[u])
    lo, hi, best = 1, len(ranked), None
    while lo <= hi:
        k = (lo + hi) // 2
        top = set(ranked[:k])
        fmts = {n: ("Q8_0" if layer_of(n) in top else f) for n, f in formats.items()}
        b, c = build(fmts)
        qk = score(b[pick])
        if ok(qk):
            best, hi = (fmts, b, c, qk), k - 1
        else:
            lo = k + 1
    if best is None:
        return cfg.fallback, (0.0 if ppl_float is None else ppl_float), q, False, formats, built, chosen
    fmts, b, c, qk = best
    return cfg.fallback, (0.0 if ppl_float is None else ppl_float), qk, True, fmts, b, c
