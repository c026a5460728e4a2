"""How the engine makes a ``dspy.LM``: on DSPy's fast native HTTP client, kept fast for every user.

DSPy 3.4 calls providers with its own lean client (lm15) and falls back to LiteLLM when it cannot.
Left alone, four things slow a Flock down or reach past the configured provider:

* ``OPENAI_API_BASE`` / ``OPENAI_BASE_URL`` in the environment (the usual way to reach a local or
  proxy server) make DSPy choose LiteLLM: a ~3 s import, a slower hop, +150 MB. Flock passes the
  variable's URL to the native client itself (``engine="lm15"``, ``api_base=``) whenever that client
  serves the model, so the server the variable names is still the one called.
* DSPy looks a model's metadata (capabilities, prices) up in a table of ~4,400 entries on every
  call, three times; for a name the table lacks (every local server's model) that is a full scan
  each time. Flock remembers each answer (:func:`_remember_model_info`).
* The first lookup downloads a fresh price table from the internet (5 s timeout, a warning when
  offline) unless ``LITELLM_LOCAL_MODEL_COST_MAP=True``. Flock loads the table DSPy ships instead
  when that variable is unset (:func:`_use_bundled_price_table`); set it to ``False`` for DSPy's
  download.
* The client's connection pool holds 100 connections, so at most 100 calls are in flight whatever
  ``max_concurrency`` says. Flock sizes each model's pool to the Flock's concurrency (at least 100).

The last three act on DSPy's process-wide state (its metadata table and lookup function) the first
time a real model is made, never at ``import flock``; they change no result, only the cost.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import dspy

logger = logging.getLogger("flock")

DEFAULT_POOL = 100  # the native client's own default
_CLIENT_ENGINE_KEYS = ("engine", "async_engine")


def make_lm(
    model: str, *, cache: bool, retries: int, kwargs: dict[str, Any], concurrency: int | None = None
) -> dspy.BaseLM:
    """A ``dspy.LM`` for ``model`` on the native client where it can serve it (see the module)."""
    _use_bundled_price_table()
    _remember_model_info()
    lm: dspy.BaseLM | None = None
    if not any(key in kwargs for key in _CLIENT_ENGINE_KEYS):
        url = environment_base_url(model)
        if url is not None:
            lm = _native_with(model, cache, retries, {**kwargs, "api_base": kwargs.get("api_base") or url})
    if lm is None:
        lm = dspy.LM(model, cache=cache, num_retries=retries, **kwargs)
    size_pool(lm, max(DEFAULT_POOL, concurrency or 0))
    return lm


def environment_base_url(model: str) -> str | None:
    """The base URL the environment sets for ``model``'s provider (``OPENAI_BASE_URL``, then
    ``OPENAI_API_BASE`` for ``openai/...``), or ``None``."""
    provider, sep, _ = model.partition("/")
    prefix = (provider if sep else "openai").upper()
    for name in (f"{prefix}_BASE_URL", f"{prefix}_API_BASE"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def _native_with(model: str, cache: bool, retries: int, kwargs: dict[str, Any]) -> dspy.BaseLM | None:
    """The LM on the native client with ``kwargs`` (the environment's URL among them), or ``None``
    if the native client cannot serve this model with these settings (DSPy's LiteLLM path then)."""
    from dspy.clients.backend_selection import select_backend

    try:
        lm = dspy.LM(model, cache=cache, num_retries=retries, engine="lm15", **kwargs)
        if select_backend(lm).native:
            return lm
    except Exception as exc:  # DSPy refuses the combination: keep its own choice (LiteLLM)
        logger.debug("model %r: the native client cannot serve it (%s); DSPy chooses", model, exc)
    return None


# ---------------------------------------------------------------------- connection pool


class _SizedPools(dict[Any, Any]):
    """The LM's store of native engines (one per event loop and client settings), each made with a
    pool of ``size`` connections. DSPy builds the engine and its router before storing it; the
    router opens its transport on the first call, so swapping in a sized router here is in time."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, backend: Any) -> None:
        config = getattr(backend, "config", None)
        router = getattr(backend, "router", None)
        if (
            config is not None
            and router is not None
            and getattr(config, "transport", None) is None
            and getattr(config, "max_connections", 0) is None
            and getattr(router, "_transport", None) is None
        ):
            sized = replace(config, max_connections=self.size)
            backend.config = sized
            backend.router = type(router)(sized)
        super().__setitem__(key, backend)


def size_pool(lm: Any, size: int) -> None:
    """Give ``lm``'s native engines ``size`` connections each (copies of ``lm`` share them)."""
    store = getattr(lm, "_engine_store", None)
    if isinstance(store, _SizedPools):
        store.size = max(store.size, size)
    elif isinstance(store, dict) and not store and hasattr(lm, "_engine_lock"):
        lm._engine_store = _SizedPools(max(DEFAULT_POOL, size))


# ---------------------------------------------------------------------- model metadata

_lock = threading.Lock()
_remembered = False
_seeded = False
_CACHE_SIZE = 1024


def _use_bundled_price_table() -> None:
    """Load DSPy's bundled model table without trying the internet first, unless the user chose
    with ``LITELLM_LOCAL_MODEL_COST_MAP`` (then DSPy's own rule applies)."""
    global _seeded
    if _seeded:
        return
    _seeded = True
    if "LITELLM_LOCAL_MODEL_COST_MAP" in os.environ:
        return
    try:
        from importlib.resources import files

        from dspy.clients import model_metadata as table

        with table._lock:
            if table._data is not None:
                return
            data = table._snapshot()
            provenance = json.loads(files(table.__package__).joinpath("provenance.json").read_text())
            table._source = {
                "source": "local",
                "is_env_forced": False,
                "fallback_reason": "flock: the bundled table (no download)",
                "snapshot_version": provenance.get("version"),
            }
            table._data = data
    except (AttributeError, ImportError, OSError, ValueError, TypeError) as exc:
        logger.debug("could not preload DSPy's bundled model table (%s); DSPy loads it itself", exc)


def _remember_model_info() -> None:
    """Answer DSPy's model-metadata lookups from a bounded cache (one scan per model name)."""
    global _remembered
    with _lock:
        if _remembered:
            return
        _remembered = True
        try:
            from dspy.clients import capabilities, costs
            from dspy.clients import model_metadata as table
        except ImportError:
            return
        original = getattr(table, "model_info", None)
        if original is None or getattr(original, "flock_cached", False):
            return
        cached = _cached_lookup(original, table)
        for module in (table, costs, capabilities):
            if getattr(module, "model_info", None) is original:
                module.model_info = cached


def _cached_lookup(original: Any, table: Any) -> Any:
    answers: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], bool]] = OrderedDict()
    guard = threading.RLock()

    loaded: list[Any] = [None]  # the table the answers came from

    @functools.wraps(original)
    def model_info(provider: Any, model: Any, *, namespaces: Any = None) -> dict[str, Any]:
        key = (provider, model, tuple(namespaces) if namespaces is not None else None)
        with guard:  # a miss is looked up under the lock: concurrent first calls scan once
            data = getattr(table, "_data", None)
            if data is not loaded[0] and data is not None:  # loaded (or reloaded) since: start over
                answers.clear()
                loaded[0] = data
            hit = answers.get(key)
            if hit is not None:
                answers.move_to_end(key)
            else:
                found = original(provider, model, namespaces=namespaces)
                # Plain values copy with dict(); anything nested gets a deep copy, as DSPy's does.
                flat = all(isinstance(v, str | int | float | bool | type(None)) for v in found.values())
                hit = answers[key] = (found, flat)
                loaded[0] = getattr(table, "_data", None)
                if len(answers) > _CACHE_SIZE:
                    answers.popitem(last=False)
        found, flat = hit
        return dict(found) if flat else copy.deepcopy(found)

    model_info.flock_cached = True  # type: ignore[attr-defined]
    return model_info
