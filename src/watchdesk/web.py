"""What fetching and delivering share, below both: canonical URLs (the same story under
tracking parameters is one story), what makes a URL unusable (shared by the config check
and the network layer), the one TLS context, Retry-After; and writing feed text into a
TOML file safely (OPML import and `discover` both do)."""

from __future__ import annotations

import email.utils
import functools
import re
import ssl
import string
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid", "_ga"}
)


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no default port, no tracking parameters."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port and not (scheme == "http" and port == 80 or scheme == "https" and port == 443):
        host = f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    ]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


# A URL whose host is a plain DNS name of valid labels and that has no port (or nothing
# else that asks for a closer look): url_problem finds nothing wrong with it.
_PLAIN_HOST = re.compile(r"https?://([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.?)(?=[/?#]|\Z)")
# A URL already in same_resource_url's form: lower-case host, no port, userinfo, escape,
# fragment or space, a path (dot segments are looked for apart).
_PLAIN_URL = re.compile(r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*/[^%#\s]*(?<!\?)\Z")
_NOT_IN_HOSTS = re.compile(r'[\s<>"{}|\\^`%]')  # (and what is not printable): no host name has them


def url_problem(url: str) -> str | None:
    """What makes `url` unusable past its scheme (which the caller checks), or None: it does
    not parse, it has no host (`http:///feed`), a port outside 1-65535 or not a number, or
    a host name no resolver takes (a space, a control character, an empty or over-long
    label). Each message names the URL."""
    plain = _PLAIN_HOST.match(url)
    if plain and len(plain.group(1)) <= 253:  # most URLs: nothing to parse (100,000 feeds load)
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as e:  # 'http://[::1/'
        return f"{url!r} is not a valid URL: {e}"
    if not host:
        return f"{url!r} has no host"
    hostport = parts.netloc.rpartition("@")[2]
    raw_port = "" if hostport.endswith("]") or ":" not in hostport else hostport.rpartition(":")[2]
    if raw_port and not (raw_port.isascii() and raw_port.isdigit() and 1 <= int(raw_port) <= 65535):
        return f"{url!r} has port {raw_port!r}: a port is a number from 1 to 65535"
    try:
        _ = parts.port  # anything else urlsplit itself refuses
    except ValueError as e:
        return f"{url!r} has an invalid port: {e}"
    if not host.isprintable() or _NOT_IN_HOSTS.search(host):
        return f"{url!r}: host {host!r} holds a character no host name has"
    if host.isascii() and ":" not in host:  # IDNA names are httpx's to check; IPv6 parsed above
        name = host.removesuffix(".")
        if len(name) > 253 or any(not 1 <= len(label) <= 63 for label in name.split(".")):
            return f"{url!r}: host {host!r} is not a valid host name (an empty or over-long label)"
    return None


def lower_scheme(url: str) -> str:
    """`url` with its scheme in lower case (schemes are case-insensitive, RFC 3986 3.1)."""
    scheme, sep, rest = url.partition(":")
    return scheme.lower() + sep + rest if sep and scheme.isascii() and scheme.isalpha() else url


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `/a/./b/../c` -> `/a/c`."""
    if "." not in path:
        return path
    absolute = path.startswith("/")
    segments = path.split("/")[1:] if absolute else path.split("/")
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return ("/" if absolute else "") + "/".join(out)


def same_resource_url(url: str) -> str:
    """A form in which two URLs that name the same resource are equal (RFC 3986 6.2.2 and
    6.2.3): scheme and host in lower case, no default port, an empty path as `/`, a
    percent-encoded unreserved character decoded (`%64` is `d`) and other escapes in upper
    case, no dot segments, no fragment; the query is kept (it may name another feed).
    For comparing only: it is never what is stored or requested. A URL that does not parse
    is returned as it is."""
    if _PLAIN_URL.match(url) and "/." not in url:  # already in that form: most URLs
        return url
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = _remove_dot_segments(_PERCENT.sub(_percent, parts.path)) or "/"
    query = _PERCENT.sub(_percent, parts.query)
    return urlunsplit((scheme, userinfo + at + host, path, query, ""))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Certificates and host names verified against certifi's CA store, as httpx does.
    Loading the store costs ~14 ms, so one context is made, on first use, and shared by
    every HTTP client and channel."""
    import httpx  # here, not at the top: the store imports this module for canonical_url

    return httpx.create_ssl_context(trust_env=False)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ---- feed text written into TOML -------------------------------------------------------

# What acts on a terminal or splits a line: C0 and C1 controls, DEL, bidi marks,
# embeddings, overrides and isolates, line and paragraph separators.
UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes and backslashes escaped, controls, bidi marks
    and line separators as escapes (so the file is also safe to print), a lone surrogate
    (which no TOML string can hold) as U+FFFD."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\uFFFD")
        elif UNSAFE_CHARS.match(ch):
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
