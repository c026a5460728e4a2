"""Turn on metrics export: a meter provider with a local in-memory reader, the console, or OTLP.

Flock records its metrics through OpenTelemetry's *global* meter provider (see
:mod:`flock._tracing.metrics`). An application that installs its own provider receives them with no
Flock-specific setup. :func:`enable_metrics` installs one for applications that have none.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from typing import Any

from .._core.errors import ConfigurationError
from .._core.extras import install_command
from .metrics import metrics_on

_OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class MetricsSetupError(ConfigurationError):
    """Metrics cannot be exported as asked (an OTLP exporter missing, another provider installed...)."""


@dataclass(frozen=True)
class _Config:
    otlp: bool
    console: bool
    interval_s: float


@dataclass
class _Installed:
    provider: Any
    local: Any  # the in-memory reader metrics_snapshot() reads
    config: _Config


_lock = threading.Lock()
_installed: _Installed | None = None


def enable_metrics(*, otlp: bool | None = None, console: bool = False, interval_s: float = 60.0) -> Any:
    """Install a global meter provider that keeps Flock's metrics readable in-process
    (:func:`metrics_snapshot`) and, if asked, exports them; return it.

    Args:
        otlp: export over OTLP/HTTP every ``interval_s`` seconds. ``None`` (default) means "when
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._METRICS_ENDPOINT``) is set". Needs
            ``pip install 'flock[otlp]'``.
        console: also print the metrics to stdout every ``interval_s`` seconds.
        interval_s: seconds between exports (OTLP and console).

    Calling it again with the same arguments returns the same provider. OpenTelemetry allows one
    global meter provider per process, so other arguments later, or a provider installed by
    someone else, raise :class:`MetricsSetupError` (an application's own provider already receives
    Flock's metrics: there is nothing to enable).
    """
    global _installed
    if not interval_s > 0:
        raise MetricsSetupError(f"enable_metrics(interval_s={interval_s!r}): give a number of seconds > 0")
    otlp_on = otlp if otlp is not None else any(os.environ.get(name) for name in _OTLP_ENDPOINT_ENVS)
    config = _Config(otlp=otlp_on, console=console, interval_s=float(interval_s))
    with _lock:
        if _installed is not None:
            if _installed.config != config:
                raise MetricsSetupError(
                    "enable_metrics() was already called with other arguments; OpenTelemetry allows "
                    "one meter provider per process, so choose the exporters in the first call"
                )
            return _installed.provider
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader

        if metrics_on():
            current = metrics.get_meter_provider()
            raise MetricsSetupError(
                f"a {type(current).__name__} is already the global meter provider: Flock's metrics go "
                "to it, so there is nothing to enable (read them where that provider exports them)"
            )
        local = InMemoryMetricReader()
        readers: list[Any] = [local]
        millis = config.interval_s * 1000
        if config.otlp:
            readers.append(PeriodicExportingMetricReader(_otlp_exporter(), export_interval_millis=millis))
        if config.console:
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            readers.append(
                PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=millis)
            )
        provider = MeterProvider(metric_readers=readers, resource=_resource(), shutdown_on_exit=False)
        metrics.set_meter_provider(provider)
        atexit.register(_shutdown)
        _installed = _Installed(provider, local, config)
        return provider


def flush_metrics(timeout_millis: int = 30_000) -> bool:
    """Export the metrics recorded so far now (OTLP, console). ``False`` if the timeout expired."""
    installed = _installed
    return bool(installed.provider.force_flush(timeout_millis)) if installed is not None else True


def metrics_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Flock's metrics so far, as plain values: metric name -> one row per attribute set.

    A counter's row has ``value``; a histogram's has ``count``, ``sum``, ``min``, ``max``,
    ``bounds`` and ``bucket_counts``. Needs :func:`enable_metrics`.
    """
    installed = _installed
    if installed is None:
        raise MetricsSetupError(
            "metrics_snapshot() reads what enable_metrics() collects: call enable_metrics() first"
        )
    data = installed.local.get_metrics_data()
    out: dict[str, list[dict[str, Any]]] = {}
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope in resource_metrics.scope_metrics:
            if scope.scope.name != "flock":
                continue
            for metric in scope.metrics:
                rows = out.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    row: dict[str, Any] = {"attributes": dict(point.attributes or {})}
                    if hasattr(point, "bucket_counts"):
                        row.update(
                            count=point.count,
                            sum=point.sum,
                            min=point.min,
                            max=point.max,
                            bounds=list(point.explicit_bounds),
                            bucket_counts=list(point.bucket_counts),
                        )
                    else:
                        row["value"] = point.value
                    rows.append(row)
    return out


def _shutdown() -> None:
    installed = _installed
    if installed is not None:
        installed.provider.shutdown()


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, Any] = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "flock"
    return Resource.create(attributes)


def _otlp_exporter() -> Any:
    endpoint = next((os.environ[n] for n in _OTLP_ENDPOINT_ENVS if os.environ.get(n)), "the default endpoint")
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:
        raise MetricsSetupError(
            f"OTLP metrics export to {endpoint} needs the OTLP exporter, which is not installed: "
            f"{install_command('otlp')} (or pass enable_metrics(otlp=False), "
            "or unset OTEL_EXPORTER_OTLP_ENDPOINT)"
        ) from exc
    return OTLPMetricExporter()  # reads endpoint, headers and timeouts from OTEL_* variables
