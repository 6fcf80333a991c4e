"""One POST to a webhook receiver, guarded: the receiver is somebody else's server, the worker is ours.

- **No SSRF.** The URL's host is resolved first (at most WEBHOOK_CONNECT_TIMEOUT: a resolver that
  hangs costs that, not the worker), and every address it resolves to is checked: loopback,
  private, link-local, shared, reserved, multicast and unspecified addresses are refused, IPv4
  inside IPv6 (mapped, 6to4, Teredo) included, unless WEBHOOK_ALLOW_PRIVATE_TARGETS. The
  connection then goes to the address that was checked, with the host name only for TLS (SNI and
  the certificate) and the ``Host`` header, so a second DNS answer (rebinding) is never used.
- **Bounded time.** Connecting, TLS, sending and reading the answer share one deadline of
  WEBHOOK_CONNECT_TIMEOUT + WEBHOOK_READ_TIMEOUT: a watchdog shuts the socket when it passes, so a
  receiver that accepts and then drips bytes cannot hold the worker either.
- **Bounded size.** The body sent is at most MAX_BODY_BYTES; of the answer, the status line, the
  headers (http.client caps them) and at most READ_BYTES of body are read.
- **No redirects.** A 3xx is a failed attempt whose error names where it pointed; nothing follows it.
- Credentials in the URL are refused (they would show in the admin), and plain http:// unless
  WEBHOOK_ALLOW_HTTP.

``post`` never raises: every outcome, refusals included, is an ``Answer``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_BODY_BYTES = 256 * 1024
READ_BYTES = 4096  # of the answer's body: enough for the excerpt the log keeps
ERROR_CHARS = 500

# getaddrinfo has no timeout: it runs here, and the caller waits at most the connect timeout for it.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


class Refused(Exception):
    """The URL or what it resolves to may not be called (or cannot be): the message says why, for staff."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer at all
    body: str  # the start of the answer's body, decoded leniently
    error: str  # why the attempt failed, for the log ("" with a 2xx)
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse(url: str, *, allow_http: bool) -> Target:
    """The scheme, host, port and path of ``url``, or Refused with what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL ({error})") from None
    if parts.scheme not in ("https", "http"):
        raise Refused("the URL must start with https://")
    if parts.scheme == "http" and not allow_http:
        raise Refused("plain http:// is not allowed here (WEBHOOK_ALLOW_HTTP): use https://")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL may not contain a user name or password; receivers check the signature instead")
    if not parts.hostname:
        raise Refused("the URL has no host")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a name, not an address literal: in its ASCII form, as DNS and the Host header need it
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise Refused("the URL's host is not a valid name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def forbidden(address: str) -> bool:
    """Whether an address is anything but a public unicast one (the SSRF check)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and forbidden(str(embedded)):
            return True
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """Every address ``host`` resolves to, waiting at most ``timeout`` seconds; Refused when it does not resolve."""
    future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        raise Refused(f"resolving {host} took longer than {timeout:g} s") from None
    except (OSError, UnicodeError) as error:
        raise Refused(f"{host} does not resolve ({error})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(target: Target, *, allow_private: bool, timeout: float) -> list[str]:
    """The addresses to connect to: all of them, checked; Refused if any one is not public (unless allowed)."""
    addresses = resolve(target.host, target.port, timeout)
    if not allow_private:
        for address in addresses:
            if forbidden(address):
                raise Refused(
                    f"{target.host} resolves to {address}, a private, loopback or link-local address "
                    "(WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
                )
    return addresses


def check(url: str, *, allow_private: bool, allow_http: bool, timeout: float) -> None:
    """Refused if a webhook to ``url`` could never be sent from here (the admin's form asks this)."""
    checked_addresses(parse(url, allow_http=allow_http), allow_private=allow_private, timeout=timeout)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    allow_private: bool,
    allow_http: bool,
) -> Answer:
    """POST ``body`` to ``url`` under the guards above; never raises, never takes longer than the timeouts allow."""
    started = time.monotonic()

    def answer(status: int | None, text: str, error: str) -> Answer:
        return Answer(status, text, error[:ERROR_CHARS], int((time.monotonic() - started) * 1000))

    try:
        if len(body) > MAX_BODY_BYTES:
            raise Refused(f"the body is {len(body)} bytes, over the limit of {MAX_BODY_BYTES}")
        target = parse(url, allow_http=allow_http)
        addresses = checked_addresses(target, allow_private=allow_private, timeout=connect_timeout)
    except Refused as error:
        return answer(None, "", f"refused: {error}")
    deadline = _Deadline(connect_timeout + read_timeout)
    try:
        status, location, text = _exchange(target, addresses, body, headers, connect_timeout, read_timeout, deadline)
    except Exception as error:  # every network failure is one failed attempt, told in the log
        return answer(None, "", _describe(error, deadline, target))
    finally:
        deadline.cancel()
    if 300 <= status < 400:
        return answer(status, text, f"redirect to {location or '(no Location)'} not followed")
    return answer(status, text, "" if 200 <= status < 300 else f"HTTP {status}")


