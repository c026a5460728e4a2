"""Numbers for people: ``1078520`` → ``1,078,520``, never ``1.07852e+06``."""

from __future__ import annotations

import math


def human(value: float) -> str:
    """A count or measurement as a person reads it.

    Whole numbers get thousands separators (``1,078,520``); other values keep three significant
    digits below 100 (``0.0123``, ``12.3``) and one decimal above (``1,234.5``).

    >>> human(1078520.0), human(3), human(12.345), human(0.001234), human(1234.56)
    ('1,078,520', '3', '12.3', '0.00123', '1,234.6')
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e18:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3g}"
