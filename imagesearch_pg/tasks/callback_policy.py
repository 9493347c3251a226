"""Which CallbackAddress the server may post to, and how often it tries: the policy of task callbacks.

The address comes from an API caller and the server sends the request, so the address is checked as a
server-side request forgery: http or https only, no user:password@, and every address its host resolves to
must be public (not loopback, private, link-local with the cloud metadata service, unique-local,
multicast, reserved, CGNAT, or one of these inside IPv6) unless the operator allows its network
(IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS). It is checked when the task is submitted and again at every
delivery (callbacks.deliver connects to the very addresses checked here: no second DNS lookup that a
rebinding name could answer differently).

Retries: a failed delivery (no connection, a timeout, an answer other than 2xx) is tried again after
``retry_seconds``, then twice that, doubling, until ``attempts`` deliveries were made; with the defaults
(5 s, 8 attempts) the retries come 5, 10, 20, 40, 80, 160 and 320 s apart, and the callback is given up
635 s (10.6 minutes, plus the time the attempts took) after its first attempt. An address refused at
delivery (its name now resolves into a refused network) is given up at once: that is a misconfiguration
or an attack, not an outage. A name that does not resolve at delivery is a failure like any other (the
DNS may be back next time).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import ImageSearchError, InvalidParameter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 1024
RESOLVE_SECONDS = 5.0
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="callback-dns")
_ALLOW_HINT = "the operator can allow such networks with IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS"
_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))

# Refused unless allowed, most specific first; anything else Python does not call global is refused too.
# IPv4-mapped IPv6 addresses are judged (and reached) as the IPv4 address they map.
_REFUSED = tuple((ipaddress.ip_network(network), kind) for network, kind in (
    ("0.0.0.0/8", "an unspecified address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared address (carrier-grade NAT)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (where cloud metadata services answer)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address"),
    ("::ffff:0:0:0/96", "an IPv4-translated address"),
    ("64:ff9b:1::/48", "a local NAT64 address"),
    ("100::/64", "a discard address"),
    ("2001::/23", "an IETF protocol address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment routing address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the last 32 bits are an IPv4 address a NAT64 gateway reaches


class InvalidCallbackSettings(ImageSearchError):
    code = "InvalidConfiguration"


class HostNotFound(InvalidParameter):
    """The address's host does not resolve: refused at submit time, a failure worth a retry at delivery."""


def _refusal(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is, or None if it is public."""
    for network, kind in _REFUSED:
        if address in network:
            return kind
    if isinstance(address, ipaddress.IPv6Address):
        inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else address.sixtofour
        if inner is not None and (kind := _refusal(inner)):
            return f"{kind} ({inner} within IPv6)"
    return None if address.is_global else "a non-public address"


def _normal(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Target:
    """A checked address: where to connect and what to send as the host."""

    scheme: str
    host: str  # ASCII (IDNA), for TLS
    port: int
    host_header: str
    path: str  # the request target: path and query
    addresses: tuple[IPAddress, ...]  # every one checked


@dataclass(frozen=True)
class CallbackPolicy:
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    retry_seconds: float = 5.0  # the first retry's delay; each next one doubles
    attempts: int = 8  # deliveries in all, the first one included
    timeout: float = 10.0  # for one delivery, connection to answer (DNS resolution aside)

    @classmethod
    def from_settings(cls, settings: Settings) -> "CallbackPolicy":
        networks = []
        for text in settings.callback_allowed_networks:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise InvalidCallbackSettings(
                    f"IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS: {text!r} is not a network; write CIDR blocks "
                    "such as 127.0.0.0/8 or fd00::/8, separated by commas") from None
        if settings.callback_attempts < 1 or not settings.callback_retry_seconds > 0:
            raise InvalidCallbackSettings(
                "IMAGESEARCH_CALLBACK_ATTEMPTS must be at least 1 and IMAGESEARCH_CALLBACK_RETRY_SECONDS "
                f"more than 0, not {settings.callback_attempts} and {settings.callback_retry_seconds}")
        return cls(tuple(networks), settings.callback_retry_seconds, settings.callback_attempts)

    @property
    def lease_seconds(self) -> float:
        # A claimed callback is another worker's again after this: one delivery's timeout, plus the DNS
        # resolution no timeout bounds (a resolver's retries take up to about 30 s).
        return self.timeout + 60.0

    def retry_delay(self, attempts_made: int) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` failed ones, or None: give up."""
        return None if attempts_made >= self.attempts else self.retry_seconds * 2 ** (attempts_made - 1)

    def check(self, url: str) -> None:
        """Raise InvalidParameter, saying why, unless ``url`` is a CallbackAddress this policy accepts."""
        self.target(url)

    def target(self, url: str) -> Target:
        """``url`` parsed, its host resolved once and every address checked. Raises InvalidParameter
        (HostNotFound if the host does not resolve)."""
        scheme, host, port, host_header, path = _parse(url)
        addresses = _resolve(host, port)
        for address in addresses:
            kind = None if self._allows(address) else _refusal(address)
            if kind is not None:
                raise InvalidParameter(f"CallbackAddress resolves to {address}, {kind}; {_ALLOW_HINT}")
        return Target(scheme, host, port, host_header, path, addresses)

    def _allows(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)


def _parse(url: object) -> tuple[str, str, int, str, str]:
    if not isinstance(url, str) or not url:
        raise InvalidParameter("CallbackAddress must be an http or https URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidParameter(f"CallbackAddress has {len(url)} characters; at most {MAX_URL_LENGTH} are allowed")
    # Before parsing: urlsplit silently drops some of them (tabs, newlines), which would hide them.
    if any(unicodedata.category(char)[0] in "CZ" for char in url):
        raise InvalidParameter("CallbackAddress must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidParameter("CallbackAddress must be an http or https URL")
    if "@" in parts.netloc:
        raise InvalidParameter("CallbackAddress must not contain a user name or password (user:password@); "
                               "put a token in its path or query instead")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidParameter("CallbackAddress has an invalid port; a port is a number from 1 to 65535")
    if not parts.hostname:
        raise InvalidParameter("CallbackAddress has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidParameter(f"CallbackAddress host {parts.hostname!r} is not a valid host name") from None
    host_header = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_PRINTABLE_ASCII)
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), host_header, path


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    # getaddrinfo has no timeout of its own: a name whose servers never answer would hold the request (or
    # the callback round) that asked. The lookup goes on in the background; the answer is not waited for.
    lookup = _LOOKUPS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        found = lookup.result(timeout=RESOLVE_SECONDS)
    except TimeoutError:
        raise HostNotFound(f"CallbackAddress host {host!r} did not resolve within {RESOLVE_SECONDS:.0f} s") from None
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise HostNotFound(f"CallbackAddress host {host!r} does not resolve ({reason})") from None
    addresses = tuple(dict.fromkeys(_normal(ipaddress.ip_address(info[4][0])) for info in found
                                    if info[0] in (socket.AF_INET, socket.AF_INET6)))
    if not addresses:
        raise HostNotFound(f"CallbackAddress host {host!r} has no IP address")
    return addresses
