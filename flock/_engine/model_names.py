"""Model names checked at declaration: a typo fails at ``Flock("offlin")``, not after retries mid-run.

A name is accepted when it is a built-in model (``"offline"``), a ``provider/model`` name (any model
id: local servers serve names no price table knows, such as ``openai/my-local-model``), or a bare
name the model price table knows (``"gpt-4.1"``). Rejected, with the closest names as suggestions:
empty or padded names, a missing provider or model part (``"openai/"``), a bare name nobody knows
(``"offlin"``), and a provider prefix one letter away from a known one (``"opnai/gpt-4.1"``).

Checking never imports DSPy: the price table DSPy ships is read from its file, and only when a
name is not obviously valid.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.util
import json
from pathlib import Path

from .._core.errors import ConfigurationError

BUILTIN = ("offline",)
# Providers in common use, so the usual names need no file read. Anything the price table names
# as a provider is known too; an unknown prefix that is no near miss of a known one is accepted
# (LiteLLM knows more providers than any list here).
_COMMON = frozenset(
    {
        "openai", "anthropic", "azure", "azure_ai", "gemini", "vertex_ai", "bedrock", "groq", "mistral",
        "deepseek", "xai", "openrouter", "together_ai", "fireworks_ai", "cohere", "ollama", "ollama_chat",
        "hosted_vllm", "vllm", "lm_studio", "llamafile", "huggingface", "custom_openai", "litellm_proxy",
        "databricks", "perplexity", "cerebras", "sambanova", "nvidia_nim", "moonshot", "watsonx",
        "text-completion-openai",
    }
)  # fmt: skip


def check_model_name(name: object, source: str = "model") -> str:
    """Return ``name`` if it is a usable model name, else raise :class:`ConfigurationError`.

    ``source`` names where the value came from in the message (``"Flock(model=...)"``,
    ``"FLOCK_MODEL"``).
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"{source}: a model name is a string such as 'openai/gpt-4.1', got {name!r}")
    if name in BUILTIN:
        return name
    if not name.strip() or name != name.strip() or any(c.isspace() for c in name):
        raise ConfigurationError(
            f"{source}={name!r}: a model name has no spaces; use e.g. 'openai/gpt-4.1' or 'offline'"
        )
    provider, sep, model = name.partition("/")
    if sep:
        if not provider or not model:
            part = "provider" if not provider else "model id"
            raise ConfigurationError(
                f"{source}={name!r}: the {part} is missing; write 'provider/model', e.g. 'openai/gpt-4.1'"
            )
        if provider in _COMMON:
            return name
        known = _providers()
        if provider in known:
            return name
        near = difflib.get_close_matches(provider, sorted(known | _COMMON), n=1, cutoff=0.8)
        if near:
            raise ConfigurationError(
                f"{source}={name!r}: unknown provider {provider!r}; did you mean {near[0] + '/' + model!r}?"
            )
        return name  # a provider this list does not know; LiteLLM may (checked at the first call)
    if name in _bare_models():
        return name
    near = difflib.get_close_matches(name, [*BUILTIN, *sorted(_bare_models())], n=3, cutoff=0.75)
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise ConfigurationError(
        f"{source}={name!r} is not a model Flock knows.{hint} For a model the price table does not "
        f"list, give its provider: 'openai/{name}' on an OpenAI-compatible server. 'offline' is the "
        "built-in placeholder model."
    )


@functools.cache
def _table() -> dict[str, object]:
    """DSPy's bundled model price table, read from its file (no DSPy import, no network)."""
    spec = importlib.util.find_spec("dspy")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "clients" / "model_metadata" / "snapshot.json.gz"
        if path.is_file():
            try:
                data = json.loads(gzip.decompress(path.read_bytes()))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


@functools.cache
def _providers() -> frozenset[str]:
    found: set[str] = set()
    for key, entry in _table().items():
        head, sep, _ = key.partition("/")
        if sep:
            found.add(head)
        if isinstance(entry, dict) and isinstance(entry.get("litellm_provider"), str):
            found.add(entry["litellm_provider"])
    return frozenset(found)


@functools.cache
def _bare_models() -> frozenset[str]:
    return frozenset(
        k for k, v in _table().items() if "/" not in k and isinstance(v, dict) and k != "sample_spec"
    )
