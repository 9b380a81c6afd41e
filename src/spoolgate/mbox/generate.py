"""Deterministic generator of realistic Unix mbox files for tests and demos.

Run it as ``python -m spoolgate.mbox.generate OUTPUT [options]`` or call
``generate_file``/``generate_bytes``. The same options and seed always give
a byte-identical file.

What the output contains
------------------------
* A valid From_ line per message ("From sender Www Mmm dd hh:mm:ss yyyy",
  asctime layout, dates increasing with random gaps over several years).
* Headers: Return-Path, Received (1-3, folded), Message-ID, Date (varied
  zones), From/To/Cc with display names (some RFC 2047 encoded), Subject
  (about 1 in 6 an RFC 2047 encoded word, B or Q, UTF-8 or ISO-8859-1, some
  folded), MIME-Version, Content-Type, some X- headers.
* Bodies: text/plain (7bit, 8bit UTF-8, quoted-printable), multipart/
  alternative (plain + html), multipart/mixed with base64 attachments.
* Size distribution: ordinary messages are log-normal around 6 KB (almost all
  between 2 and 20 KB, a few up to 64 KB); a small share carry a base64
  attachment of 100 KB - 5 MB (log-uniform).
* Body lines that begin with "From " (escaped as ">From "), lines that
  begin with ">From " (genuinely quoted text; escaped as ">>From " in
  mboxrd, left alone in mboxo), lines that begin with "." including a line
  that is a lone "." (POP3 dot-stuffing cases).
* Optional: messages whose lines end in CRLF (--crlf-rate; From_ line and
  the blank separator stay LF, as a delivery agent appending a CRLF message
  would write them), body lines with an *unescaped* "From " inside a
  paragraph (--unquoted-from-rate; not preceded by a blank line and not a
  valid From_ line), and a last message with no trailing newline
  (--no-final-newline).

Sizing
------
--messages N           exactly N messages.
--target-size BYTES    stop once the file reaches this size (if --messages is
                       also given, the attachment share is steered so that N
                       messages come out close to BYTES in total).

--manifest FILE writes one JSON object per message: number, offset of its
From_ line, length in the file (up to the next From_ line), Message-ID,
"octets" (size of header+body as stored, with line ends counted as CRLF,
From_ line and separator excluded; no >From unescaping) and flags.
"""

# ruff: noqa: UP031
# printf-style formats are kept because they spell the asctime and RFC 5322
# date layouts (%2d, %02d) the way the standards and C libraries write them.

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
ZONES = (
    "+0000",
    "-0500",
    "-0800",
    "+0100",
    "+0200",
    "+0530",
    "+0900",
    "-0300",
    "+1000",
)

FIRST = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Zoe",
)
LAST = (
    "Smith",
    "Jones",
    "Miller",
    "Brown",
    "Nguyen",
    "Garcia",
    "Kowalski",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Svensson",
)
ACCENTED = (
    "Jürgen Müller",
    "Zoë Brontë",
    "François Lefèvre",
    "Łukasz Wąs",
    "Søren Kierkegård",
    "José Núñez",
    "Ærø Østergård",
    "山田 太郎",
)
DOMAINS = (
    "example.org",
    "example.com",
    "example.net",
    "mail.example.org",
    "lists.example.net",
    "corp.example.com",
)
LOCALPART = (
    "info",
    "noreply",
    "billing",
    "team",
    "support",
    "news",
    "list-bounces",
    "ops",
    "hr",
    "sales",
)

WORDS = (
    "the of and to in is that for it as with was on be by at this are from "
    "or have an they which one you were all we can her has there been if more "
    "when will would who so no about their out up into time them could than "
    "other some these then its two first also after new may only any made "
    "server mailbox message index offset length cache append reparse delete "
    "client protocol retrieve status list unique identifier session lock "
    "meeting budget report quarterly invoice attached please review schedule "
    "tomorrow deadline project release version branch merge patch build test "
    "kernel network storage backup restore migration database query latency "
    "throughput benchmark regression summary minutes agenda action items "
    "thanks regards cheers best hello hi dear team everyone folks"
).split()
UTF8_WORDS = (
    "café",
    "naïve",
    "résumé",
    "Grüße",
    "Straße",
    "smörgåsbord",
    "über",
    "façade",
    "niño",
    "Zürich",
    "日本語",
    "привет",
    "€100",
)

