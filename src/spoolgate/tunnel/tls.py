"""TLS 1.3 contexts for the tunnel, and the pinned-fingerprint check.

Both sides present a certificate. The client cannot verify the bastion's
self-signed certificate against a CA, so it sets ``CERT_NONE`` and checks
the pin after the handshake. The bastion must ask for a client
certificate, which Python's ``ssl`` module only does when it also
verifies it, so the bastion trusts exactly the configured client
certificates (each its own trust anchor) and checks the pin afterwards too.
"""

from __future__ import annotations

import datetime
import hmac
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from spoolgate.errors import PinError, TunnelError
from spoolgate.tunnel.frames import ALPN_PROTOCOL
from spoolgate.tunnel.keys import fingerprint_der

T = TypeVar("T")


def _base_context(purpose: int, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([ALPN_PROTOCOL])
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TunnelError(
            f"cannot load certificate {cert} with key {key}: {exc}; "
            "check that both come from the same spoolgate keygen run"
        ) from exc
    return context


def client_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Return a TLS 1.3 client context presenting ``cert``; pins checked later."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert, key)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def server_context(cert: Path, key: Path, client_certs_pem: str) -> ssl.SSLContext:
    """Return a TLS 1.3 server context that requires one of the client certs."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    # PARTIAL_CHAIN lets a self-signed leaf be its own trust anchor even if
    # OpenSSL would not treat it as a CA; X509_STRICT would reject it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if client_certs_pem:
        try:
            context.load_verify_locations(cadata=client_certs_pem)
        except ssl.SSLError as exc:
            raise TunnelError(f"cannot load the client certificates: {exc}") from exc
    return context


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """Return the peer's DER certificate; raise PinError if it sent none."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PinError("peer presented no certificate")
    if ssl_object.selected_alpn_protocol() != ALPN_PROTOCOL:
        raise PinError(f"peer does not speak {ALPN_PROTOCOL} (ALPN)")
    return der


def match_pin(der: bytes, pins: Mapping[str, T], now: datetime.datetime) -> T:
    """Return the value pinned to the certificate ``der``.

    Raise PinError if its fingerprint is not among ``pins`` or it is not
    valid at ``now``. Every pin is compared in constant time.
    """
    fingerprint = fingerprint_der(der)
    found: T | None = None
    for pin, value in pins.items():
        if hmac.compare_digest(pin, fingerprint):
            found = value
    if found is None:
        raise PinError(f"certificate {fingerprint} is not pinned")
    _check_validity(der, fingerprint, now)
    return found


def check_pin(der: bytes, pins: Iterable[str], now: datetime.datetime) -> str:
    """Return the fingerprint of ``der`` if it is one of ``pins``; else raise."""
    return match_pin(der, {pin: pin for pin in pins}, now)


def _check_validity(der: bytes, fingerprint: str, now: datetime.datetime) -> None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PinError(f"certificate {fingerprint} cannot be parsed: {exc}") from exc
    if now < cert.not_valid_before_utc:
        raise PinError(
            f"certificate {fingerprint} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()}"
        )
    if now > cert.not_valid_after_utc:
        raise PinError(
            f"certificate {fingerprint} expired at "
            f"{cert.not_valid_after_utc.isoformat()}; make a new key with "
            "spoolgate keygen and update the pins"
        )
