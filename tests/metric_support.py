"""Reading points from the test suite's in-memory metric reader (see the ``metric_reader`` fixture)."""

from __future__ import annotations

from typing import Any


def metric_points(reader: Any, name: str, **attributes: Any) -> list[Any]:
    """Data points of the metric ``name`` whose attributes include ``attributes`` (cumulative)."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attributes.items()):
                        found.append(point)
    return found


def total(reader: Any, name: str, **attributes: Any) -> float:
    """The sum of a counter (or a histogram's sum) over the matching points."""
    points = metric_points(reader, name, **attributes)
    return float(sum(getattr(p, "value", None) or getattr(p, "sum", 0) for p in points))


def count(reader: Any, name: str, **attributes: Any) -> int:
    """How many values a histogram recorded over the matching points."""
    return sum(p.count for p in metric_points(reader, name, **attributes))
