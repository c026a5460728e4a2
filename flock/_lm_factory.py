"""How the engine makes a ``dspy.LM`` for a model name: DSPy's fast native client, kept fast.

See :func:`make_lm`.
"""

from __future__ import annotations

from typing import Any

import dspy


def make_lm(model: str, *, cache: bool, retries: int, kwargs: dict[str, Any]) -> dspy.BaseLM:
    """A ``dspy.LM`` for ``model`` with the engine's settings."""
    return dspy.LM(model, cache=cache, num_retries=retries, **kwargs)
