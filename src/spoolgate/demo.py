"""The serving half of ``spoolgate demo``: a complete POP3 site on 127.0.0.1.

``prepare_site`` fills a state directory with what ``spoolgate pop3d``
needs for one demo user: a passwd file with a random password, a
self-signed certificate and a config file. The caller puts the mbox in
``spool/demo`` first. ``serve_site`` runs the server from that config,
writes rc files for fetchmail and mpop once the ports are known, and
prints how to fetch the mail with real clients, or one JSON line with the
connection details. Files that exist are reused, so a second run serves
with the same password and certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spoolgate.auth import set_password
from spoolgate.errors import ConfigError, DemoError
from spoolgate.pop3.server import POP3Server, serve

__all__ = ["DEMO_USER", "DemoSite", "demo_file_error", "prepare_site", "serve_site"]

DEMO_USER = "demo"
HOST = "127.0.0.1"
DEFAULT_POP3_PORT = 11110
DEFAULT_POP3S_PORT = 11995
CERTIFICATE_DAYS = 365


@dataclass(frozen=True, slots=True)
class DemoSite:
    """The files of a demo site inside its state directory."""

    state_dir: Path
    mbox: Path
    password: str
    config: Path
    certificate: Path

    def path(self, name: str) -> Path:
        """Return the file ``name`` in the state directory."""
        return self.state_dir / name


def prepare_site(
    state_dir: Path, mbox: Path, pop3_port: int, pop3s_port: int
) -> DemoSite:
    """Write the passwd file, certificate, config and procmail rc file.

    ``mbox`` must already be ``state_dir/spool/demo``. A preferred port
    that is taken becomes 0, so the server picks a free one. Raises
    DemoError when a file cannot be written.
    """
    try:
        state_dir = state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o700)
        password = _password(state_dir)
        certificate = _certificate(state_dir)
        config = state_dir / "pop3d.toml"
        ports = (_free_or_zero(pop3_port), _free_or_zero(pop3s_port))
        config.write_text(_config_text(state_dir, *ports))
        site = DemoSite(state_dir, mbox.resolve(), password, config, certificate)
        procmailrc = f"DEFAULT={site.path('fetchmail.mbox')}\n"
        _write_private(site.path("procmailrc"), procmailrc)
    except OSError as exc:
        raise demo_file_error(exc, state_dir) from exc
    return site


def demo_file_error(exc: OSError, state_dir: Path) -> DemoError:
    """Return the error for a failed file operation in the state directory."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return DemoError(
        f"cannot prepare the demo files in {state_dir}: {where}"
        f"{exc.strerror or exc}; check that the directory is yours and its "
        "file system has space, or pass another --state-dir"
    )


def _password(state_dir: Path) -> str:
    """Return the demo password, making it and its passwd line on first use."""
    password_file = state_dir / "password"
    passwd = state_dir / "passwd"
    if password_file.exists() and passwd.exists():
        return password_file.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(12)
    _write_private(password_file, password + "\n")
    set_password(passwd, DEMO_USER, password)
    return password


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _certificate(state_dir: Path) -> Path:
    """Return a self-signed certificate for 127.0.0.1, made on first use."""
    certificate, key_file = state_dir / "cert.pem", state_dir / "key.pem"
    if certificate.exists() and key_file.exists():
        return certificate
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spoolgate demo")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
    )
    for extension, critical in _extensions(key):
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_file, key_pem.decode("ascii"))
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return certificate


def _extensions(
    key: ec.EllipticCurvePrivateKey,
) -> list[tuple[x509.ExtensionType, bool]]:
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    public = key.public_key()
    return [
        (x509.SubjectAlternativeName(names), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(public), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(public), False),
    ]


def _free_or_zero(port: int) -> int:
    """Return ``port`` if it can be bound on HOST now, else 0 (any free port)."""
    if port == 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return 0
    return port


def _config_text(state_dir: Path, pop3_port: int, pop3s_port: int) -> str:
    return (
        "# Written by spoolgate demo; see docs/pop3d.md for every key.\n"
        f'[listen]\nhost = "{HOST}"\n'
        f"pop3_port = {pop3_port}\npop3s_port = {pop3s_port}\n\n"
        f'[tls]\ncertificate = "{state_dir / "cert.pem"}"\n'
        f'private_key = "{state_dir / "key.pem"}"\n\n'
        f'[auth]\nbackend = "passwd"\npasswd_file = "{state_dir / "passwd"}"\n\n'
        f'[maildrop]\nmbox = "{state_dir / "spool"}/{{user}}"\n'
        f'cache = "{state_dir / "cache"}/{{user}}"\n\n'
        "[pop3]\nfailed_login_delay_s = 1.0\nshutdown_timeout_s = 5.0\n"
    )


