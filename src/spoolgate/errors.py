"""The exception tree of spoolgate.

Callers catch by meaning; ``cli.py`` maps each branch to one exit code:
2 for configuration and usage errors, 75 for temporary failures worth a
retry (a busy lock, an unreachable peer), 1 for everything else.
"""


class SpoolgateError(Exception):
    """Base class of every error spoolgate raises on purpose."""


class ConfigError(SpoolgateError):
    """A configuration file or command line value is invalid."""


class DemoError(SpoolgateError):
    """``spoolgate demo`` could not create, read or write a file of its own."""


class TemporaryError(SpoolgateError):
    """A failure that may go away if the operation is tried again later."""


class MboxError(SpoolgateError):
    """An mbox file could not be read, indexed or changed."""


class NotAnMboxError(MboxError):
    """The file does not start with a From_ line, so it is not an mbox."""


class MboxChangedError(MboxError):
    """The mbox changed under us: a recorded offset no longer starts a message."""


class IndexFormatError(MboxError):
    """An index cache file is truncated, corrupt or of an unknown version."""


class LockError(MboxError):
    """A mailbox lock cannot be taken at all, for example for lack of permission."""


class LockTimeoutError(MboxError, TemporaryError):
    """A mailbox lock could not be taken within the configured wait."""


class MaildropInUseError(MboxError, TemporaryError):
    """Another POP3 session, in this or another process, has the maildrop open."""


class POP3ProtocolError(SpoolgateError):
    """A POP3 peer broke the protocol."""


class POP3StateError(POP3ProtocolError):
    """The POP3 state machine was driven out of order by its caller (a bug)."""


class AuthError(SpoolgateError):
    """A login proof was rejected or an authentication backend failed."""


class LoginFailedError(AuthError):
    """The user name or password is wrong; the error does not tell which."""


class AuthBackendError(AuthError, TemporaryError):
    """An authentication backend failed to decide (a PAM or passwd file error)."""


class AuthBusyError(AuthError, TemporaryError):
    """One client address has too many password checks pending."""


class PasswdFormatError(AuthError):
    """A passwd file line is malformed or names an unsupported hash scheme."""


class LoginProtocolError(AuthError):
    """A peer of the bastion's login service broke its line protocol."""


class XDRError(SpoolgateError):
    """Bytes could not be decoded as XDR, or a value cannot be encoded."""


class RPCError(SpoolgateError):
    """An ONC RPC record or message is malformed."""


class TunnelError(SpoolgateError):
    """The tunnel transport, a tun device or a firewall rule failed."""


class TunnelUnreachableError(TunnelError, TemporaryError):
    """The tunnel peer could not be reached."""


class FrameError(TunnelError):
    """The peer sent a tunnel frame stream that cannot be decoded."""


class PacketError(TunnelError):
    """A tunnel packet is not a well-formed IPv4 or IPv6 packet."""


class PinError(TunnelError):
    """A tunnel peer's certificate does not match a pinned fingerprint."""