def _exchange(
    target: Target,
    addresses: list[str],
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float,
    read_timeout: float,
    deadline: _Deadline,
) -> tuple[int, str, str]:
    """Connect to the first checked address that answers, send, and read the status and the body's start."""
    last_error: Exception | None = None
    for address in addresses:
        kind = _TLSConnection if target.scheme == "https" else _PlainConnection
        connection = kind(target, address, connect_timeout, read_timeout, deadline)
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as error:
            connection.close()
            last_error = error
            if deadline.expired or isinstance(error, ssl.SSLError):
                raise
            continue
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Location", "")[:300], _read_start(response)
        finally:
            connection.close()
    raise last_error or OSError("no address to connect to")


def _read_start(response: http.client.HTTPResponse) -> str:
    """At most READ_BYTES of the body; an answer that breaks off midway keeps what arrived."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < READ_BYTES:
            chunk = response.read1(READ_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (OSError, http.client.HTTPException):
        pass  # the status decides the attempt; the excerpt is only a help
    return b"".join(chunks).decode("utf-8", "replace")


def _describe(error: Exception, deadline: _Deadline, target: Target) -> str:
    if deadline.expired:
        return f"no answer within {deadline.seconds:g} s (timed out)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: {error.verify_message or error}"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {target.host}:{target.port}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the receiver closed the connection without an answer"
    return f"{type(error).__name__}: {error}"


class _Deadline:
    """A watchdog: when ``seconds`` have passed it shuts the socket it watches, which ends any read or write."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            if self.expired:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._socket is not None:
                _shut(self._socket)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for a TLS socket: its own would drop its TLS state under a reading thread.
    with contextlib.suppress(OSError):  # closed already, or never connected
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _open(address: str, port: int, timeout: float, deadline: _Deadline) -> socket.socket:
    """A TCP connection to the checked ``address`` (never to a name resolved again), watched by the deadline."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline.watch(sock)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PlainConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, connect_timeout: float, read_timeout: float, deadline) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout)
        self._address, self._read_timeout, self._deadline = address, read_timeout, deadline

    def connect(self) -> None:
        self.sock = _open(self._address, self.port, self.timeout, self._deadline)
        self.sock.settimeout(self._read_timeout)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, connect_timeout: float, read_timeout: float, deadline) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout, context=ssl.create_default_context())
        self._address, self._read_timeout, self._deadline = address, read_timeout, deadline

    def connect(self) -> None:
        raw = _open(self._address, self.port, self.timeout, self._deadline)
        # The certificate is checked against the host name, not the address connected to.
        tls = self._context.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        self._deadline.watch(tls)
        try:
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        tls.settimeout(self._read_timeout)
        self.sock = tls