def serve_site(
    site: DemoSite,
    *,
    as_json: bool,
    messages: int,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Serve the site until Ctrl-C or SIGTERM; print the details when ready.

    With ``as_json`` the details go out as one JSON line, with the keys of
    ``extra`` added.
    """

    def on_ready(server: POP3Server) -> None:
        ports = server.ports
        try:
            _write_client_files(site, ports["pop3"], ports["pop3s"])
        except OSError as exc:
            raise demo_file_error(exc, site.state_dir) from exc
        if as_json:
            details = {**(extra or {}), **_details(site, ports, messages)}
            print(json.dumps(details), flush=True)
        else:
            print(_instructions(site, ports, messages), flush=True)

    asyncio.run(serve(site.config, on_ready=on_ready))


def _details(site: DemoSite, ports: dict[str, int], messages: int) -> dict[str, object]:
    return {
        "host": HOST,
        "pop3_port": ports["pop3"],
        "pop3s_port": ports["pop3s"],
        "user": DEMO_USER,
        "password": site.password,
        "mbox": str(site.mbox),
        "messages": messages,
        "state_dir": str(site.state_dir),
        "certificate": str(site.certificate),
        "config": str(site.config),
        "pid": os.getpid(),
    }


def _write_client_files(site: DemoSite, pop3_port: int, pop3s_port: int) -> None:
    """Write rc files for fetchmail and mpop; both keep the mail on the server."""
    certificate = site.certificate
    procmail = shutil.which("procmail") or "/usr/bin/procmail"
    _write_private(
        site.path("fetchmailrc"),
        f"poll {HOST} service {pop3s_port} protocol POP3 auth password\n"
        f'  user "{DEMO_USER}" password "{site.password}"\n'
        f'  ssl sslcertck sslcertfile "{certificate}" sslcommonname localhost\n'
        # -f gives procmail the envelope sender, so it writes a From_ line.
        f'  keep mda "{procmail} -f %F -m {site.path("procmailrc")}"\n',
    )
    _write_private(
        site.path("mpoprc"),
        f"account default\nhost {HOST}\nport {pop3_port}\n"
        f"tls on\ntls_starttls on\ntls_trust_file {certificate}\n"
        f"auth user\nuser {DEMO_USER}\npassword {site.password}\n"
        f"delivery mbox {site.path('mpop.mbox')}\nkeep on\nonly_new off\n"
        f"uidls_file {site.path('mpop.uidls')}\n",
    )


def _instructions(site: DemoSite, ports: dict[str, int], messages: int) -> str:
    quoted = {name: shlex.quote(str(site.path(name))) for name in _QUOTED_FILES}
    login = shlex.quote(f"{DEMO_USER}:{site.password}")
    pop3s = f"pop3s://{HOST}:{ports['pop3s']}"
    pop3 = f"pop3://{HOST}:{ports['pop3']}"
    return "\n".join(
        [
            f"spoolgate demo: serving {site.mbox} ({messages} messages)",
            f"  POP3 with STLS  {HOST} port {ports['pop3']}",
            f"  POP3S           {HOST} port {ports['pop3s']}",
            f"  user {DEMO_USER}, password {site.password}",
            f"  self-signed certificate {site.certificate}",
            "",
            "Fetch the mail with a real client (each keeps the mail on the server):",
            f"  curl --cacert {quoted['cert.pem']} --user {login} {pop3s}/",
            f"  curl --cacert {quoted['cert.pem']} --user {login} {pop3s}/1",
            f"  curl --ssl-reqd --cacert {quoted['cert.pem']} --user {login} {pop3}/1",
            f"  mpop -C {quoted['mpoprc']}        # STLS, into {quoted['mpop.mbox']}",
            f"  fetchmail -f {quoted['fetchmailrc']} --idfile {quoted['fetchmail.ids']}"
            f" --pidfile {quoted['fetchmail.pid']}   # POP3S, into "
            f"{quoted['fetchmail.mbox']}",
            "",
            f"Config: {site.config}. Stop with Ctrl-C.",
        ]
    )


_QUOTED_FILES = (
    "cert.pem",
    "mpoprc",
    "mpop.mbox",
    "fetchmailrc",
    "fetchmail.ids",
    "fetchmail.pid",
    "fetchmail.mbox",
)


def check_ports(pop3_port: int, pop3s_port: int) -> None:
    """Raise ConfigError unless both ports are 0 or valid and different."""
    for name, port in (("--pop3-port", pop3_port), ("--pop3s-port", pop3s_port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} {port}: must be 0 to 65535")
    if pop3_port and pop3_port == pop3s_port:
        raise ConfigError(f"--pop3-port and --pop3s-port are both {pop3_port}")
