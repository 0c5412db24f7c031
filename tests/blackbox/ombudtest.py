"""ombudtest - black-box harness for the ombud binary.

Every test gets its own Gateway: a private temporary directory with a
configuration file, a self-signed TLS certificate made by the openssl CLI,
a credentials file made by `ombud passwd`, a spool and a run directory, and
its own `ombud serve` process on free loopback ports.  Nothing is shared
between tests, so meson may run the test files in parallel.

The binary is taken from the environment variable OMBUD_BIN (meson sets it).
Set OMBUD_KEEP_TMP=1 to keep the temporary directories of failed tests.

    with Gateway(overrides={"max_recipients": 5}) as gw:
        c = gw.connect("relay")
        c.dialogue([
            (None, "220"),
            ("EHLO client.test", "250"),
            ("MAIL FROM:<a@example.com>", "250 2.1.0"),
        ])

Only loopback addresses are ever used.
"""
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

OMBUD = os.environ.get("OMBUD_BIN", "")
SRCDIR = Path(__file__).resolve().parents[2]
QID_RE = re.compile(r"^[0-9A-Fa-f]{20}$")
QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{20})$")
SANITIZER_RE = re.compile(
    r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|"
    r"SUMMARY: \w+Sanitizer")

# Three listeners cover most tests: submission (STARTTLS + AUTH), smtps
# (implicit TLS + AUTH) and relay (plain, no AUTH, trusts 127.0.0.0/8).
DEFAULT_LISTENERS = {
    "submission": {"tls": "starttls", "auth": "yes"},
    "smtps": {"tls": "implicit", "auth": "yes"},
    "relay": {"tls": "none", "auth": "no",
              "trusted_networks": "127.0.0.0/8"},
}


def need_binary():
    if not OMBUD or not os.access(OMBUD, os.X_OK):
        sys.exit("OMBUD_BIN is not set to an executable ombud binary "
                 f"(got {OMBUD!r})")


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run(args, input=None, timeout=60, cwd=None, check=False, env=None):
    """Run a command, capturing text output."""
    if isinstance(input, str):
        input = input.encode()
    p = subprocess.run(args, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, cwd=cwd,
                       env=env)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


def make_cert(directory, cn="localhost"):
    """Self-signed EC certificate with SAN localhost/127.0.0.1."""
    key = os.path.join(directory, "key.pem")
    cert = os.path.join(directory, "cert.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert], check=True)
    os.chmod(key, 0o600)
    return cert, key


def message(subject="test", body="Hello.\r\n", sender="a@example.com",
            rcpt="b@example.net", headers=()):
    """An RFC 5322 message with CRLF line ends (not dot-stuffed)."""
    h = [f"From: <{sender}>", f"To: <{rcpt}>", f"Subject: {subject}",
         "Message-ID: <%s@test.invalid>" % secrets.token_hex(8)]
    h += list(headers)
    if not body.endswith("\r\n"):
        body += "\r\n"
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


def data_block(msg):
    """Dot-stuff a CRLF message and append the end-of-data line."""
    if isinstance(msg, str):
        msg = msg.encode()
    lines = msg.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                   for l in lines)
    return out + b".\r\n"


class Reply:
    """One SMTP reply: code, lines (text after the code), raw lines."""

    def __init__(self, raw_lines):
        self.raw = raw_lines
        self.code = int(raw_lines[0][:3])
        self.lines = [l[4:] for l in raw_lines]

    @property
    def text(self):
        """First line normalised to 'CODE text' (for prefix matching)."""
        return f"{self.code} {self.lines[0]}".rstrip()

    @property
    def last(self):
        return self.raw[-1]

    def __repr__(self):
        return "Reply(%r)" % ("\\r\\n".join(self.raw),)


class ClosedError(AssertionError):
    pass


