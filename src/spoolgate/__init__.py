"""spoolgate: a caching mbox POP3 server and an encrypting NFS bastion."""

__version__ = "0.1.0"
