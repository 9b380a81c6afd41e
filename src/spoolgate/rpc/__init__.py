"""ONC RPC for the NFS bastion: pure parsers and builders, no I/O.

A proxy uses the modules in this order: :mod:`.record` turns a TCP byte
stream into records; :mod:`.message` parses the call header (xid, program,
version, procedure, credential, argument offset); :mod:`.portmap`,
:mod:`.mount`, :mod:`.nfs3` and :mod:`.nfs4` read the arguments the policy
decides on. A refused call gets a reply built here, wrapped by
``record.encode_record``; an allowed call is forwarded unchanged. For a
reply, :func:`.message.parse_reply` gives the xid to match to the pending
call, and the program modules extract the file handles it issues.
"""
