"""The ``spoolgate pop3d`` configuration: TOML file to frozen dataclasses.

Every key, its default and its meaning are listed in ``docs/pop3d.md``.
``load_server_config`` reports every bad or unknown key at once through
``spoolgate.config.ConfigReader``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from spoolgate.config import ConfigReader, build, check_secret_file, load_toml
from spoolgate.errors import ConfigError, MboxError
from spoolgate.mbox.index import Variant
from spoolgate.mbox.lock import LockSettings

__all__ = [
    "AuthBackend",
    "AuthConfig",
    "ListenConfig",
    "MaildropConfig",
    "ServerConfig",
    "TLSConfig",
    "check_maildrop_user",
    "load_server_config",
]

DEFAULT_MBOX_TEMPLATE = "/var/mail/{user}"
DEFAULT_CACHE_TEMPLATE = "/var/cache/spoolgate/{user}"
# RFC 1939 section 3: the autologout timer must be at least 10 minutes.
RFC_MIN_IDLE_TIMEOUT_S = 600.0


class AuthBackend(enum.Enum):
    """The authentication backend that checks passwords."""

    PASSWD = "passwd"
    PAM = "pam"


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """The listening address and ports. A port of 0 picks a free port.

    ``pop3_port`` serves POP3 with STLS, ``pop3s_port`` implicit TLS
    (RFC 8314). Either may be None to disable that listener.
    """

    host: str = "127.0.0.1"
    pop3_port: int | None = 110
    pop3s_port: int | None = 995


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The server certificate chain and its private key (PEM files)."""

    certificate: Path
    private_key: Path


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The authentication backend and its settings."""

    backend: AuthBackend = AuthBackend.PASSWD
    passwd_file: Path | None = None
    pam_service: str = "spoolgate"


@dataclass(frozen=True, slots=True)
class MaildropConfig:
    """The paths of each user's mbox and index cache.

    ``mbox`` and ``cache`` are templates with ``{user}`` replaced by the
    login name. ``check_maildrop_user`` rejects names with ``/`` or a NUL
    and names starting with ``.``, so ``{user}`` cannot leave the directory.
    """

    mbox: str = DEFAULT_MBOX_TEMPLATE
    cache: str = DEFAULT_CACHE_TEMPLATE
    variant: Variant = Variant.MBOXO
    locking: LockSettings = field(default_factory=LockSettings)

    def mbox_path(self, user: str) -> Path:
        """Return the mbox of ``user``; raise MboxError for an unsafe name."""
        check_maildrop_user(user)
        return Path(self.mbox.format(user=user))

    def cache_dir(self, user: str) -> Path:
        """Return the index cache directory of ``user``; see ``mbox_path``."""
        check_maildrop_user(user)
        return Path(self.cache.format(user=user))


def check_maildrop_user(user: str) -> None:
    """Raise MboxError unless ``user`` is safe as one path component.

    The protocol layer already rejects such names from clients; this also
    covers names an authentication backend returns (PAM may map names).
    """
    if not user or user.startswith(".") or "/" in user or "\0" in user:
        raise MboxError(
            f"user name {user!r} cannot name a maildrop: it is empty, starts "
            "with '.' or contains '/' or NUL; rename the user in the backend"
        )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``spoolgate pop3d`` reads from its config file."""

    listen: ListenConfig = ListenConfig()
    tls: TLSConfig | None = None
    auth: AuthConfig = AuthConfig()
    maildrop: MaildropConfig = MaildropConfig()
    allow_plaintext_auth: bool = False
    implementation: str = "spoolgate"
    failed_login_delay_s: float = 2.0
    idle_timeout_s: float = RFC_MIN_IDLE_TIMEOUT_S
    max_connections: int = 200
    max_connections_per_address: int = 10
    shutdown_timeout_s: float = 30.0
    max_bad_commands: int = 10
    max_auth_failures: int = 3
    max_concurrent_auth: int = 4
    max_sasl_line_octets: int = 4096
    max_buffered_octets: int = 1 << 20
    max_pending_auth_per_address: int = 3


def load_server_config(path: Path) -> ServerConfig:
    """Read and check the config file ``path``; raise ConfigError listing problems."""
    data = load_toml(path)
    config = build(
        ConfigReader(data, str(path)), lambda r: _read_server(r, path.parent)
    )
    _check_files(config)
    return config


