"""Secret references: `env:NAME` (the environment) and `credential:NAME`
(a file in systemd's $CREDENTIALS_DIRECTORY). Values never appear in messages.

A `Redactor` is how: a channel makes one from its secrets, and every message it returns
(DeliveryResult) and every log line it or the library under it writes passes through it.
It replaces a secret in every form a protocol writes it:

- plain, percent-encoded (any case of hex, `+` for a space), JSON- and HTML-escaped, and
  as Python writes it in the repr of bytes (exception texts);
- base64 (standard and URL-safe alphabets) wherever the secret sits in the encoded
  stream: so inside SMTP AUTH PLAIN's `\\0user\\0password`, AUTH LOGIN's lines and HTTP
  Basic auth's `user:password`. A run of base64 characters that holds any of it is
  replaced whole: an AUTH line or an Authorization header goes, not just its middle;
- `tokens`: exact strings a protocol sent (the base64 of an AUTH LOGIN user name, whose
  name alone is no secret), replaced as they are;
- `add_url`: a URL, its path, query, userinfo and (for a URL that is a secret through
  and through, as an Apprise URL) its host and every piece between delimiters.

Text cut short (an answer read only to a limit) may end in the start of a secret:
`cut=True` replaces a tail that starts any form of one, so a truncation never leaves
half a token behind. Scrub before cutting text to show: what is cut after scrubbing can
only cut the marker.

Short secrets: a value (or a form of one) shorter than MIN_SECRET_CHARS (4) is not
replaced on its own. A 1-3 character password would otherwise turn every message into
`[redacted]` (every "a", every "on"), and hiding it hides little: it is guessed in a few
thousand tries. It is still hidden wherever it travels inside something longer: the
AUTH PLAIN token, `user:password` in Basic auth and URLs, a URL's userinfo.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import weakref
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from ..errors import SecretError
from ..models import DeliveryResult

_REF = re.compile(r"^(env|credential):([A-Za-z_][A-Za-z0-9_.-]*)$")

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "Redactor",
    "SecretError",
    "is_reference",
    "redact",
    "resolve",
    "scrub_logs",
    "scrubbed",
    "url_secrets",
]


def is_reference(value: str) -> bool:
    return bool(_REF.match(value))


def resolve(ref: str) -> str:
    """The secret's value. Raises SecretError naming the reference, never the value."""
    m = _REF.match(ref)
    if not m:
        raise SecretError("not a secret reference (write 'env:NAME' or 'credential:NAME')")
    kind, name = m.groups()
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set")
        return value
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        raise SecretError(f"credential {name}: $CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)")
    try:
        return (Path(folder) / name).read_text(encoding="utf-8").strip()
    except OSError:
        raise SecretError(f"credential {name} is not readable in $CREDENTIALS_DIRECTORY") from None


REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values are not replaced on their own (see above)
MIN_CUT_CHARS = 3  # the shortest start of a secret replaced at the end of a cut text
MIN_TOKEN_CHARS = 8  # a URL piece this long may be a token
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_BASE64_TAIL = re.compile(r"[A-Za-z0-9+/_-]+={0,2}\Z")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_URL_PIECES = re.compile(r"[/?&=;#]+")  # between path segments, query keys and values
_HOST_PIECES = re.compile(r"[:,\s]+")  # in a host that may be a token (tgram://123456:ABC...)


def redact(text: str, *values: str) -> str:
    """Replace each secret value, in every form (see Redactor), in text."""
    return Redactor(*values)(text)


def _forms(value: str) -> set[str]:
    """The secret as a protocol, an echo of one or an exception text writes it."""
    raw = value.encode("utf-8", "surrogatepass")
    found = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        repr(raw)[2:-1],
    }
    return {f for f in found if len(f) >= MIN_SECRET_CHARS}


