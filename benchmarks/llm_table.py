"""README table for benchmarks/llm.py: perplexity, KLD and top-1 to fp32, decode/prefill speed, size."""

from __future__ import annotations


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(payload: dict) -> str:
    from slimstack.measure import format_bytes

    lines = [f"{payload.get('model', '')}; {payload.get('data', '')}; KLD and top-1 against "
             f"`{payload.get('baseline', '')}`. Perplexity: lower is better.", "",
             "| variant | file | perplexity | KLD | top-1 same | decode tok/s | decode speedup | prefill tok/s | "
             "first token ms | peak memory |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        top1 = None if r.get("top1_agreement") is None else 100 * r["top1_agreement"]
        lines.append(f"| {r['name']} | {format_bytes(r.get('size_bytes'))} | {_f(r.get('quality'), '.2f')} | "
                     f"{_f(r.get('kld'), '.5f')} | {_f(top1, '.1f')} % | {_f(r.get('decode_tokens_per_s'), '.1f')} | "
                     f"{_f(r.get('decode_speedup'), '.2f')}x | {_f(r.get('prefill_tokens_per_s'), '.0f')} | "
                     f"{_f(r.get('ttft_ms'), '.0f')} | {format_bytes(r.get('peak_memory_bytes'))} |")
    return "\n".join(lines)