class Client:
    """A raw SMTP client: send bytes, read replies, assert codes."""

    def __init__(self, host, port, source=None, timeout=10.0, tls=None,
                 server_hostname="localhost"):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock,
                                            server_hostname=server_hostname)
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.transcript = []

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
            if not data.endswith(b"\n"):
                data += b"\r\n"
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no complete reply line within {timeout}s; have "
                    f"{self.buf!r}; transcript {self.transcript[-6:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError) as e:
                raise ClosedError(f"connection error {e!r} while waiting "
                                  f"for a reply; have {self.buf!r}")
            if not chunk:
                raise ClosedError(
                    f"connection closed while waiting for a reply; have "
                    f"{self.buf!r}; transcript {self.transcript[-6:]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        lines = []
        while True:
            line = self._readline(timeout)
            if not re.match(r"^[2-5]\d\d[ -]", line) and \
                    not re.match(r"^[2-5]\d\d$", line):
                raise AssertionError(f"malformed reply line {line!r}")
            if lines and line[:3] != lines[0][:3]:
                raise AssertionError(f"code changed inside a multi-line "
                                     f"reply: {lines!r} then {line!r}")
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                break
        r = Reply(lines)
        self.transcript.append(("S", r.raw))
        return r

    def expect(self, prefix, timeout=None):
        """Read one reply; assert 'CODE text' starts with prefix."""
        r = self.reply(timeout)
        if not r.text.startswith(prefix):
            raise AssertionError(f"expected a reply starting {prefix!r}, "
                                 f"got {r!r}; transcript "
                                 f"{self.transcript[-6:]!r}")
        return r

    def cmd(self, line, prefix, timeout=None):
        self.send(line)
        return self.expect(prefix, timeout)

    def dialogue(self, steps):
        """steps: (send, expected) pairs.  send is str (a command line,
        CRLF added), bytes (sent as is) or None; expected is a reply
        prefix, a list of prefixes (pipelined replies, in order) or None.
        Returns the replies."""
        out = []
        for send, want in steps:
            if send is not None:
                self.send(send)
            if want is None:
                continue
            for w in ([want] if isinstance(want, str) else want):
                out.append(self.expect(w))
        return out

    def expect_closed(self, timeout=None):
        """Assert the server closes the connection (nothing more sent)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                raise AssertionError(f"data after expected close: "
                                     f"{self.buf!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after "
                                     f"{timeout}s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return
            except ssl.SSLError:
                return
            if not chunk:
                return
            self.buf += chunk

    def expect_silence(self, seconds=0.5):
        """Assert the server sends nothing for a while."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(4096)
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(self.timeout)
        raise AssertionError(f"expected no reply yet, got {chunk!r}")

    def starttls(self, ctx, server_hostname="localhost"):
        if self.buf:
            raise AssertionError(f"unread data before TLS: {self.buf!r}")
        self.sock = ctx.wrap_socket(self.sock,
                                    server_hostname=server_hostname)

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}", "250")
        return [l.split(" ", 1)[0].upper() for l in r.lines[1:]], r

    def submit(self, msg=None, sender="a@example.com",
               rcpts=("b@example.net",)):
        """MAIL/RCPT/DATA; returns the queue id of the 250 reply."""
        self.cmd(f"MAIL FROM:<{sender}>", "250")
        for r in rcpts:
            self.cmd(f"RCPT TO:<{r}>", "250")
        self.cmd("DATA", "354")
        self.send(data_block(msg if msg is not None else message()))
        return queue_id_of(self.expect("250 2.0.0 Ok: queued as "))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def queue_id_of(reply):
    text = reply.last if isinstance(reply, Reply) else reply
    m = QUEUED_RE.match(text)
    if not m:
        raise AssertionError(f"not a 'queued as' reply: {text!r}")
    return m.group(1)


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


