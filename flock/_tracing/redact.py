"""Keep secrets out of exported spans.

Instrumentation never puts credentials on spans on purpose, but they leak in by accident: an
exception message that echoes the API key, a captured prompt that contains a token, a user attribute
named ``api_key``. Every exporter that :func:`flock.tracing.enable_tracing` installs runs spans through
this filter first. Three rules:

- attributes whose key names a secret (``api_key``, ``authorization``, ``password``, ...) are replaced;
- values of environment variables whose names look secret (``OPENAI_API_KEY``, ...) are cut out of any
  string;
- well-known credential shapes (``sk-...``, ``Bearer ...``, GitHub/Slack/Google/AWS keys) are cut out;
- secrets an engine was given (an ``api_key`` in ``lm_kwargs``, an authorization header), registered with
  :func:`register_secrets`, are cut out like environment values.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(api[_.-]?key|apikey|authorization|passw(or)?d|secret|access[_.-]?token|refresh[_.-]?token"
    r"|credential|private[_.-]?key|cookie|(?:^|[_-])token$)",  # GH_TOKEN, HF_TOKEN; not max_tokens
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_\-]{12,}"
    r"|(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}"
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}"
    r"|AIza[0-9A-Za-z_\-]{30,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{12,}"
)
_MIN_SECRET_LENGTH = 8  # shorter env values ("1", "true") would redact half the text
# The same shapes as they look inside JSON text, where whitespace may be written as an escape.
_SECRET_VALUE_IN_JSON = re.compile(_SECRET_VALUE.pattern.replace(r")\s+", r")(?:\s|\\[ntr])+"))
assert _SECRET_VALUE_IN_JSON.pattern != _SECRET_VALUE.pattern
_SHAPE_MARKERS = ("sk-", "gh", "xox", "AIza", "AKIA")  # the literal starts of _SECRET_VALUE's shapes


@functools.lru_cache(maxsize=4096)  # attribute keys repeat on every span
def secret_name(key: str) -> bool:
    """Does this attribute or variable name denote a credential? (``gen_ai.usage.input_tokens`` does not.)"""
    return _SECRET_NAME.search(key.rsplit(".", 1)[-1]) is not None


def environment_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of environment variables named like credentials, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if secret_name(k) and len(v) >= _MIN_SECRET_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


# Secrets engines were given. Process-wide on purpose: spans are exported by one thread behind the one
# global tracer provider, for every Flock in the process, and a span does not say which Flock made it.
# The registry only ever takes text *out* of what is exported; values are never written anywhere.
_REGISTERED: set[str] = set()
_REGISTERED_LOCK = threading.Lock()
_HEADER_KEYS = ("headers", "extra_headers", "default_headers")


def secrets_in(kwargs: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Credential values in model keyword arguments: ``api_key=...``, secret-named keys, and the values
    of authorization-like headers (``extra_headers={"Authorization": ...}``)."""
    found: set[str] = set()
    for key, value in (kwargs or {}).items():
        if key in _HEADER_KEYS and isinstance(value, Mapping):
            for name, header in value.items():
                lowered = str(name).lower()
                if secret_name(str(name)) or "auth" in lowered or "key" in lowered:
                    found.update(_plain(header))
        elif secret_name(str(key)):
            found.update(_plain(value))
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True))


def _plain(value: Any) -> list[str]:
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr
        value = value.get_secret_value()
    if not isinstance(value, str):
        return []
    out = [value]
    for prefix in ("Bearer ", "bearer ", "Basic "):
        if value.startswith(prefix):
            out.append(value[len(prefix) :])
    return out


def register_secrets(secrets: Iterable[str]) -> None:
    """Have every exported span scrubbed of ``secrets`` (see the module docstring)."""
    new = {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH} - _REGISTERED
    if new:
        with _REGISTERED_LOCK:
            _REGISTERED.update(new)


def registered_secrets() -> tuple[str, ...]:
    with _REGISTERED_LOCK:
        return tuple(_REGISTERED)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets``, environment secrets and credential shapes."""
    return Redactor((*secrets, *environment_secrets())).text(text)


class Redactor:
    """Scrubs attribute mappings. Build one per export batch so new environment secrets are seen."""

    def __init__(self, secrets: tuple[str, ...] | None = None) -> None:
        secrets = (*environment_secrets(), *registered_secrets()) if secrets is None else secrets
        # A secret may also appear JSON-escaped (once inside encoded attributes, twice inside a JSON
        # document held by an attribute, such as captured messages).
        forms = {form for secret in secrets for form in _escaped_forms(secret)}
        self._secrets = tuple(sorted(forms, key=len, reverse=True))
        self._seen: dict[str, str] = {}  # correlation ids, types, agent names repeat across a batch
        self._clean: set[str] = set()  # short texts maybe_secret found clean

    def maybe_secret(self, text: str) -> bool:
        """Might ``text`` (plain or JSON-encoded) hold a secret? ``False`` is certain; ``True`` means
        look closer. Cheap: substring tests and one regex scan."""
        if len(text) < _MIN_SECRET_LENGTH:
            return False
        if text in self._clean:  # span names, types, agent names: the same short texts again and again
            return False
        for secret in self._secrets:
            if secret in text:
                return True
        # Every credential shape starts with one of these; most text has none, and six substring
        # tests cost less than one scan with the pattern.
        if (
            not any(marker in text for marker in _SHAPE_MARKERS) and "bearer" not in text.lower()
        ) or _SECRET_VALUE_IN_JSON.search(text) is None:
            if len(text) <= 256 and len(self._clean) < 10_000:
                self._clean.add(text)
            return False
        return True

    def text(self, value: str) -> str:
        if len(value) < _MIN_SECRET_LENGTH:  # nothing this short is a credential (or matches a shape)
            return value
        clean = self._seen.get(value)
        if clean is None:
            clean = value
            for secret in self._secrets:
                if secret in clean:
                    clean = clean.replace(secret, REDACTED)
            clean = _SECRET_VALUE.sub(REDACTED, clean)
            if len(self._seen) < 10_000:
                self._seen[value] = clean
        return clean

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value) if len(value) >= _MIN_SECRET_LENGTH else value
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        if not attributes:
            return {}
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if secret_name(key):
                out[key] = REDACTED
            elif isinstance(value, str):
                out[key] = self.text(value) if len(value) >= _MIN_SECRET_LENGTH else value
            elif isinstance(value, tuple | list):
                out[key] = self.value(value)
            else:
                out[key] = value
        return out

    def needed(self, attributes: Mapping[str, Any] | None) -> bool:
        """Would :meth:`attributes` change anything? (Lets exporters pass clean spans through untouched.)"""
        return bool(attributes) and self.attributes(attributes) != dict(attributes or {})


def _escaped_forms(secret: str) -> list[str]:
    forms = [secret]
    for _ in range(2):
        escaped = json.dumps(forms[-1], ensure_ascii=False)[1:-1]
        if escaped == forms[-1]:
            break
        forms.append(escaped)
    return forms
