"""Suite-wide settings: no network model calls, no shared DSPy cache, no price-list downloads."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="flock-dspy-cache-"))
# Tests choose their models explicitly; a developer's FLOCK_MODEL must not leak in.
os.environ.pop("FLOCK_MODEL", None)
os.environ.pop("DEFAULT_MODEL", None)