EXTS = (
    ("application/pdf", "pdf"),
    ("image/jpeg", "jpg"),
    ("image/png", "png"),
    ("application/zip", "zip"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ("application/octet-stream", "bin"),
)

SPECIAL_FROM = (
    b"From the desk of the project lead: status follows.",
    b"From what I can tell the index was rebuilt twice.",
    b"From here on, all mail goes through the new relay.",
    b"From alice@example.org Mon Jan  1 00:00:00 2001",
)
QUOTED_FROM = (
    b">From the original message: please keep this line.",
    b">>From two levels of quoting here.",
    b">From bob@example.com Tue Feb  2 02:02:02 2002",
)
DOT_LINES = (
    b".",
    b"..",
    b"...",
    b". leading dot and space",
    b".hidden-file-name",
    b".. two dots then text",
    b".\t.",
    b". ",
)
UNQUOTED_FROM = (
    b"From now on please send reports to the ops list.",
    b"From my side everything looks fine.",
    b"From time to time the spool is compacted.",
)


def ctime_str(t: int) -> str:
    tm = time.gmtime(t)
    return "%s %s %2d %02d:%02d:%02d %d" % (
        DAYS[tm.tm_wday],
        MONTHS[tm.tm_mon - 1],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year,
    )


def rfc2822_date(t: int, zone: str) -> str:
    sign = 1 if zone[0] == "+" else -1
    off = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
    tm = time.gmtime(t + off)
    return "%s, %d %s %d %02d:%02d:%02d %s" % (
        DAYS[tm.tm_wday],
        tm.tm_mday,
        MONTHS[tm.tm_mon - 1],
        tm.tm_year,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        zone,
    )


def encode_word(rng: random.Random, text: str) -> str:
    """RFC 2047 encoded word (B or Q, UTF-8 or ISO-8859-1 when possible)."""
    charset = "UTF-8"
    try:
        raw = text.encode("iso-8859-1")
        if rng.random() < 0.5:
            charset = "ISO-8859-1"
        else:
            raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    if rng.random() < 0.5:
        return f"=?{charset}?B?{base64.b64encode(raw).decode()}?="
    out = []
    for b in raw:
        c = chr(b)
        if c == " ":
            out.append("_")
        elif c.isalnum() and b < 128:
            out.append(c)
        else:
            out.append(f"={b:02X}")
    return "=?{}?Q?{}?=".format(charset, "".join(out))


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """Generator settings, one field per command line option.

    With neither ``messages`` nor ``target_size`` set, 1000 messages are
    written. ``format`` is ``"mboxrd"`` or ``"mboxo"``.
    """

    messages: int | None = None
    target_size: int | None = None
    format: str = "mboxrd"
    seed: int = 1
    attach_rate: float = 0.01
    from_line_rate: float = 0.05
    dot_line_rate: float = 0.1
    crlf_rate: float = 0.0
    unquoted_from_rate: float = 0.0
    no_final_newline: bool = False


def generate(
    options: GenerateOptions, out: BinaryIO, manifest: TextIO | None = None
) -> tuple[int, int]:
    """Write an mbox to ``out`` (seekable if ``no_final_newline``).

    Writes one JSON line per message to ``manifest`` if given. Returns the
    number of messages and bytes written.
    """
    return Generator(options).run(out, manifest)


def generate_file(
    path: str | os.PathLike[str],
    options: GenerateOptions,
    manifest_path: str | os.PathLike[str] | None = None,
) -> tuple[int, int]:
    """Write an mbox file (and its manifest); return messages and bytes."""
    with open(path, "w+b", buffering=4 * 1024 * 1024) as out:
        if manifest_path is None:
            return generate(options, out)
        with open(manifest_path, "w", encoding="utf-8") as manifest:
            return generate(options, out, manifest)


def generate_bytes(options: GenerateOptions) -> tuple[bytes, list[dict[str, Any]]]:
    """Return a generated mbox and its manifest entries, all in memory."""
    out = io.BytesIO()
    manifest = io.StringIO()
    generate(options, out, manifest)
    entries = [json.loads(line) for line in manifest.getvalue().splitlines()]
    return out.getvalue(), entries


def parse_size(text: str) -> int:
    """Parse a byte count with an optional K, M or G suffix (powers of 1024)."""
    digits = text.strip().upper()
    multiplier = 1
    if digits and digits[-1] in "KMG":
        multiplier = 1024 ** ("KMG".index(digits[-1]) + 1)
        digits = digits[:-1]
    return int(float(digits) * multiplier)


class Generator:
    """The generator's state: the random stream, text pools and the clock."""

    def __init__(self, args: GenerateOptions) -> None:
        self.a = args
        self.rng = random.Random(args.seed)
        rng = self.rng
        # Pool of wrapped text lines (no line starts with "From " or ".").
        lines = []
        total = 0
        while total < 3 * 1024 * 1024:
            n = rng.randint(6, 13)
            words = [rng.choice(WORDS) for _ in range(n)]
            if rng.random() < 0.06:
                words[rng.randrange(n)] = rng.choice(UTF8_WORDS)
            if rng.random() < 0.05:
                words.append("a=b+c")  # '=' is interesting for QP readers
            if words[0] == "from":  # never an unescaped "From " line
                words[0] = "for"
            line = " ".join(words)
            line = line[0].upper() + line[1:]
            if rng.random() < 0.15:
                line += "."
            if rng.random() < 0.07:
                line = ""  # paragraph break
            b = line.encode("utf-8") + b"\n"
            lines.append(b)
            total += len(b)
        self.text = b"".join(lines)
        self.text_len = len(self.text)
        # Newline positions let us cut slices on line boundaries quickly.
        self.text_nl = []
        pos = self.text.find(b"\n")
        while pos >= 0:
            self.text_nl.append(pos + 1)
            pos = self.text.find(b"\n", pos + 1)
        # Pool of base64 lines (76 chars + LF) from random bytes.
        raw = rng.randbytes(6 * 1024 * 1024 + 3)
        self.b64 = base64.encodebytes(raw)
        self.b64_lines = len(self.b64) // 77
        self.t = 1325376000 + rng.randrange(0, 365 * 86400)  # 2012 + x
        self.small_mu = math.log(6000.0)
        self.small_sigma = 0.6
        self.small_mean = 6000.0 * math.exp(0.6 * 0.6 / 2)
        lo, hi = 100 * 1024, 5 * 1024 * 1024
        self.att_lo, self.att_hi = lo, hi
        self.att_mean = (hi - lo) / math.log(hi / lo)

    # ---- pieces -------------------------------------------------------
    def text_slice(self, size: int) -> bytes:
        """About `size` bytes of text ending with LF, cut on line bounds."""
        if size <= 0:
            return b""
        out = []
        while size > 0:
            take = min(size, self.text_len // 2)
            i = self.rng.randrange(len(self.text_nl) // 2)
            start = self.text_nl[i]
            end = self.text.find(b"\n", start + take)
            end = self.text_len if end < 0 else end + 1
            out.append(self.text[start:end])
            size -= end - start
        return b"".join(out)

    def b64_slice(self, size: int) -> bytes:
        nlines = max(1, size // 77)
        out = []
        while nlines > 0:
            take = min(nlines, self.b64_lines)
            i = self.rng.randrange(self.b64_lines - take + 1)
            out.append(self.b64[i * 77 : (i + take) * 77])
            nlines -= take
        return b"".join(out)

    def person(self, encoded_ok: bool = True) -> tuple[str, str]:
        rng = self.rng
        dom = rng.choice(DOMAINS)
        r = rng.random()
        if r < 0.15 and encoded_ok:
            name = rng.choice(ACCENTED)
            addr = "user%d@%s" % (rng.randrange(1000), dom)
            return encode_word(rng, name) + " <" + addr + ">", addr
        if r < 0.3:
            addr = f"{rng.choice(LOCALPART)}@{dom}"
            return addr, addr
        first, last = rng.choice(FIRST), rng.choice(LAST)
        addr = f"{first.lower()}.{last.lower()}@{dom}"
        if rng.random() < 0.2:
            return f'"{last}, {first}" <{addr}>', addr
        return f"{first} {last} <{addr}>", addr

    def subject(self) -> str:
        rng = self.rng
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
        subj = " ".join(words).capitalize()
        pre = rng.random()
        if pre < 0.25:
            subj = "Re: " + subj
        elif pre < 0.3:
            subj = "Fwd: " + subj
        elif pre < 0.35:
            subj = "[list-%d] %s" % (rng.randrange(5), subj)
        r = rng.random()
        if r < 0.16:
            uni = subj + " " + rng.choice(UTF8_WORDS)
            enc = encode_word(rng, uni)
            if rng.random() < 0.3:  # two encoded words, folded
                enc = enc + "\n " + encode_word(rng, rng.choice(UTF8_WORDS))
            return enc
        if r < 0.22:  # long folded subject
            subj = subj + " " + " ".join(rng.choice(WORDS) for _ in range(12))
            cut = subj.find(" ", 50)
            if cut > 0:
                subj = subj[:cut] + "\n\t" + subj[cut + 1 :]
        return subj

    def body_lines_special(self, quote_rd: bool) -> list[bytes]:
        """Lines to sprinkle into a body.  Returns (already escaped) lines."""
        rng = self.rng
        a = self.a
        out = []
        if rng.random() < a.from_line_rate:
            for _ in range(rng.randint(1, 3)):
                out.append(b"\n>" + rng.choice(SPECIAL_FROM))
            self.cur_flags["from_lines"] = True
        if rng.random() < a.from_line_rate / 2:
            q = rng.choice(QUOTED_FROM)
            out.append(b"\n" + (b">" + q if quote_rd else q))
            self.cur_flags["quoted_from_lines"] = True
        if rng.random() < a.dot_line_rate:
            for _ in range(rng.randint(1, 4)):
                out.append(rng.choice(DOT_LINES))
            self.cur_flags["dot_lines"] = True
        return out

    def sprinkle(self, body: bytes, specials: list[bytes]) -> bytes:
        """Insert lines at line boundaries (each special ends up on its own
        line; those starting with LF get a blank line before them)."""
        if not specials:
            return body
        rng = self.rng
        cuts = []
        for _ in specials:
            if len(body) < 2:
                cuts.append(len(body))
                continue
            p = body.find(b"\n", rng.randrange(len(body)))
            cuts.append(len(body) if p < 0 else p + 1)
        order = sorted(range(len(specials)), key=lambda k: cuts[k])
        out = []
        prev = 0
        for k in order:
            c = cuts[k]
            out.append(body[prev:c])
            if out[-1] and not out[-1].endswith(b"\n"):
                out.append(b"\n")
            out.append(specials[k] + b"\n")
            prev = c
        out.append(body[prev:])
        return b"".join(out)

    def unquoted_from(self, body: bytes) -> bytes:
        """An unescaped 'From ' line mid-paragraph (previous line non-blank)."""
        rng = self.rng
        for _ in range(20):
            p = body.find(b"\n", rng.randrange(max(1, len(body))))
            if p <= 0:
                break
            if body[p - 1 : p] != b"\n":
                line = rng.choice(UNQUOTED_FROM)
                self.cur_flags["unquoted_from"] = True
                return body[: p + 1] + line + b"\n" + body[p + 1 :]
        return body

    def qp(self, body: bytes) -> bytes:
        """Cheap quoted-printable-looking transform: escape '=' and non-ASCII
        bytes on a copy, and add some soft line breaks."""
        out: list[bytes] = []
        for line in body.split(b"\n"):
            if not line:
                out.append(line)
                continue
            if b"=" in line:
                line = line.replace(b"=", b"=3D")
            if max(line) > 127:
                text = bytes(line).decode("latin-1")
                line = "".join(
                    c if ord(c) < 128 else f"={ord(c):02X}" for c in text
                ).encode("ascii")
            if len(line) > 60 and self.rng.random() < 0.3:
                line = line[:40] + b"=\n" + line[40:]
            out.append(line)
        return b"\n".join(out)

    # ---- one message --------------------------------------------------
    def message(self, idx: int, size: int, att: int) -> tuple[bytes, bytes, str]:
        rng = self.rng
        a = self.a
        self.cur_flags: dict[str, Any] = {}
        self.t += int(rng.expovariate(1.0 / 1500.0)) + 1
        t = self.t
        sender, env = self.person()
        if rng.random() < 0.02:
            env = "MAILER-DAEMON"
        to, _ = self.person()
        zone = rng.choice(ZONES)
        mid = "<%d.%d.%08x@%s>" % (t, idx, rng.getrandbits(32), rng.choice(DOMAINS))
        from_line = (f"From {env} {ctime_str(t)}\n").encode()
        h = []
        h.append("Return-Path: <%s>" % (env if "@" in env else ""))
        for hop in range(rng.randint(1, 3)):
            relay = "mx%d.%s" % (rng.randrange(1, 5), rng.choice(DOMAINS))
            h.append(
                "Received: from %s (%s [127.0.%d.%d])\n\tby %s with "
                "ESMTPS id %08X;\n\t%s"
                % (
                    relay,
                    relay,
                    rng.randrange(256),
                    rng.randrange(256),
                    "mail.example.org",
                    rng.getrandbits(32),
                    rfc2822_date(t - hop, zone),
                )
            )
        h.append("Message-ID: " + mid)
        h.append("Date: " + rfc2822_date(t - rng.randrange(1, 90), zone))
        h.append("From: " + sender)
        h.append("To: " + to)
        if rng.random() < 0.25:
            h.append(
                "Cc: " + ", ".join(self.person()[0] for _ in range(rng.randint(1, 4)))
            )
        h.append("Subject: " + self.subject())
        if rng.random() < 0.3:
            h.append(
                "In-Reply-To: <%d.%d@%s>"
                % (t - 5000, rng.randrange(10**6), rng.choice(DOMAINS))
            )
        if rng.random() < 0.2:
            h.append(
                "X-Mailer: Example Mail %d.%d"
                % (rng.randrange(1, 20), rng.randrange(10))
            )
        if rng.random() < 0.1:
            h.append("List-Id: <list-%d.lists.example.net>" % rng.randrange(5))
        h.append("MIME-Version: 1.0")

        quote_rd = a.format == "mboxrd"
        body_size = max(200, size - 900)
        kind = rng.random()
        parts: list[bytes] = []
        boundary = "=_Part_%d_%08x" % (idx, rng.getrandbits(32))
        if att > 0 or (kind < 0.05 and size > 3000):
            # multipart/mixed with an attachment
            if att == 0:  # small inline image within the ordinary budget
                att = max(77, body_size * 2 // 3)
                body_size -= att
            h.append(f'Content-Type: multipart/mixed;\n\tboundary="{boundary}"')
            text = self.sprinkle(
                self.text_slice(max(200, body_size)), self.body_lines_special(quote_rd)
            )
            if a.unquoted_from_rate and rng.random() < a.unquoted_from_rate:
                text = self.unquoted_from(text)
            ctype, ext = rng.choice(EXTS)
            fname = "file-%d.%s" % (idx, ext)
            if rng.random() < 0.15:
                fname_hdr = 'filename="{}"'.format(
                    encode_word(rng, "Überweisung-%d.%s" % (idx, ext))
                )
            else:
                fname_hdr = f'filename="{fname}"'
            parts.append(b"This is a multi-part message in MIME format.\n\n")
            parts.append(
                (
                    f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                    "Content-Transfer-Encoding: 8bit\n\n"
                ).encode()
            )
            parts.append(text)
            parts.append(
                (
                    f'\n--{boundary}\nContent-Type: {ctype}; name="{fname}"\n'
                    "Content-Transfer-Encoding: base64\n"
                    f"Content-Disposition: attachment;\n\t{fname_hdr}\n\n"
                ).encode()
            )
            parts.append(self.b64_slice(att))
            parts.append((f"\n--{boundary}--\n").encode())
            self.cur_flags["attachment"] = att
        elif kind < 0.35:
            h.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            half = max(100, body_size // 2)
            text = self.sprinkle(
                self.text_slice(half), self.body_lines_special(quote_rd)
            )
            if a.unquoted_from_rate and rng.random() < a.unquoted_from_rate:
                text = self.unquoted_from(text)
            html = self.text_slice(half - 60).replace(b"\n\n", b"</p>\n<p>")
            parts.append(
                (
                    f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                    "Content-Transfer-Encoding: 8bit\n\n"
                ).encode()
            )
            parts.append(text)
            parts.append(
                (
                    f"\n--{boundary}\nContent-Type: text/html; charset=utf-8\n"
                    "Content-Transfer-Encoding: 8bit\n\n<html><body>"
                    "<p>"
                ).encode()
            )
            parts.append(html)
            parts.append((f"</p></body></html>\n\n--{boundary}--\n").encode())
        else:
            text = self.text_slice(body_size)
            if kind < 0.5:
                h.append("Content-Type: text/plain; charset=utf-8")
                h.append("Content-Transfer-Encoding: quoted-printable")
                text = self.qp(text)
            elif kind < 0.8:
                h.append("Content-Type: text/plain; charset=utf-8")
                h.append("Content-Transfer-Encoding: 8bit")
            else:
                h.append("Content-Type: text/plain; charset=us-ascii")
                h.append("Content-Transfer-Encoding: 7bit")
                text = text.decode("utf-8").encode("ascii", "replace")
            text = self.sprinkle(text, self.body_lines_special(quote_rd))
            if a.unquoted_from_rate and rng.random() < a.unquoted_from_rate:
                text = self.unquoted_from(text)
            if rng.random() < 0.3:
                text += b"\n-- \nSent from a test generator\n"
            parts.append(text)

        head = "\n".join(h).encode("utf-8") + b"\n\n"
        content = head + b"".join(parts)
        if not content.endswith(b"\n"):
            content += b"\n"
        if a.crlf_rate and rng.random() < a.crlf_rate:
            content = content.replace(b"\n", b"\r\n")
            self.cur_flags["crlf"] = True
        return from_line, content, mid

    # ---- whole file ---------------------------------------------------
    def pick_size(
        self, i: int, n_target: int | None, size_target: int | None, written: int
    ) -> tuple[int, int]:
        """Choose the next message's ordinary size and attachment size."""
        a = self.a
        rng = self.rng
        size = int(rng.lognormvariate(self.small_mu, self.small_sigma))
        size = min(max(size, 1500), 64 * 1024)
        p_att = a.attach_rate
        if size_target is not None and n_target is not None:
            left = n_target - i
            avg = (size_target - written) / left
            p_att = (avg - self.small_mean) / self.att_mean
            p_att = min(max(p_att, 0.0), 1.0)
            if avg < self.small_mean:
                size = max(1000, int(size * max(avg, 1000) / self.small_mean))
        att = 0
        if rng.random() < p_att:
            u = rng.random()
            att = int(self.att_lo * (self.att_hi / self.att_lo) ** u)
        return size, att

    def run(self, out: BinaryIO, manifest: TextIO | None) -> tuple[int, int]:
        a = self.a
        n_target = a.messages
        size_target = a.target_size
        if n_target is None and size_target is None:
            n_target = 1000
        written = 0
        i = 0
        pending: dict[str, Any] | None = None  # record of the previous message
        last_content = b""
        while True:
            if n_target is not None and i >= n_target:
                break
            if size_target is not None and n_target is None and written >= size_target:
                break
            size, att = self.pick_size(i, n_target, size_target, written)
            i += 1
            from_line, content, mid = self.message(i, size, att)
            chunk = from_line + content + b"\n"
            last_content = content
            if manifest is not None:
                if pending is not None:
                    manifest.write(json.dumps(pending) + "\n")
                octets = len(content) + content.count(b"\n") - content.count(b"\r\n")
                pending = {
                    "n": i,
                    "offset": written,
                    "length": len(chunk),
                    "message_id": mid,
                    "octets": octets,
                }
                pending.update(self.cur_flags)
            out.write(chunk)
            written += len(chunk)
        if a.no_final_newline and written:
            # Drop the blank separator and the last line end of the last
            # message, so the file ends in the middle of a line.
            trimmed = last_content.rstrip(b"\r\n")
            cut = 1 + len(last_content) - len(trimmed)
            out.flush()
            out.seek(written - cut)
            out.truncate()
            written -= cut
            if pending is not None:
                pending["length"] -= cut
                pending["octets"] = (
                    len(trimmed) + trimmed.count(b"\n") - trimmed.count(b"\r\n")
                )
                pending["no_final_newline"] = True
        if pending is not None and manifest is not None:
            manifest.write(json.dumps(pending) + "\n")
        return i, written


_RATE_OPTIONS = (
    "--attach-rate",
    "--from-line-rate",
    "--dot-line-rate",
    "--crlf-rate",
    "--unquoted-from-rate",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m spoolgate.mbox.generate",
        description="Generate a deterministic, realistic Unix mbox file.",
    )
    p.add_argument("output", help="output mbox path ('-' for stdout)")
    p.add_argument("--messages", "-n", type=int, default=None)
    p.add_argument(
        "--target-size",
        type=str,
        default=None,
        help="bytes; suffixes K, M, G (powers of 1024) allowed",
    )
    p.add_argument("--format", choices=("mboxo", "mboxrd"), default="mboxrd")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--attach-rate",
        type=float,
        default=0.01,
        help="share of messages with a 100KB-5MB attachment when "
        "not steered by --messages + --target-size (0.01)",
    )
    p.add_argument(
        "--from-line-rate",
        type=float,
        default=0.05,
        help="share of messages with escaped 'From ' body lines",
    )
    p.add_argument(
        "--dot-line-rate",
        type=float,
        default=0.1,
        help="share of messages with lines starting with '.'",
    )
    p.add_argument(
        "--crlf-rate",
        type=float,
        default=0.0,
        help="share of messages stored with CRLF line ends",
    )
    p.add_argument(
        "--unquoted-from-rate",
        type=float,
        default=0.0,
        help="share of messages with an unescaped 'From ' line "
        "mid-paragraph (breaks naive parsers)",
    )
    p.add_argument(
        "--no-final-newline",
        action="store_true",
        help="last message ends without a newline",
    )
    p.add_argument("--manifest", default=None, help="write per-message JSON lines here")
    p.add_argument("--quiet", "-q", action="store_true")
    a = p.parse_args(argv)
    options = _options_from(p, a)

    t0 = time.monotonic()
    if a.output == "-":
        manifest = open(a.manifest, "w", encoding="utf-8") if a.manifest else None
        try:
            n, size = generate(options, sys.stdout.buffer, manifest)
        finally:
            if manifest:
                manifest.close()
    else:
        n, size = generate_file(a.output, options, a.manifest)
    if not a.quiet:
        dt = time.monotonic() - t0
        print(
            "wrote %d messages, %d bytes in %.1f s (%.0f MB/s)"
            % (n, size, dt, size / 1e6 / max(dt, 1e-9)),
            file=sys.stderr,
        )
    return 0


def _options_from(p: argparse.ArgumentParser, a: argparse.Namespace) -> GenerateOptions:
    """Check the parsed arguments; exit through ``p.error`` on a bad one."""
    if a.messages is not None and a.messages < 1:
        p.error("--messages must be >= 1")
    for option in _RATE_OPTIONS:
        rate = getattr(a, option.removeprefix("--").replace("-", "_"))
        # Written so that NaN fails too: every comparison with NaN is false.
        if not 0.0 <= rate <= 1.0:
            p.error(f"{option} must be a number from 0 to 1, got {rate}")
    if a.output == "-" and a.no_final_newline:
        p.error("--no-final-newline needs a file, not stdout")
    target_size = None
    if a.target_size is not None:
        try:
            target_size = parse_size(a.target_size)
        except (ValueError, OverflowError):
            p.error(f"--target-size {a.target_size!r}: not a byte count like 500M")
        if target_size < 1:
            p.error(f"--target-size {a.target_size!r}: must be at least 1 byte")
    return GenerateOptions(
        messages=a.messages,
        target_size=target_size,
        format=a.format,
        seed=a.seed,
        attach_rate=a.attach_rate,
        from_line_rate=a.from_line_rate,
        dot_line_rate=a.dot_line_rate,
        crlf_rate=a.crlf_rate,
        unquoted_from_rate=a.unquoted_from_rate,
        no_final_newline=a.no_final_newline,
    )


if __name__ == "__main__":
    sys.exit(main())