def _base64_cores(value: str) -> set[str]:
    """The base64 characters that depend on `value` alone, wherever it starts in a longer
    encoded stream: 3 alignments, standard and URL-safe alphabets."""
    raw = value.encode("utf-8", "surrogatepass")
    found = set()
    for offset in range(3):
        start, end = -(-8 * offset // 6), (8 * offset + 8 * len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + raw + b"\0\0")[start:end].decode("ascii")
            if len(core) >= MIN_SECRET_CHARS:
                found.add(core)
    return found


def _pattern(form: str) -> str:
    """A form as a regex: percent-escapes match either case of hex."""
    parts = _PERCENT.split(form)  # text, hex, text, hex, ...
    return "".join(
        re.escape(part) if i % 2 == 0 else f"%(?i:{re.escape(part)})" for i, part in enumerate(parts)
    )


class Redactor:
    """Replaces secrets in text, in every form a protocol writes them (see the module)."""

    def __init__(self, *values: str, tokens: Iterable[str] = ()):
        self._forms: set[str] = set()
        self._cores: set[str] = set()
        self._compiled: tuple[re.Pattern[str] | None, tuple[str, ...], tuple[str, ...]] | None = None
        self.add(*values)
        self.add_tokens(*tokens)

    def add(self, *values: str) -> Redactor:
        """Secrets to replace in every form."""
        for value in values:
            if value:
                self._forms |= _forms(value)
                self._cores |= _base64_cores(value)
        self._compiled = None
        return self

    def add_tokens(self, *tokens: str) -> Redactor:
        """Exact strings to replace as they are (what a protocol sent). One in base64's
        characters takes the base64 run it is in with it (a line that starts with it)."""
        for token in tokens:
            core = token.rstrip("=")
            if _BASE64_RUN.fullmatch(token) and len(core) >= MIN_SECRET_CHARS:
                self._cores.add(core)
            elif len(token) >= MIN_SECRET_CHARS:
                self._forms.add(token)
        self._compiled = None
        return self

    def add_url(self, url: str, *, whole: bool = False) -> Redactor:
        """A secret URL: see url_secrets."""
        return self.add(*url_secrets(url, whole=whole))

    def with_values(self, *values: str) -> Redactor:
        """A copy that also replaces `values`."""
        copy = Redactor()
        copy._forms, copy._cores = set(self._forms), set(self._cores)
        return copy.add(*values)

    def __bool__(self) -> bool:
        return bool(self._forms or self._cores)

    def _compile(self) -> tuple[re.Pattern[str] | None, tuple[str, ...], tuple[str, ...]]:
        if self._compiled is None:
            forms = tuple(sorted(self._forms, key=len, reverse=True))  # a URL before its pieces
            pattern = re.compile("|".join(_pattern(f) for f in forms)) if forms else None
            self._compiled = (pattern, forms, tuple(self._cores))
        return self._compiled

    def __call__(self, text: str, *, cut: bool = False) -> str:
        """`text` without the secrets; `cut`: text that was cut short (see the module)."""
        pattern, forms, cores = self._compile()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        if cores:
            text = _BASE64_RUN.sub(lambda m: REDACTED if any(c in m[0] for c in cores) else m[0], text)
        if cut:
            text = self._cut_tail(text, forms, cores)
        return text

    @staticmethod
    def _cut_tail(text: str, forms: tuple[str, ...], cores: tuple[str, ...]) -> str:
        """Replace the end of `text` when it is the start of a form of a secret (for a
        base64 core: the whole base64 run it ends)."""
        run = _BASE64_TAIL.search(text)
        for candidates, is_core in ((forms, False), (cores, True)):
            for form in candidates:
                for size in range(min(len(form) - 1, len(text)), MIN_CUT_CHARS - 1, -1):
                    if text.endswith(form[:size]):
                        start = run.start() if is_core and run is not None else len(text) - size
                        return text[:start] + REDACTED
        return text


def url_secrets(url: str, *, whole: bool = False) -> tuple[str, ...]:
    """The strings to redact for a secret URL: the URL itself, its path and query, their
    pieces of MIN_TOKEN_CHARS or more (a token in a path segment or a query value), and
    its userinfo (the password, and `user:password` as Basic auth sends it); each also
    percent-decoded. `whole`: a URL that is a secret through and through (an Apprise URL,
    where the host or the user may be the token): every piece, the host's included, but
    IP addresses. Longest first (the whole URL is replaced before its pieces)."""
    try:
        parts = urlsplit(url.strip())
        netloc, tail = parts.netloc, url.strip().partition(parts.netloc)[2] if parts.netloc else parts.path
    except ValueError:  # e.g. an unbalanced [ in the host: treat it all as pieces
        netloc, tail, whole = "", url, True
    userinfo, _, host = netloc.rpartition("@")
    found = {url, url.strip()}
    if len(tail) > 1:
        found.add(tail)
    pieces = _URL_PIECES.split(tail)
    if userinfo:
        user, _, password = userinfo.partition(":")
        found |= {password, unquote(password), f"{unquote(user)}:{unquote(password)}", userinfo}
        if whole:
            pieces.append(user)
    if whole and not _is_ip_host(host):
        pieces += [host, *_HOST_PIECES.split(host)]
    for piece in pieces:
        if len(piece) >= MIN_TOKEN_CHARS and not _is_ip(piece.strip("[]")):
            found |= {piece, unquote(piece), unquote_plus(piece)}
    found.discard("")
    return tuple(sorted(found, key=len, reverse=True))


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _is_ip_host(host: str) -> bool:
    """`127.0.0.1`, `127.0.0.1:8080`, `[::1]:8080`: an address, not a token."""
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return _is_ip(host)


def scrubbed(result: DeliveryResult, redactor: Redactor) -> DeliveryResult:
    """The result with its message redacted: what a channel returns."""
    if not result.message:
        return result
    return replace(result, message=redactor(result.message))


class _LogScrubber(logging.Filter):
    """Redacts every record of the loggers it is on, with every live Redactor given to
    scrub_logs (a record does not say which channel it is about)."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(self.redactors)
        if not redactors:
            return True

        def scrub(text: str) -> str:
            for redactor in redactors:
                text = redactor(text)
            return text

        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: what a handler would print, scrubbed
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info:
            record.exc_text = scrub(record.exc_text or logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # only the redacted text is left to format
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_LOG_SCRUBBER = _LogScrubber()


def scrub_logs(redactor: Redactor, *prefixes: str) -> None:
    """Redact with `redactor`, while it lives, every record of the loggers named
    `prefixes` and of every existing logger below them (a logger's filter only sees the
    records made on it: call again after importing what makes new loggers)."""
    _LOG_SCRUBBER.redactors.add(redactor)
    names = [n for n in list(logging.Logger.manager.loggerDict) if n.split(".")[0] in prefixes]
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        if _LOG_SCRUBBER not in logger.filters:
            logger.addFilter(_LOG_SCRUBBER)
