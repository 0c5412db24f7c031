"""peers - the other side of delivery tests: DNS, MX hosts, a smart host.

Real Debian programs play the peers; every one of them listens on a
loopback address only (127.0.0.0/8) and lives in its own temporary
directory, started and stopped by the test that uses it:

  DnsServer     dnsmasq (dnsmasq-base) on 127.0.0.1:<free port>, UDP and
                TCP, answering only from the records the test gives it:
                --no-resolv --no-hosts and no upstream server, so a name it
                does not know is answered locally (NXDOMAIN for the test's
                domains, REFUSED for any other) and never leaves the machine
  SmtpSink      Postfix's smtp-sink on a given loopback address and port,
                with its fault flags (-r/-f reject with 4xx/5xx, -q/-Q drop
                or 421 after a command, -w slow DATA, -p no PIPELINING),
                every message dumped to a file (-d) and parsed back
  ScriptedPeer  a small SMTP server in a thread of the test process, for
                what smtp-sink cannot express: a fault in the first
                session only, a drop in the middle of the content, AUTH
                offered in the clear
  Smarthost     a private Postfix instance (own config, queue and data
                directories; master.cf without chroot): STARTTLS with a
                self-signed certificate, smtpd_tls_auth_only, AUTH PLAIN and
                LOGIN from a Cyrus sasldb, relaying only for authenticated
                clients, to relayhost = an SmtpSink (so the test sees what
                it relayed); optionally also an implicit-TLS listener

    with DnsServer({"mx": [("dest.test", 10, "mx1.dest.test")],
                    "a": [("mx1.dest.test", "127.0.0.2")],
                    "nullmx": ["nomail.test"]}) as dns, \\
         SmtpSink("127.0.0.2", port, flags=["-r", "RCPT"]) as sink:
        ...  dns.servers == "127.0.0.1:NNNN"; sink.messages()

Also here, because both delivery test files need them: parse_events()
for ombud's text log lines (event=NAME key=value ..., values with blanks
quoted and backslash-escaped as log.c writes them), and dns_query(), a
stdlib DNS client used to check the DNS server itself.

Needs: /usr/sbin/dnsmasq (dnsmasq-base), /usr/sbin/smtp-sink and the
Postfix daemons (postfix), saslpasswd2 (sasl2-bin), the Cyrus sasldb
plugin (libsasl2-modules-db, with libsasl2-modules), openssl.  Smarthost
needs root (Postfix's master runs as root, its daemons as 'postfix').
"""
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

DNSMASQ = "/usr/sbin/dnsmasq"
SMTP_SINK = "/usr/sbin/smtp-sink"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"
KEEP = bool(os.environ.get("OMBUD_KEEP_TMP"))

_libc = None


def _die_with_parent():
    """preexec_fn: the peer gets SIGKILL if the test process dies."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
    except OSError:
        pass


def have(*paths):
    return all(os.access(p, os.X_OK) for p in paths)


def is_loopback(addr):
    if addr == "::1":
        return True
    try:
        return socket.inet_aton(addr)[0] == 127
    except OSError:
        return False


def _check_loopback(addr):
    if not is_loopback(addr):
        raise ValueError(f"peers listen on loopback only, not {addr!r}")


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_common_port(hosts):
    """A TCP port free (a moment ago) on every one of hosts, for mx_port:
    ombud connects to the same port on every MX address."""
    for h in hosts:
        _check_loopback(h)
    for _ in range(200):
        port = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise AssertionError(f"no common free port on {hosts}")


def wait_tcp(host, port, proc=None, timeout=10, what="peer", log=None):
    """Wait until host:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode} at "
                                 f"start:\n{_tail(log)}")
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} not listening on {host}:{port} after "
                         f"{timeout}s:\n{_tail(log)}")


