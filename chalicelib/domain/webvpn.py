"""WebVPN links: the URL scheme of the WebVPN gateways common in Chinese universities.

A link through the gateway names the target's scheme (and port, when the URL gives one) in clear
and its host encrypted, followed by the target's path, query and fragment unchanged::

    <gateway>/<scheme>[-<port>]/<hex(IV)><hex(ciphertext of the host)><path?query#fragment>

The host is encrypted with AES-128 in CFB mode with 128-bit segments under the school's key and
IV (the vendor's default for both is ``wrdvpnisthebest!``); CFB is a stream mode, so the
ciphertext has the host's length. The gateway decrypts the host to forward the request; the
encryption hides nothing from anyone who knows the key and is not a security measure of ours.

No maintained library implements this scheme, so it is written here; the cipher is
``cryptography``'s (CFB lives in ``hazmat.decrepit`` since cryptography 43). IPv6 literals are
encrypted in their bracketed URL form (``[2001:da8::1]``), as a browser's ``URL.host`` gives them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

SCHEMES = frozenset({"http", "https", "ssh", "vnc", "telnet"})
VENDOR_DEFAULT = "wrdvpnisthebest!"
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PREFIX = re.compile(r"/(?P<scheme>[a-z]+)(?:-(?P<port>[0-9]{1,5}))?/(?P<hex>[0-9a-fA-F]+)(?P<rest>[/?#].*)?",
                     re.DOTALL)


class LinkError(ValueError):
    """A URL that cannot go through the gateway, or a link that is not one of the gateway's."""


@dataclass(frozen=True)
class WebVpn:
    """The school's gateway: its base URL (``https://webvpn.example.edu.cn``), key and IV."""

    gateway: str
    key: bytes = VENDOR_DEFAULT.encode()
    iv: bytes = VENDOR_DEFAULT.encode()

    def __post_init__(self) -> None:
        if len(self.key) != 16 or len(self.iv) != 16:
            raise ValueError("The WebVPN key and IV are 16 bytes each (AES-128).")
        if not re.fullmatch(r"https?://[^/?#\s]+", self.gateway):
            raise ValueError("The WebVPN gateway is a base URL such as https://webvpn.example.edu.cn (no path).")

    def encode(self, url: str) -> str:
        """The gateway link that opens ``url``.

        Raises:
            LinkError: not an absolute http, https, ssh, vnc or telnet URL with a valid host, or
                it carries a user name or password.
        """
        scheme, host, port, rest = split_target(url)
        return f"{self.gateway}/{scheme}{'-' + port if port else ''}/{self.iv.hex()}{self._crypt(host, True)}{rest}"

    def decode(self, link: str) -> str:
        """The target URL of a gateway link (the inverse of :meth:`encode`).

        Raises:
            LinkError: not a link of this gateway, or its host does not decrypt under the key.
        """
        if not link.startswith(self.gateway + "/"):
            raise LinkError("Not a link of this gateway.")
        match = _PREFIX.fullmatch(link[len(self.gateway):])
        iv_hex = self.iv.hex()
        if match is None or match["scheme"] not in SCHEMES or not match["hex"].lower().startswith(iv_hex) \
                or len(match["hex"]) % 2:
            raise LinkError("Not a WebVPN link: expected /<scheme>[-<port>]/<IV><host>...")
        try:
            host = _decrypted_host(self._crypt(match["hex"][len(iv_hex):], False))
        except (UnicodeDecodeError, LinkError):
            raise LinkError("The host does not decrypt under this gateway's key.") from None
        port = match["port"]
        return f"{match['scheme']}://{host}{':' + port if port else ''}{match['rest'] or ''}"

    def _crypt(self, text: str, encrypt: bool) -> str:
        cipher = Cipher(algorithms.AES(self.key), CFB(self.iv))
        if encrypt:
            encryptor = cipher.encryptor()
            return (encryptor.update(text.encode("ascii")) + encryptor.finalize()).hex()
        decryptor = cipher.decryptor()
        return (decryptor.update(bytes.fromhex(text)) + decryptor.finalize()).decode("ascii")


def split_target(url: str) -> tuple[str, str, str, str]:
    """``(scheme, host, port, rest)`` of a URL the gateway can carry: the host as it is encrypted
    (lower case; IPv6 in brackets), the port as written ('' when none) and everything after the
    authority, byte for byte.

    Raises:
        LinkError: see :meth:`WebVpn.encode`.
    """
    url = url.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise LinkError("A URL has no spaces or control characters (percent-encode them).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise LinkError(f"Not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise LinkError(f"The gateway carries {', '.join(sorted(SCHEMES))} links, not {scheme or 'this'}.")
    if parts.username is not None or parts.password is not None:
        raise LinkError("A URL with a user name or password cannot go through the gateway.")
    host = _host(parts.hostname or "")
    written_port = parts.netloc.rsplit("]", 1)[-1].rpartition(":")[2] if port is not None else ""
    if written_port and (not written_port.isdigit() or not 0 < port <= 65535):  # type: ignore[operator]
        raise LinkError("The port must be 1-65535.")
    authority = url.split("//", 1)[1]
    rest = authority[len(parts.netloc):]
    return scheme, host, written_port, rest


def _host(name: str) -> str:
    """The host as the gateway encrypts it (IPv6 in brackets, as written), or LinkError."""
    if not name:
        raise LinkError("The URL has no host.")
    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise LinkError("Not a valid IPv6 address.") from None
        return f"[{name}]"
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise LinkError("Not a valid host name.") from None
    labels = ascii_name.rstrip(".").split(".")
    if len(ascii_name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise LinkError("Not a valid host name.")
    return ascii_name


def _decrypted_host(text: str) -> str:
    """A decrypted host, checked to be one (under a wrong key the bytes are not), or LinkError."""
    bracketed = text.startswith("[") and text.endswith("]") and ":" in text
    if _host(text[1:-1] if bracketed else text) != text:
        raise LinkError("Not a host.")
    return text
