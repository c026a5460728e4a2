"""Keep secrets out of exported spans.

Instrumentation never puts credentials on spans on purpose, but they leak in by accident: an
exception message that echoes the API key, a captured prompt that contains a token, a user attribute
named ``api_key``. Every exporter that :func:`flock.tracing.enable_tracing` installs runs spans through
this filter first. Three rules:

- attributes whose key names a secret (``api_key``, ``authorization``, ``password``, ...) are replaced;
- values of environment variables whose names look secret (``OPENAI_API_KEY``, ...) are cut out of any
  string;
- well-known credential shapes (``sk-...``, ``Bearer ...``, GitHub/Slack/Google/AWS keys) are cut out.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
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


class Redactor:
    """Scrubs attribute mappings. Build one per export batch so new environment secrets are seen."""

    def __init__(self, secrets: tuple[str, ...] | None = None) -> None:
        secrets = environment_secrets() if secrets is None else secrets
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