def read_text(path):
    """A log file's text ("" if it is not there yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _tail(path, n=30):
    return "\n".join(read_text(path).splitlines()[-n:]) if path else ""


def _stop_proc(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _as_root_args():
    """dnsmasq and smtp-sink drop privileges when run as root: stay root
    (the test's files are root's, mode 0600)."""
    return os.geteuid() == 0


class _Peer:
    """Temporary directory, context manager, close()."""

    def _mkdir(self, directory, prefix):
        if directory is None:
            self.dir = tempfile.mkdtemp(prefix=prefix)
            self._own_dir = True
        else:
            self.dir = directory
            os.makedirs(directory, exist_ok=True)
            self._own_dir = False

    def close(self, failed=False):
        self.stop()
        if self._own_dir and not (failed and KEEP):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(failed=et is not None)


# --- DNS ----------------------------------------------------------------


class DnsServer(_Peer):
    """dnsmasq on 127.0.0.1:<free port> serving only the given records.

    records: {"mx": [(domain, pref, host)], "a": [(name, ipv4)],
    "aaaa": [(name, ipv6)], "nullmx": [domain], "txt": [(name, text)]}.
    local: domains answered from these records only (NXDOMAIN for any
    other name under them); names outside get REFUSED (no upstream)."""

    def __init__(self, records=None, local=("test",), directory=None,
                 start=True):
        if not have(DNSMASQ):
            raise FileNotFoundError(f"{DNSMASQ} (apt-get install "
                                    "dnsmasq-base)")
        self._mkdir(directory, "ombud-dns-")
        self.records = {k: list(v) for k, v in (records or {}).items()}
        self.local = list(local)
        self.port = None
        self.proc = None
        self.log = os.path.join(self.dir, "dnsmasq.log")
        if start:
            self.start()

    @property
    def servers(self):
        return f"127.0.0.1:{self.port}"

    def args(self):
        a = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
             "--no-poll", "--conf-file=/dev/null", "--bind-interfaces",
             "--listen-address=127.0.0.1", f"--port={self.port}",
             "--pid-file=", "--log-queries", f"--log-facility={self.log}",
             "--local-ttl=0", "--cache-size=0"]
        if _as_root_args():
            a += ["--user=root", "--group=root"]
        for d in self.local:
            a.append(f"--local=/{d}/")
        for domain, pref, host in self.records.get("mx", []):
            a.append(f"--mx-host={domain},{host},{int(pref)}")
        for domain in self.records.get("nullmx", []):
            # RFC 7505: a single MX with preference 0 and the root as host
            a.append(f"--mx-host={domain},.,0")
        addrs = {}
        for name, ip in self.records.get("a", []) + \
                self.records.get("aaaa", []):
            addrs.setdefault(name, []).append(ip)
        for name, ips in addrs.items():
            a.append("--host-record=" + ",".join([name] + ips))
        for name, text in self.records.get("txt", []):
            a.append(f"--txt-record={name},{text}")
        return a

    def start(self, timeout=10, port=None):
        for attempt in range(5):
            self.port = port or free_port()
            with open(os.path.join(self.dir, "dnsmasq.out"), "ab") as out:
                self.proc = subprocess.Popen(
                    self.args(), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    dns_query(self.servers, "probe.invalid", "A",
                              timeout=0.2)
                    return self
                except (OSError, AssertionError):
                    time.sleep(0.05)
            out = _tail(os.path.join(self.dir, "dnsmasq.out"))
            _stop_proc(self.proc)
            if "Address already in use" in out and attempt < 4:
                time.sleep(0.2)
                continue
            raise AssertionError(f"dnsmasq did not answer on "
                                 f"{self.servers}:\n{out}\n{_tail(self.log)}")
        raise AssertionError("dnsmasq could not start")

    def stop(self):
        _stop_proc(self.proc)

    def reload(self, records):
        """Serve records instead, on the same port (dnsmasq restarted:
        it has no way to change its records while running)."""
        self.records = {k: list(v) for k, v in records.items()}
        _stop_proc(self.proc)
        return self.start(port=self.port)

    def describe(self):
        return f"--- dnsmasq {self.servers} log tail:\n{_tail(self.log, 20)}"

    def queries(self):
        """Names asked, as (type, name) pairs, from dnsmasq's log."""
        return re.findall(r"query\[(\w+)\] (\S+) from",
                          read_text(self.log))


DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
             "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}


