"""The email channel: one multipart message per alert (or digest) over SMTP.

`smtp://host:587` speaks STARTTLS (and refuses to go on in clear when the server does not
offer it), `smtps://host:465` implicit TLS; `tls = "none"` is only accepted for a relay on
loopback. Certificates are verified. The login (username, default the From address, and
a password from a secret reference) is optional. Delivery uses the standard library's
smtplib in a worker thread; one connection per message.

| what happened                                  | DeliveryResult              |
|------------------------------------------------|-----------------------------|
| accepted (some recipients may have been refused) | ok                        |
| an SMTP 4xx reply (greeting, auth, MAIL, RCPT, DATA) | transient              |
| an SMTP 5xx reply, every recipient refused 5xx | permanent                   |
| STARTTLS or AUTH not offered by the server     | permanent (configuration)   |
| connection refused or lost, timeout, TLS error | transient                   |

Headers and body: see email_message.py.

Secrets: every message returned (and so stored and shown) is scrubbed of the password in
every form (config.secrets.Redactor), of the AUTH PLAIN token (base64 of
`\\0user\\0password`), of AUTH LOGIN's base64 lines, and of the AUTH CRAM-MD5 answer sent
in this session (it depends on the server's challenge, so the session records it). What
the server said is scrubbed before it is cut to be shown: a server repeating the AUTH
line back, whole or in part, shows none of it.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from ..config import ChannelConfig, resolve
from ..config.secrets import Redactor, scrubbed
from ..models import Alert, DeliveryResult, Digest
from .email_message import alert_message, digest_message
from .sanitize import one_line

SESSION_IDLE = 30.0  # seconds an SMTP session may sit unused before it is closed, not reused
log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_PORTS = {"implicit": 465, "starttls": 587, "none": 25}


class StartTlsMissing(smtplib.SMTPNotSupportedError):
    """The server does not offer STARTTLS: we do not send in clear."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    tls: str  # "starttls" | "implicit" | "none"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str, tls: str | None = None) -> SmtpServer:
    """`smtp://host[:port]` (STARTTLS) or `smtps://host[:port]` (implicit TLS); an explicit
    `tls` wins. Raises ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("smtp must start with smtp:// or smtps://")
    if "@" in parts.netloc:
        raise ValueError("put the login in username and password (a secret reference), not in the URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port in smtp is not a number") from None
    host = parts.hostname
    if not host:
        raise ValueError("smtp has no host")
    mode = tls or ("implicit" if parts.scheme == "smtps" else "starttls")
    if mode not in DEFAULT_PORTS:
        raise ValueError(f"tls must be starttls, implicit or none, not {mode!r}")
    if mode == "none" and not is_loopback(host):
        raise ValueError("tls = 'none' is only allowed for a relay on loopback")
    return SmtpServer(host, port or DEFAULT_PORTS[mode], mode)


def bare_address(address: str) -> str:
    """`Desk <desk@example.org>` -> `desk@example.org`; ValueError when there is none."""
    addr = parseaddr(address)[1]
    unsafe = any(ord(c) < 0x20 or ord(c) == 0x7F for c in address) or any(c.isspace() for c in addr)
    if "@" not in addr or unsafe:
        raise ValueError(f"{address!r} is not an email address")
    return addr


def smtp_failure(error: BaseException, scrub: Callable[[str], str] | None = None) -> DeliveryResult:
    """What an smtplib or socket error means for the outbox (see the table above). The
    server's text and the error's are passed through `scrub` before they are cut."""
    scrub = scrub or (lambda text: text)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = list(error.recipients.values())
        code, text = replies[0] if replies else (0, b"")
        transient = any(400 <= c < 500 for c, _ in replies)
        return DeliveryResult(
            False,
            f"SMTP {code}: {_reply_text(text, scrub)} (every recipient was refused)",
            permanent=not transient,
        )
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        message = f"SMTP {code}: {_reply_text(error.smtp_error, scrub)}"
        if isinstance(error, smtplib.SMTPAuthenticationError):
            message += " (login refused: check username and password)"
        return DeliveryResult(False, message, permanent=500 <= code < 600)
    if isinstance(error, StartTlsMissing):
        return DeliveryResult(
            False, "the SMTP server does not offer STARTTLS; not sending in clear", permanent=True
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return DeliveryResult(
            False, f"the SMTP server does not support this: {_reply_text(str(error), scrub)}", permanent=True
        )
    if isinstance(error, TimeoutError):
        return DeliveryResult(False, "SMTP server did not answer in time")
    if isinstance(error, ssl.SSLError):
        return DeliveryResult(False, f"TLS with the SMTP server failed: {_reply_text(str(error), scrub)}")
    if isinstance(error, OSError):
        said = _reply_text(error.strerror or str(error), scrub)
        return DeliveryResult(False, f"cannot reach the SMTP server: {said}")
    if isinstance(error, UnicodeError):  # its text quotes the character, maybe one of the password
        return DeliveryResult(
            False, f"SMTP failed: {type(error).__name__}: a login, password or address SMTP cannot carry"
        )
    return DeliveryResult(False, f"SMTP failed: {type(error).__name__}: {_reply_text(str(error), scrub)}")


def _reply_text(text: bytes | str, scrub: Callable[[str], str] = lambda text: text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return one_line(scrub(text))[:300]


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the AUTH CRAM-MD5 answers it sends in `sent` (the answer
    depends on the server's challenge: only the session knows it), to be scrubbed."""

    sent: list[str]

    def auth_cram_md5(self, challenge: Any = None) -> Any:  # Any: typeshed overloads it
        answer = super().auth_cram_md5(challenge)
        if answer:  # None when asked for an initial response (CRAM-MD5 has none)
            self.sent.append(answer)
        return answer


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):  # noqa: N801  (as smtplib names it)
    pass