def _read_server(reader: ConfigReader, base: Path) -> ServerConfig:
    pop3 = reader.table("pop3")
    tls = _read_tls(reader.table("tls"), base)
    listen = _read_listen(reader.table("listen"))
    if tls is None and listen.pop3s_port is not None:
        reader.error(
            "listen",
            f"pop3s_port = {listen.pop3s_port}",
            "POP3S needs [tls] certificate and private_key, or pop3s_port = -1",
        )
    return ServerConfig(
        listen=listen,
        tls=tls,
        auth=_read_auth(reader.table("auth"), base),
        maildrop=_read_maildrop(reader.table("maildrop"), reader.table("locking")),
        allow_plaintext_auth=pop3.get_bool("allow_plaintext_auth", False),
        implementation=pop3.get_str("implementation", "spoolgate"),
        failed_login_delay_s=pop3.get_float(
            "failed_login_delay_s", 2.0, min=0.0, max=60.0
        ),
        idle_timeout_s=pop3.get_float(
            "idle_timeout_s", RFC_MIN_IDLE_TIMEOUT_S, min=0.1, max=86400.0
        ),
        max_connections=pop3.get_int("max_connections", 200, min=1),
        max_connections_per_address=pop3.get_int(
            "max_connections_per_address", 10, min=1
        ),
        shutdown_timeout_s=pop3.get_float("shutdown_timeout_s", 30.0, min=0.0),
        max_bad_commands=pop3.get_int("max_bad_commands", 10, min=1, max=1000),
        max_auth_failures=pop3.get_int("max_auth_failures", 3, min=1, max=100),
        max_concurrent_auth=pop3.get_int("max_concurrent_auth", 4, min=1, max=256),
        # The buffer limit's minimum is the line limit's maximum, so a
        # line that fits its limit always fits in the buffer.
        max_sasl_line_octets=pop3.get_int(
            "max_sasl_line_octets", 4096, min=255, max=65536
        ),
        max_buffered_octets=pop3.get_int(
            "max_buffered_octets", 1 << 20, min=65536, max=64 << 20
        ),
        max_pending_auth_per_address=pop3.get_int(
            "max_pending_auth_per_address", 3, min=1, max=1000
        ),
    )


def _read_listen(reader: ConfigReader) -> ListenConfig:
    host = reader.get_str("host", "127.0.0.1")
    ports = []
    for key, default in (("pop3_port", 110), ("pop3s_port", 995)):
        value = reader.get_int(key, default, min=-1, max=65535)
        # -1 disables the listener: TOML has no null.
        ports.append(None if value == -1 else value)
    if ports == [None, None]:
        reader.error("pop3_port", -1, "pop3_port and pop3s_port cannot both be -1")
    return ListenConfig(host=host, pop3_port=ports[0], pop3s_port=ports[1])


def _read_tls(reader: ConfigReader, base: Path) -> TLSConfig | None:
    certificate = reader.get_path("certificate", None, base)
    private_key = reader.get_path("private_key", None, base)
    if certificate is None and private_key is None:
        return None
    if certificate is None or private_key is None:
        missing = "certificate" if certificate is None else "private_key"
        reader.require(missing)
        return None
    return TLSConfig(certificate, private_key)


def _read_auth(reader: ConfigReader, base: Path) -> AuthConfig:
    choice = reader.get_choice("backend", "passwd", [b.value for b in AuthBackend])
    backend = AuthBackend(choice)
    passwd_file = reader.get_path("passwd_file", None, base)
    if backend is AuthBackend.PASSWD and passwd_file is None:
        reader.require("passwd_file")
    service = reader.get_str("pam_service", "spoolgate")
    if not service or "/" in service:
        reader.error("pam_service", service, "must be a file name in /etc/pam.d")
        service = "spoolgate"
    return AuthConfig(backend, passwd_file, service)


def _read_maildrop(reader: ConfigReader, locking: ConfigReader) -> MaildropConfig:
    mbox = _read_template(reader, "mbox", DEFAULT_MBOX_TEMPLATE)
    cache = _read_template(reader, "cache", DEFAULT_CACHE_TEMPLATE)
    choice = reader.get_choice("variant", "mboxo", [v.value for v in Variant])
    return MaildropConfig(
        mbox=mbox,
        cache=cache,
        variant=Variant(choice),
        locking=LockSettings.from_config(locking),
    )


def _read_template(reader: ConfigReader, key: str, default: str) -> str:
    template = reader.get_str(key, default)
    try:
        sample = template.format(user="u")
    except (KeyError, IndexError, ValueError):
        reader.error(key, template, "only the placeholder {user} is allowed")
        return default
    if "{user}" not in template:
        reader.error(key, template, "must contain {user}, one path per user")
        return default
    if not sample.startswith("/"):
        reader.error(key, template, "must be an absolute path")
        return default
    return template


def _check_files(config: ServerConfig) -> None:
    """Check that the key file is private and that named files exist."""
    if config.tls is not None:
        check_secret_file(config.tls.private_key, "tls.private_key")
        if not config.tls.certificate.is_file():
            raise ConfigError(
                f"tls.certificate = {str(config.tls.certificate)!r}: file not found"
            )
    passwd = config.auth.passwd_file
    if config.auth.backend is AuthBackend.PASSWD and passwd is not None:
        check_secret_file(passwd, "auth.passwd_file")