def _read_name(pkt, off):
    labels, jumped, end = [], False, None
    for _ in range(128):
        n = pkt[off]
        if n & 0xc0 == 0xc0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3f) << 8) | pkt[off + 1]
            jumped = True
            continue
        off += 1
        if n == 0:
            break
        labels.append(pkt[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if jumped else off)


def dns_query(server, name, qtype="A", timeout=2.0):
    """One UDP query to server ("127.0.0.1:PORT", loopback only).
    Returns (rcode name, [(type, rdata)]) with MX rdata (pref, host),
    A/AAAA an address string, TXT the joined strings."""
    host, port = server.rsplit(":", 1)
    _check_loopback(host)
    tid = random.randrange(65536)
    q = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", DNS_TYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (host, int(port)))
        while True:
            r, _ = s.recvfrom(65536)
            if len(r) >= 12 and struct.unpack(">H", r[:2])[0] == tid:
                break
    flags, qd, an = struct.unpack(">HHH", r[2:8])
    off = 12
    for _ in range(qd):
        _, off = _read_name(r, off)
        off += 4
    answers = []
    names = {v: k for k, v in DNS_TYPES.items()}
    for _ in range(an):
        _, off = _read_name(r, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        rd = r[off:off + rdlen]
        t = names.get(rtype, str(rtype))
        if t == "MX":
            answers.append((t, (struct.unpack(">H", rd[:2])[0],
                                _read_name(r, off + 2)[0])))
        elif t == "A":
            answers.append((t, socket.inet_ntop(socket.AF_INET, rd)))
        elif t == "AAAA":
            answers.append((t, socket.inet_ntop(socket.AF_INET6, rd)))
        elif t == "TXT":
            parts, i = [], 0
            while i < len(rd):
                parts.append(rd[i + 1:i + 1 + rd[i]].decode())
                i += 1 + rd[i]
            answers.append((t, "".join(parts)))
        else:
            answers.append((t, rd))
        off += rdlen
    return RCODES.get(flags & 0xf, str(flags & 0xf)), answers


# --- SMTP: what arrived -------------------------------------------------


class Arrived:
    """One message as a peer received it."""

    def __init__(self, mail_from, rcpts, content, helo=None, path=None,
                 mail_args="", rcpt_args=()):
        self.mail_from = mail_from      # "" for the null reverse-path
        self.rcpts = list(rcpts)
        self.content = content          # bytes, CRLF lines, unstuffed
        self.helo = helo
        self.path = path
        self.mail_args = mail_args      # parameters after the address
        self.rcpt_args = list(rcpt_args)

    def header(self, name):
        """Values of a header field in the message as it arrived."""
        head = self.content.split(b"\r\n\r\n", 1)[0].decode("utf-8",
                                                            "replace")
        head = re.sub(r"\r\n[ \t]", " ", head)
        out = []
        for line in head.split("\r\n"):
            k, _, v = line.partition(":")
            if k.lower() == name.lower():
                out.append(v.strip())
        return out

    def __repr__(self):
        return (f"Arrived(from={self.mail_from!r}, rcpts={self.rcpts!r}, "
                f"{len(self.content)} bytes)")


def _addr(args):
    """'<a@b> SIZE=1' -> ('a@b', 'SIZE=1')."""
    m = re.match(r"\s*<([^>]*)>\s*(.*)$", args)
    if not m:
        return args.strip(), ""
    return m.group(1), m.group(2)


def parse_sink_dump(data, path=None):
    """An smtp-sink -d file: X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args..., its own three-line Received header, then
    the content (dot-unstuffed, LF line ends) and one empty line."""
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    mail, rcpts, rargs, helo, i = None, [], [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("X-Mail-Args: "):
            mail = line[len("X-Mail-Args: "):]
        elif line.startswith("X-Rcpt-Args: "):
            a, p = _addr(line[len("X-Rcpt-Args: "):])
            rcpts.append(a)
            rargs.append(p)
        elif line.startswith("X-Helo-Args: "):
            helo = line[len("X-Helo-Args: "):]
        elif line.startswith("Received: ") and \
                i + 1 < len(lines) and "(smtp-sink)" in lines[i + 1]:
            i += 3
            break
        i += 1
    body = "\n".join(lines[i:])
    if body.endswith("\n\n"):
        body = body[:-1]                # the empty line smtp-sink adds
    content = body.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    addr, margs = _addr(mail or "")
    return Arrived(addr, rcpts, content, helo=helo, path=path,
                   mail_args=margs, rcpt_args=rargs)


class _Collector:
    def wait_count(self, n, timeout=30, what=None):
        """Wait until at least n messages arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what or self.name}: {len(msgs)} of {n} messages "
                    f"arrived in {timeout}s: {msgs!r}\n{self.describe()}")
            time.sleep(0.05)

    def wait_for(self, pred, timeout=30, what="message"):
        """Wait until a message with pred(msg) true arrived; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages():
                if pred(m):
                    return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} in "
                                     f"{timeout}s; have "
                                     f"{self.messages()!r}\n"
                                     f"{self.describe()}")
            time.sleep(0.05)

    def count(self):
        return len(self.messages())


class SmtpSink(_Peer, _Collector):
    """Postfix's smtp-sink on host:port (loopback), every transaction
    dumped to DIR/m.<random> and readable with messages().

    flags go to smtp-sink unchanged, e.g. ["-r", "RCPT"] (450 to RCPT),
    ["-f", "RCPT", "-B", "550 5.1.1 No such user"] (5xx), ["-q", "DATA"]
    (drop the connection after DATA, no reply), ["-Q", "MAIL"] (421 and
    close), ["-w", "2"] (2 s before the DATA reply), ["-p"] (no
    PIPELINING).  -r and -f imply -p.  -v is always on: the commands go to
    DIR/sink.log (saw())."""

    def __init__(self, host="127.0.0.2", port=None, flags=(), name=None,
                 directory=None, start=True, backlog=64):
        if not have(SMTP_SINK):
            raise FileNotFoundError(f"{SMTP_SINK} (apt-get install postfix)")
        _check_loopback(host)
        self._mkdir(directory, "ombud-sink-")
        self.host = host
        self.port = port or free_port(host)
        self.flags = list(flags)
        self.name = name or f"sink {host}:{self.port}"
        self.backlog = backlog
        self.proc = None
        self.log = os.path.join(self.dir, "sink.log")
        self.dumps = os.path.join(self.dir, "dumps")
        os.makedirs(self.dumps, exist_ok=True)
        self.starts = 0
        if start:
            self.start()

    def start(self, flags=None, timeout=10):
        if flags is not None:
            self.flags = list(flags)
        args = [SMTP_SINK, "-v"]
        if _as_root_args():
            args += ["-u", "root"]
        args += self.flags + ["-d", os.path.join(self.dumps, "m."),
                              f"{self.host}:{self.port}",
                              str(self.backlog)]
        self.starts += 1
        with open(self.log, "ab") as lf:
            lf.write(f"=== start {self.starts}: {args}\n".encode())
        for attempt in range(50):
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            try:
                wait_tcp(self.host, self.port, self.proc, timeout,
                         self.name, self.log)
                return self
            except AssertionError:
                # a restart on the same port right after a stop: the
                # address may still be busy for a moment
                if self.proc.poll() is not None and attempt < 49 and \
                        "Address already in use" in _tail(self.log, 3):
                    time.sleep(0.1)
                    continue
                raise

    def stop(self):
        _stop_proc(self.proc)

    def restart(self, flags=()):
        """Stop, start again on the same address with new flags; what
        arrived so far stays."""
        self.stop()
        return self.start(flags)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def messages(self):
        out = []
        try:
            names = sorted(os.listdir(self.dumps),
                           key=lambda n: os.stat(
                               os.path.join(self.dumps, n)).st_mtime_ns)
        except FileNotFoundError:
            return out
        for n in names:
            p = os.path.join(self.dumps, n)
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data.endswith(b"\n\n"):
                continue                # transaction still in progress
            out.append(parse_sink_dump(data, p))
        return out

    def saw(self, command):
        """Whether a client sent a command line starting with command
        (case-insensitive), from the -v log."""
        rx = re.compile(r"smtp-sink: " + re.escape(command.lower()),
                        re.I)
        return bool(rx.search(self.log_text()))

    def log_text(self):
        return read_text(self.log)

    def describe(self):
        return f"--- {self.name} log tail:\n{_tail(self.log, 25)}"


# --- SMTP: scripted -----------------------------------------------------


class ScriptedPeer(_Peer, _Collector):
    """An SMTP server in threads of the test process, on host:port.

    rules: (times, command, action) triples.  times is a set of
    occurrence numbers of that command, counted over all sessions (0 = the
    first time it comes, whatever the connection: a client may reuse one
    connection for its retries) or None for every time; command is
    CONNECT, EHLO, MAIL, RCPT, DATA, CONTENT (the first chunk of message
    content) or "." (end of data); action is "drop" (close without a
    reply) or a reply line such as "451 4.3.0 Try later", sent instead of
    the normal one.  The first matching rule wins.

    ehlo: the extensions offered.  AUTH is answered 235 whatever the
    credentials (so a test can see that a client used it: transcript).
    Everything received is kept in transcript as (session, bytes)."""

    def __init__(self, host="127.0.0.2", port=None, rules=(),
                 ehlo=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"),
                 name=None, start=True):
        _check_loopback(host)
        self.dir = None
        self._own_dir = False
        self.host = host
        self.port = port or free_port(host)
        self.rules = list(rules)
        self.ehlo = list(ehlo)
        self.name = name or f"scripted peer {host}:{self.port}"
        self.lock = threading.Lock()
        self._messages = []
        self.transcript = []
        self.sessions = 0
        self.counts = {}                # command -> times received
        self.errors = []
        self.lsock = None
        self.threads = []
        self.stopping = threading.Event()
        if start:
            self.start()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.lsock = s
        self.stopping.clear()
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(10)
        self.threads = []
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None

    def messages(self):
        with self.lock:
            return list(self._messages)

    def received(self):
        """Everything clients sent, concatenated."""
        with self.lock:
            return b"".join(d for _, d in self.transcript)

    def describe(self):
        with self.lock:
            t = self.transcript[-20:]
        return f"--- {self.name}: {self.sessions} sessions; last " \
               f"input {t!r}; errors {self.errors!r}"

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                n = self.sessions
                self.sessions += 1
            t = threading.Thread(target=self._serve, args=(conn, n),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def _seen(self, command):
        """Count one more occurrence of command; its number (0 first)."""
        with self.lock:
            n = self.counts.get(command, 0)
            self.counts[command] = n + 1
        return n

    def _action(self, session, command):
        """What to do with this occurrence of command (counted once per
        command received, even when the session was dropped after it)."""
        n = self._seen(command)
        for times, cmd, action in self.rules:
            if cmd.upper() == command and (times is None or n in times):
                return action
        return None

    def _serve(self, conn, session):
        conn.settimeout(30)
        buf = [b""]

        def log(data):
            with self.lock:
                self.transcript.append((session, data))

        def send(line):
            conn.sendall(line.encode() + b"\r\n")

        def readline():
            while b"\n" not in buf[0]:
                if self.stopping.is_set():
                    raise EOFError
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError
                buf[0] += chunk
            line, buf[0] = buf[0].split(b"\n", 1)
            log(line + b"\n")
            return line.rstrip(b"\r").decode("utf-8", "replace")

        try:
            a = self._action(session, "CONNECT")
            if a == "drop":
                return
            send(a or "220 peer.test ESMTP scripted")
            mail, rcpts = None, []
            while True:
                line = readline()
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    a = self._action(session, "EHLO")
                    if a == "drop":
                        return
                    if a:
                        send(a)
                        continue
                    ext = ["peer.test"] + self.ehlo
                    send("\r\n".join(
                        f"250{'-' if i < len(ext) - 1 else ' '}{e}"
                        for i, e in enumerate(ext)))
                elif verb == "HELO":
                    send("250 peer.test")
                elif verb == "AUTH":
                    if len(line.split()) == 2:      # LOGIN or PLAIN, no IR
                        send("334 ")
                        readline()
                        if line.split()[1].upper() == "LOGIN":
                            send("334 ")
                            readline()
                    send("235 2.7.0 Authentication successful")
                elif verb == "MAIL":
                    a = self._action(session, "MAIL")
                    if a == "drop":
                        return
                    send(a or "250 2.1.0 Ok")
                    mail, rcpts = (line if not a else None), []
                elif verb == "RCPT":
                    a = self._action(session, "RCPT")
                    if a == "drop":
                        return
                    if a:
                        send(a)
                    else:
                        rcpts.append(line)
                        send("250 2.1.5 Ok")
                elif verb == "DATA":
                    a = self._action(session, "DATA")
                    if a == "drop":
                        return
                    if a or not mail or not rcpts:
                        send(a or "554 5.5.1 No valid recipients")
                        continue
                    send("354 End data with <CR><LF>.<CR><LF>")
                    if self._action(session, "CONTENT") == "drop":
                        # the first chunk of content, then close
                        while not buf[0]:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            buf[0] += chunk
                        log(buf[0])
                        return
                    lines = []
                    while True:
                        l = readline()
                        if l == ".":
                            break
                        lines.append(l[1:] if l.startswith(".") else l)
                    a = self._action(session, ".")
                    if a == "drop":
                        return
                    if a:
                        send(a)
                    else:
                        content = ("\r\n".join(lines) + "\r\n").encode(
                            "utf-8", "surrogateescape")
                        fa, fp = _addr(mail.split(":", 1)[1])
                        with self.lock:
                            self._messages.append(Arrived(
                                fa, [_addr(r.split(":", 1)[1])[0]
                                     for r in rcpts], content,
                                mail_args=fp))
                        send("250 2.0.0 Ok: queued")
                    mail, rcpts = None, []
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                elif verb == "STARTTLS":
                    send("454 4.7.0 TLS not available")
                else:
                    send("502 5.5.2 Command not recognized")
        except (EOFError, OSError):
            pass
        except Exception as e:          # noqa: BLE001 - reported by tests
            with self.lock:
                self.errors.append(repr(e))
        finally:
            conn.close()


# --- a private Postfix smart host --------------------------------------

MASTER_CF = """\
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def make_cert(directory, cn, sans, name="cert"):
    """Self-signed EC certificate and key (openssl CLI); paths."""
    key = os.path.join(directory, f"{name}.key")
    cert = os.path.join(directory, f"{name}.pem")
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", f"/CN={cn}", "-addext",
         "subjectAltName=" + ",".join(sans), "-keyout", key, "-out", cert],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl req failed: {p.stdout!r}")
    return cert, key


class Smarthost(_Peer):
    """A private Postfix instance on 127.0.0.1:<free port> (submission
    style: STARTTLS, AUTH PLAIN/LOGIN only inside TLS, relaying only for
    authenticated clients) that relays everything to relay_to, e.g. an
    SmtpSink's (host, port).  implicit=True adds a second listener with
    TLS from the first byte (.port_implicit).

    users: {user: password}, stored with saslpasswd2 in a private sasldb
    (realm = hostname, which is smtpd_sasl_local_domain: clients log in
    with the bare user name).  .cert is the PEM certificate (SAN
    DNS:localhost, DNS:<hostname>, IP:127.0.0.1) to trust; .maillog the
    Postfix log.  The master runs in the foreground as a child of the
    test (not `postfix start`), so it cannot outlive it."""

    def __init__(self, relay_to, users=None, hostname="smarthost.test",
                 implicit=False, start=True):
        if os.geteuid() != 0:
            raise PermissionError("a private Postfix needs root")
        missing = [p for p in (SASLPASSWD2,
                               os.path.join(POSTFIX_DAEMONS, "master"),
                               "/usr/sbin/postfix") if not have(p)]
        if missing:
            raise FileNotFoundError(" ".join(missing) + " (apt-get install "
                                    "postfix sasl2-bin libsasl2-modules)")
        _check_loopback(relay_to[0])
        self._mkdir(None, "ombud-smarthost-")
        os.chmod(self.dir, 0o755)       # the postfix user reads its queue
        self.relay_to = relay_to
        self.users = dict(users or {"relayuser": "relay-secret"})
        self.hostname = hostname
        self.implicit = implicit
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.sasl = os.path.join(self.conf, "sasl")
        self.maillog = os.path.join(self.dir, "maillog")
        self.proc = None
        for d in (self.conf, self.queue, self.data, self.sasl):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        os.chmod(self.data, 0o700)
        self.cert, self.key = make_cert(
            self.dir, hostname, ["DNS:localhost", f"DNS:{hostname}",
                                 "IP:127.0.0.1"])
        shutil.chown(self.key, "postfix")
        os.chmod(self.key, 0o600)
        self.sasldb = os.path.join(self.sasl, "sasldb2")
        for user, pw in self.users.items():
            self.add_user(user, pw)
        # Cyrus reads <smtpd_sasl_path>.conf from cyrus_sasl_config_path
        # (Debian's Postfix looks in $config_directory/sasl as well)
        with open(os.path.join(self.sasl, "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    f"sasldb_path: {self.sasldb}\n"
                    "mech_list: PLAIN LOGIN\n")
        self.port = None
        self.port_implicit = None
        if start:
            self.start()

    def add_user(self, user, password):
        p = subprocess.run([SASLPASSWD2, "-p", "-c", "-f", self.sasldb,
                            "-u", self.hostname, user],
                           input=password.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"saslpasswd2 failed: {p.stdout!r}")
        shutil.chown(self.sasldb, "postfix")
        os.chmod(self.sasldb, 0o600)

    def main_cf(self):
        h, p = self.relay_to
        d = self.dir
        return f"""\
# private smart host written by tests/blackbox/peers.py
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = {self.hostname}
myorigin = {self.hostname}
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
# relay for authenticated clients only (not even for mynetworks)
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
# everything goes to the test's sink; no DNS, no other destination
relayhost = [{h}]:{p}
default_transport = smtp
relay_transport = smtp
smtp_dns_support_level = disabled
smtp_bind_address = 127.0.0.1
smtp_tls_security_level = none
smtpd_peername_lookup = no
smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {self.sasl}
smtpd_sasl_local_domain = {self.hostname}
smtpd_sasl_security_options = noanonymous
broken_sasl_auth_clients = no
notify_classes =
in_flow_delay = 0
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {self.maillog}
maillog_file_prefixes = {d}
# fast retries of the relay to the sink
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

    def master_cf(self):
        out = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        if self.implicit:
            out += (f"127.0.0.1:{self.port_implicit} inet n - n - - smtpd\n"
                    "  -o smtpd_tls_wrappermode=yes\n")
        return out + MASTER_CF

    def start(self, timeout=30):
        for attempt in range(3):
            self.port = free_port()
            if self.implicit:
                self.port_implicit = free_port()
            with open(os.path.join(self.conf, "main.cf"), "w") as f:
                f.write(self.main_cf())
            with open(os.path.join(self.conf, "master.cf"), "w") as f:
                f.write(self.master_cf())
            # creates the queue directories with their owners
            p = subprocess.run(["/usr/sbin/postfix", "-c", self.conf,
                                "check"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            if p.returncode != 0:
                raise AssertionError(f"postfix check: {p.stdout!r}")
            env = dict(os.environ, MAIL_CONFIG=self.conf)
            with open(os.path.join(self.dir, "master.out"), "ab") as out:
                self.proc = subprocess.Popen(
                    [os.path.join(POSTFIX_DAEMONS, "master"), "-c",
                     self.conf], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, env=env,
                    preexec_fn=_die_with_parent)
            try:
                wait_tcp("127.0.0.1", self.port, self.proc, timeout,
                         "postfix smtpd", self.maillog)
                if self.implicit:
                    wait_tcp("127.0.0.1", self.port_implicit, self.proc,
                             timeout, "postfix smtpd (implicit TLS)",
                             self.maillog)
                return self
            except AssertionError:
                self.stop()
                if attempt < 2 and "in use" in _tail(self.maillog, 10):
                    continue
                raise
        raise AssertionError("postfix could not start")

    def stop(self):
        if self.proc is None:
            return
        _stop_proc(self.proc, timeout=20)
        # the master's children leave when it is gone; wait a moment for
        # them so the queue directory can be removed
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._children():
            time.sleep(0.1)

    def _children(self):
        """Postfix processes still using this instance's configuration."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if f"MAIL_CONFIG={self.conf}\0".encode() in env:
                out.append(int(pid))
        return out

    def log_text(self):
        return read_text(self.maillog)

    def describe(self):
        return f"--- smarthost maillog tail:\n{_tail(self.maillog, 30)}"


# --- ombud's log ----------------------------------------------------------

_FIELD = re.compile(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)')
_ESC = re.compile(r'\\(u[0-9a-fA-F]{4}|.)')


def _unescape(v):
    if not v.startswith('"'):
        return v

    def one(m):
        s = m.group(1)
        if s[0] == "u" and len(s) == 5:
            return chr(int(s[1:], 16))
        return {"n": "\n", "r": "\r", "t": "\t"}.get(s, s)
    return _ESC.sub(one, v[1:-1])


def parse_event(line):
    """One text log line -> dict of its fields (with 'event', '_level'),
    or None if it has no event."""
    parts = line.split(" ", 2)
    if len(parts) < 3:
        return None
    fields = {"_level": parts[1], "_line": line}
    for m in _FIELD.finditer(parts[2]):
        fields[m.group(1)] = _unescape(m.group(2))
    return fields if "event" in fields else None


def parse_events(text, name=None, **match):
    """Events in a text log, optionally only those called name (a prefix
    when it ends with '.') whose fields equal match."""
    out = []
    for line in text.splitlines():
        e = parse_event(line)
        if e is None:
            continue
        if name is not None:
            ev = e["event"]
            if not (ev == name or (name.endswith(".") and
                                   ev.startswith(name))):
                continue
        if all(e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


# --- the delivery tests' common case ----------------------------------------

def _gateway_case():
    from ombudtest import GatewayTestCase
    return GatewayTestCase


def dsn_report(content):
    """The parts of an RFC 3464 report: (message, per-message fields,
    [per-recipient fields]) with fields as dicts of lower-case names;
    AssertionError if content is not a multipart/report of report-type
    delivery-status."""
    import email
    import email.policy
    msg = email.message_from_bytes(content, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report" or \
            msg.get_param("report-type", "").lower() != "delivery-status":
        raise AssertionError("not a multipart/report; report-type="
                             f"delivery-status: {msg['Content-Type']!r}\n"
                             f"{content[:2000]!r}")
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if not isinstance(blocks, list) or len(blocks) < 2:
                raise AssertionError(f"delivery-status part without "
                                     f"recipient fields: {blocks!r}")
            fields = [{k.lower(): re.sub(r"\s+", " ", str(v)).strip()
                       for k, v in b.items()} for b in blocks]
            return msg, fields[0], fields[1:]
    raise AssertionError(f"no message/delivery-status part:\n"
                         f"{content[:2000]!r}")


class DeliveryTestCase(_gateway_case()):
    """GatewayTestCase with peers: each scenario starts its own DNS
    server, sinks and gateway; they are stopped at its end and, when it
    failed, their logs are shown (OMBUD_KEEP_TMP=1 keeps their
    directories)."""

    SENDER = "sender@src.test"
    # short retries: a deferred recipient is tried again within seconds
    RETRY = {"retry_min": "1s", "retry_max": "2s"}
    WAIT = 30

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        return outcome is not None and not outcome.success

    def peer(self, p):
        def done():
            failed = self._failed()
            if failed and hasattr(p, "describe"):
                import sys
                sys.stderr.write(p.describe() + "\n")
            p.close(failed=failed)
        self.addCleanup(done)
        return p

    def dns(self, records, **kw):
        return self.peer(DnsServer(records, **kw))

    def cli(self, gw, *args, input=None, ok=True):
        """`ombud ARGS -c <gw's config>`; with ok, it must exit 0."""
        p = gw.ombud(*args, "-c", gw.conf_path, input=input)
        if ok and p.returncode != 0:
            raise AssertionError(f"ombud {' '.join(args)} exited "
                                 f"{p.returncode}: {p.stdout}{p.stderr}")
        return p

    def sink(self, host, port=None, flags=(), **kw):
        return self.peer(SmtpSink(host, port, flags=flags, **kw))

    def scripted(self, host, port=None, rules=(), **kw):
        return self.peer(ScriptedPeer(host, port, rules=rules, **kw))

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="ombud-deliv-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def delivery_gateway(self, dns=None, mx_port=None, overrides=None,
                         **kw):
        """A gateway that delivers: delivery = yes, DNS from dns, MX hosts
        on mx_port, quick retries."""
        o = {"delivery": "yes"}
        if dns is not None:
            o["dns_servers"] = dns.servers
        if mx_port is not None:
            o["mx_port"] = mx_port
        o.update(self.RETRY)
        o.update(overrides or {})
        return self.gateway(overrides=o, **kw)

    # --- submitting -------------------------------------------------------

    def submit(self, gw, msg=None, sender=None, rcpts=("rcpt@dest.test",)):
        from ombudtest import message
        sender = self.SENDER if sender is None else sender
        if msg is None:
            msg = message(sender=sender or "x@src.test", rcpt=rcpts[0])
        with gw.connect("relay") as c:
            c.ehlo("client.test")
            qid = c.submit(msg, sender=sender, rcpts=rcpts)
            c.cmd("QUIT", "221")
        return qid

    # --- the gateway's log and queue --------------------------------------

    def events(self, gw, name=None, **match):
        return parse_events(gw.log_text(all_runs=True), name, **match)

    def wait_event(self, gw, name, timeout=None, count=1, peers=(),
                   **match):
        """Wait for count events called name with fields match."""
        timeout = self.WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events(gw, name, **match)
            if len(ev) >= count:
                return ev
            if time.monotonic() > deadline:
                more = "\n".join(p.describe() for p in peers)
                raise AssertionError(
                    f"no {count} x event={name} {match} in {timeout}s "
                    f"(have {len(ev)}); log:\n{gw.log_tail(40)}\n{more}")
            if not gw.running():
                raise AssertionError(f"ombud exited while waiting for "
                                     f"event={name}:\n{gw.log_tail(40)}")
            time.sleep(0.05)

    def assert_no_event(self, gw, name, **match):
        ev = self.events(gw, name, **match)
        self.assertEqual(ev, [], f"unexpected event={name} {match}")

    def wait_gone(self, gw, qids, timeout=None):
        """Wait until none of qids is in the queue any more."""
        timeout = self.WAIT if timeout is None else timeout
        qids = {qids} if isinstance(qids, str) else set(qids)
        deadline = time.monotonic() + timeout
        while True:
            left = qids & gw.queue_ids()
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"still queued after {timeout}s: "
                                     f"{sorted(left)}:\n{gw.log_tail(30)}")
            time.sleep(0.1)

    def wait_queue_empty(self, gw, timeout=None):
        timeout = self.WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            ids = gw.queue_ids()
            if not ids:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"queue not empty after {timeout}s: "
                                     f"{sorted(ids)}:\n{gw.log_tail(30)}")
            time.sleep(0.1)

    def rcpt_state(self, gw, qid, rcpt):
        show = gw.queue_show(qid)
        for r in show.get("recipients", []):
            if r.get("address") == rcpt:
                return show, r
        raise AssertionError(f"{rcpt} not among the recipients of {qid}: "
                             f"{show.get('recipients')!r}")

    def ctl(self, gw, *args, ok=True):
        """`ombud queue ARGS -c CONF` (hold, release, flush...)."""
        p = gw.ombud("queue", args[0], "-c", gw.conf_path, *args[1:])
        if ok and p.returncode != 0:
            raise AssertionError(f"ombud queue {' '.join(args)} exited "
                                 f"{p.returncode}: {p.stdout}{p.stderr}")
        return p
