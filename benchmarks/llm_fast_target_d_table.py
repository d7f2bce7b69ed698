"""Tables of ``llm_fast.py --only "IQ4_NL/Q8_0 mix" --no-cuts --reps 15`` (target d's confirmation run): same layout."""

from llm_fast_table import table  # noqa: F401  (render_readme.py finds it by the JSON's name)