class Gateway:
    """One ombud server in its own temporary directory."""

    def __init__(self, overrides=None, listeners=None, log_format=None,
                 serve_args=(), user="alice", password=None,
                 start=True, tmp_prefix="ombudtest-", wrapper=(),
                 env=None, routes=None):
        need_binary()
        self.dir = tempfile.mkdtemp(prefix=tmp_prefix)
        self.user = user
        # a unique password, so that a grep of the log is meaningful
        self.password = password or "Pw-" + secrets.token_hex(10)
        self.overrides = dict(overrides or {})
        self.listeners = {k: dict(v) for k, v in
                          (listeners or DEFAULT_LISTENERS).items()}
        # "[route NAME]" sections: {name: {key: value}}
        self.routes = {k: dict(v) for k, v in (routes or {}).items()}
        self.log_format = log_format
        self.serve_args = list(serve_args)
        self.wrapper = list(wrapper)    # e.g. ["strace", "-f", ...]
        self.env = dict(env or {})
        self.conf_path = os.path.join(self.dir, "ombud.conf")
        self.spool_dir = os.path.join(self.dir, "spool")
        self.run_dir = os.path.join(self.dir, "run")
        self.cred_path = os.path.join(self.dir, "passwd")
        self.proc = None
        self.logs = []
        self.ports = {}
        self.cert, self.key = make_cert(self.dir)
        self.add_user(user, self.password, replace=True)
        self._assign_ports()
        self.write_config()
        if start:
            try:
                self.start()
            except BaseException:
                self.close(failed=True)
                raise

    # --- setup -------------------------------------------------------

    def add_user(self, user, password, replace=False):
        p = run([OMBUD, "passwd", user], input=password + "\n",
                check=True)
        line = p.stdout.strip()
        if not line.startswith(user + ":$argon2id$"):
            raise AssertionError(f"ombud passwd printed {line!r}")
        with open(self.cred_path, "w" if replace else "a") as f:
            f.write(line + "\n")
        os.chmod(self.cred_path, 0o600)

    def _assign_ports(self):
        for name in self.listeners:
            self.ports[name] = free_port()

    def config_text(self, overrides=None, listeners=None):
        g = {
            "hostname": "gw.test",
            "spool_dir": self.spool_dir,
            "run_dir": self.run_dir,
            "store": "sqlite:" + os.path.join(self.dir, "ombud.db"),
            "secret_key_file": os.path.join(self.dir, "secret.key"),
            "credentials": "file:" + self.cred_path,
            "log_level": "info",
            # no delivery unless a test asks for it (delivery = yes), and
            # never a real resolver: port 9 on loopback answers nothing
            "delivery": "no",
            "dns_servers": "127.0.0.1:9",
            # no periodic domain checks: a test that wants them asks
            "domain_check_interval": "0",
        }
        g.update(self.overrides)
        g.update(overrides or {})
        out = ["# written by ombudtest"]
        out += [f"{k} = {v}" for k, v in g.items() if v is not None]
        for name, lc in (listeners or self.listeners).items():
            l = {"address": f"127.0.0.1:{self.ports[name]}"}
            if lc.get("tls", "none") != "none":
                l["tls_cert"] = self.cert
                l["tls_key"] = self.key
            l.update(lc)
            out.append("")
            out.append(f"[listener {name}]")
            out += [f"{k} = {v}" for k, v in l.items() if v is not None]
        for name, rc in self.routes.items():
            out.append("")
            out.append(f"[route {name}]")
            out += [f"{k} = {v}" for k, v in rc.items() if v is not None]
        return "\n".join(out) + "\n"

    def write_config(self, overrides=None, text=None):
        """(Re)write the configuration file; text replaces it verbatim."""
        if text is None:
            text = self.config_text(overrides)
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)

    # --- process -------------------------------------------------------

    def start(self, timeout=30):
        """Start `ombud serve`, wait for event=server.ready."""
        for attempt in range(3):
            log_path = os.path.join(self.dir, f"serve.{len(self.logs)}.log")
            self.logs.append(log_path)
            args = self.wrapper + [OMBUD, "serve", "-c", self.conf_path]
            if self.log_format:
                args.append(f"--log-format={self.log_format}")
            args += self.serve_args
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            env.update(self.env)
            with open(log_path, "wb") as lf:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                    env=env, cwd=self.dir)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = self.log_text()
                if "server.ready" in text:
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            rc = self.proc.poll()
            text = self.log_text()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"ombud not ready in {timeout}s:\n"
                                     f"{text}")
            if re.search(r"cannot listen|Address already in use", text) \
                    and attempt < 2:
                # a port we picked was taken meanwhile: pick new ones
                self._assign_ports()
                self.write_config()
                continue
            raise AssertionError(f"ombud serve exited {rc} at start:\n"
                                 f"{text}")
        raise AssertionError("ombud could not start")

    @property
    def pid(self):
        """The server's pid (with a wrapper: from run_dir/ombud.pid)."""
        if self.wrapper:
            with open(os.path.join(self.run_dir, "ombud.pid")) as f:
                return int(f.read().strip())
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.wrapper:
            os.kill(self.pid, sig)
        else:
            self.proc.send_signal(sig)

    def hup(self):
        self.signal(signal.SIGHUP)

    def stop(self, timeout=60, check=True):
        """SIGTERM and wait; with check, assert exit 0 and a clean log."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"ombud did not exit {timeout}s after "
                                 f"SIGTERM:\n{self.log_tail()}")
        if check:
            self.assert_clean_log()
            if rc != 0:
                raise AssertionError(f"ombud exited {rc} after SIGTERM:\n"
                                     f"{self.log_tail()}")
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.wrapper:            # the server, not only its wrapper
                self._kill_wrapped_server()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def _kill_wrapped_server(self):
        """SIGKILL the server that runs under the wrapper: the pid in
        run_dir/ombud.pid, if that process is the wrapper's child."""
        try:
            pid = self.pid
            with open(f"/proc/{pid}/status") as f:
                ppid = [l.split()[1] for l in f if l.startswith("PPid:")][0]
            if int(ppid) == self.proc.pid:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def close(self, failed=False):
        self.kill9()
        if failed:
            sys.stderr.write(f"--- gateway {self.dir} log tail:\n"
                             f"{self.log_tail(60)}\n")
        if failed and os.environ.get("OMBUD_KEEP_TMP"):
            sys.stderr.write(f"--- kept {self.dir}\n")
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(failed=et is not None)

    # --- log -----------------------------------------------------------

    def log_text(self, all_runs=False):
        paths = self.logs if all_runs else self.logs[-1:]
        out = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "".join(out)

    def log_lines(self, all_runs=False):
        return self.log_text(all_runs).splitlines()

    def log_tail(self, n=40):
        return "\n".join(self.log_lines(all_runs=True)[-n:])

    def wait_log(self, pattern, timeout=10, count=1):
        """Wait until the current log matches regex pattern count times."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = rx.findall(self.log_text())
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"log never matched {pattern!r} "
                                     f"x{count}:\n{self.log_tail()}")
            time.sleep(0.05)

    def assert_clean_log(self):
        text = self.log_text(all_runs=True)
        m = SANITIZER_RE.search(text)
        if m:
            raise AssertionError("sanitizer report in the server log:\n"
                                 + text[max(0, m.start() - 200):][:6000])

    # --- clients ---------------------------------------------------------

    def port(self, listener="relay"):
        return self.ports[listener]

    def tls_context(self):
        """A client context that verifies the gateway's certificate."""
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = True
        return ctx

    def connect(self, listener="relay", source=None, timeout=10.0,
                greeting=True):
        """A raw client; implicit-TLS listeners are wrapped in TLS.
        With greeting, the 220 greeting is read and checked."""
        tls = None
        if self.listeners[listener].get("tls") == "implicit":
            tls = self.tls_context()
        c = Client("127.0.0.1", self.port(listener), source=source,
                   timeout=timeout, tls=tls)
        if greeting:
            c.expect("220 ")
        return c

    def connect_auth(self, listener="submission", mech="PLAIN"):
        """Greeting, EHLO, STARTTLS (if needed), EHLO, AUTH: ready for MAIL."""
        return self.connect_auth_as(self.user, self.password, listener,
                                    mech)

    def connect_auth_as(self, user, password, listener="submission",
                        mech="PLAIN"):
        """connect_auth with another user (e.g. a tenant credential)."""
        c = self.connect(listener)
        c.ehlo()
        if self.listeners[listener].get("tls") == "starttls":
            c.cmd("STARTTLS", "220")
            c.starttls(self.tls_context())
            c.ehlo()
        if mech == "PLAIN":
            c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}"),
                  "235 2.7.0")
        else:
            c.cmd("AUTH LOGIN", "334")
            c.cmd(b64(user), "334")
            c.cmd(b64(password), "235 2.7.0")
        return c

    # --- CLI -------------------------------------------------------------

    def ombud(self, *args, input=None, timeout=60):
        return run([OMBUD] + list(args), input=input, timeout=timeout,
                   cwd=self.dir)

    def queue_list(self):
        """`ombud queue list --json` as a list of dicts."""
        p = self.ombud("queue", "list", "-c", self.conf_path, "--json")
        if p.returncode != 0:
            raise AssertionError(f"queue list exited {p.returncode}: "
                                 f"{p.stderr}")
        try:
            data = json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError(f"queue list --json is not JSON ({e}): "
                                 f"{p.stdout[:2000]!r}")
        if not isinstance(data, list):
            raise AssertionError(f"queue list --json: not a list: {data!r}")
        return data

    def queue_ids(self):
        ids = [e["id"] for e in self.queue_list()]
        if len(ids) != len(set(ids)):
            raise AssertionError("duplicate ids in queue list")
        return set(ids)

    def queue_show(self, qid):
        """`ombud queue show ID --json` as a dict (with content)."""
        p = self.ombud("queue", "show", "-c", self.conf_path, qid, "--json")
        if p.returncode != 0:
            raise AssertionError(f"queue show {qid} exited "
                                 f"{p.returncode}: {p.stderr}")
        return json.loads(p.stdout)


class GatewayTestCase(unittest.TestCase):
    """TestCase whose gateways are killed (and logs shown on failure)."""

    def gateway(self, *a, **kw):
        gw = Gateway(*a, **kw)
        self.addCleanup(self._close_gateway, gw)
        return gw

    def _close_gateway(self, gw):
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not outcome.success
        if not failed and gw.running():
            # a passing test must also shut down cleanly (ASan, exit 0)
            try:
                gw.stop()
            except AssertionError:
                gw.close(failed=True)
                raise
        gw.close(failed=failed)

    def client(self, gw, *a, **kw):
        c = gw.connect(*a, **kw)
        self.addCleanup(c.close)
        return c


def main():
    need_binary()
    unittest.main(verbosity=2)