class EmailChannel:
    def __init__(
        self,
        name: str,
        server: SmtpServer,
        sender: str,
        recipients: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        if not recipients:
            raise ValueError("an email channel needs at least one recipient")
        self.name = name
        self.server = server
        self.sender = sender
        self.recipients = tuple(recipients)
        self._envelope_from = bare_address(sender)
        self._envelope_to = [bare_address(r) for r in recipients]
        self._username = username or (self._envelope_from if password else None)
        self._password = password
        self._scrub = login_redactor(self._username, password)
        self._auth_sent: list[str] = []  # the CRAM-MD5 answers of the last login (see _SMTP)
        self._timeout = timeout
        self._tls_context = tls_context
        self._session: smtplib.SMTP | None = None  # kept open between messages of a drain
        self._session_used = 0.0
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_config(cls, config: ChannelConfig) -> EmailChannel:
        from . import ChannelNotAvailable

        options = config.options
        password = resolve(options["password"]) if options.get("password") else None
        try:
            server = parse_smtp_url(options["smtp"], options.get("tls"))
            return cls(
                config.name,
                server,
                options["from"],
                tuple(options["to"]),
                username=options.get("username"),
                password=password,
            )
        except ValueError as e:
            raise ChannelNotAvailable(f"channel {config.name!r}: {e}") from None

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        message = alert_message(
            alert, key=key, sender=self.sender, recipients=self.recipients, now=self._clock()
        )
        return await self._deliver(message)

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        message = digest_message(
            digest, key=key, sender=self.sender, recipients=self.recipients, now=self._clock()
        )
        return await self._deliver(message)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._drop_session)

    async def _deliver(self, message: Message) -> DeliveryResult:
        try:
            refused = await asyncio.to_thread(self._transmit, message)
        except (smtplib.SMTPException, OSError, UnicodeError) as e:
            scrub = self._scrub.with_values(
                *self._auth_sent, *(a.rpartition(" ")[2] for a in self._auth_sent)
            )
            return scrubbed(smtp_failure(e, scrub), scrub)
        if refused:
            codes = sorted({code for code, _ in refused.values()})
            log.warning(
                "email_recipients_refused channel=%s refused=%d codes=%s",
                self.name,
                len(refused),
                ",".join(map(str, codes)),
            )
            return DeliveryResult(True, f"delivered; {len(refused)} recipient(s) refused ({codes})")
        return DeliveryResult(True)

    def _context(self) -> ssl.SSLContext:
        """The TLS context, made once: loading the CA store costs ~17 ms of CPU."""
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def _open(self) -> smtplib.SMTP:
        """A logged-in SMTP session."""
        server = self.server
        smtp: smtplib.SMTP
        if server.tls == "implicit":
            smtp = _SMTP_SSL(server.host, server.port, timeout=self._timeout, context=self._context())
        else:
            smtp = _SMTP(server.host, server.port, timeout=self._timeout)
        self._auth_sent = smtp.sent = []
        try:
            smtp.ehlo()
            if server.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise StartTlsMissing("STARTTLS not offered")
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self._username and self._password:
                smtp.login(self._username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _transmit(self, message: Message) -> dict[str, tuple[int, bytes]]:
        """Send on the session kept from the last message, or a new one (runs in a worker
        thread; the drainer sends one message at a time per channel). Returns the refused
        recipients. A session the server dropped while idle is replaced once; after any
        other error the session is closed and the error raised."""
        session, self._session = self._session, None
        if session is not None and time.monotonic() - self._session_used > SESSION_IDLE:
            _close(session)
            session = None
        if session is not None:
            try:
                return self._send_on(session, message)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                pass  # dropped while idle: one fresh session below
        return self._send_on(self._open(), message)

    def _send_on(self, session: smtplib.SMTP, message: Message) -> dict[str, tuple[int, bytes]]:
        try:
            refused = session.send_message(message, self._envelope_from, self._envelope_to)
        except BaseException:
            _close(session)
            raise
        self._session, self._session_used = session, time.monotonic()
        return refused

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            _close(session)


def login_redactor(username: str | None, password: str | None) -> Redactor:
    """What a login sends, to be scrubbed: the password in every form, the AUTH PLAIN
    token (`\\0user\\0password`, base64), `user:password`, and the base64 of the user name
    (AUTH LOGIN's first line; the name itself is configuration, not a secret)."""
    if not password:
        return Redactor()
    user = username or ""
    return Redactor(
        password,
        f"\0{user}\0{password}",
        f"{user}\0{user}\0{password}",
        f"{user}:{password}",
        tokens=[base64.b64encode(user.encode()).decode()] if user else [],
    )


def _close(session: smtplib.SMTP) -> None:
    """QUIT politely; if the connection is already gone, just close it."""
    try:
        session.quit()
    except (smtplib.SMTPException, OSError):
        session.close()
