"""peer.py MODE FD TRANSCRIPT - scripted SMTP peers for test_mta_client.

Serves one connection on the listening socket inherited as file
descriptor FD (made by the C test on 127.0.0.1: loopback only), then
exits.  Every line received is appended to TRANSCRIPT as it came (bytes,
CRLF kept), so the test can check exactly what the client sent.  Used
where smtp-sink and ombud cannot play the part:

  xoauth2       offers AUTH XOAUTH2 (no TLS: the client runs tls = none);
                235 for the token "tok-good", else a 334 error challenge
                and 535 after the client's empty answer
  login         offers only AUTH LOGIN; 235 for alice / s3cret
  clear-auth    offers AUTH PLAIN but no STARTTLS
  strict-pipe   offers PIPELINING and replies to nothing of a
                transaction until MAIL, every RCPT and DATA are in
  utf8          offers SMTPUTF8
  bad-reply     answers EHLO with a code that changes inside the reply
  long-line     answers EHLO with a 5000 byte line
  tls-inject    answers STARTTLS with 220 and, in the same write, a 250
                that a man in the middle could have added
  tls-garbage   answers STARTTLS with 220, then sends no TLS but text
  tls-refused   answers STARTTLS with 454 (and serves on in the clear)
  idle-close    after the first message: 421 and close while idle
  early-reject  answers DATA with 354, then 554 after the first bytes of
                content, and stops reading
"""
import base64
import socket
import sys
import time

mode, fd, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lsock = socket.socket(fileno=fd)
conn, _ = lsock.accept()
lsock.close()
conn.settimeout(20)
log = open(path, "ab", buffering=0)
buf = b""


def send(*lines):
    conn.sendall(b"".join(l.encode() + b"\r\n" for l in lines))


def readline():
    global buf
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    log.write(line + b"\n")
    return line.rstrip(b"\r").decode("utf-8", "replace")


def ehlo_reply(extra):
    send(*(["250-peer.test"] + ["250-" + e for e in extra[:-1]] +
           ["250 " + extra[-1]]))


def read_data():
    """Content up to the dot, logged as it came."""
    while readline() != ".":
        pass


EXT = {
    "xoauth2": ["PIPELINING", "AUTH XOAUTH2"],
    "login": ["AUTH LOGIN"],
    "clear-auth": ["AUTH PLAIN"],
    "strict-pipe": ["PIPELINING", "8BITMIME", "SIZE 1000000"],
    "utf8": ["PIPELINING", "SMTPUTF8", "8BITMIME"],
    "tls-inject": ["STARTTLS"],
    "tls-garbage": ["STARTTLS"],
    "tls-refused": ["PIPELINING", "STARTTLS"],
    "idle-close": ["PIPELINING"],
    "early-reject": ["PIPELINING"],
}


def transaction_plain(first):
    """One MAIL..dot, one command at a time; first is the MAIL line."""
    send("250 2.1.0 Ok")
    while True:
        line = readline()
        if line.upper().startswith("RCPT"):
            send("250 2.1.5 Ok")
        elif line.upper() == "DATA":
            if mode == "early-reject":
                send("354 go")
                conn.recv(1)
                send("554 5.6.0 Content refused")
                time.sleep(2)
                return False
            send("354 go")
            read_data()
            send("250 2.0.0 Ok: queued")
            return True
        else:
            send("503 5.5.1 unexpected")


def strict_pipe(first):
    """Wait until MAIL, the RCPTs and DATA are all in before replying."""
    lines = [first]
    conn.settimeout(3)
    while lines[-1].upper() != "DATA":
        lines.append(readline())
    conn.settimeout(20)
    replies = ["250 2.1.0 Ok"] + ["250 2.1.5 Ok"] * (len(lines) - 2)
    send(*(replies + ["354 go"]))
    read_data()
    send("250 2.0.0 Ok: queued")


def main():
    send("220 peer.test ESMTP scripted")
    messages = 0
    while True:
        line = readline()
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            if mode == "bad-reply":
                send("250-peer.test", "251 PIPELINING")
                continue
            if mode == "long-line":
                send("250-" + "x" * 5000, "250 PIPELINING")
                continue
            ehlo_reply(EXT.get(mode, ["PIPELINING"]))
        elif verb == "HELO":
            send("250 peer.test")
        elif verb == "STARTTLS":
            if mode == "tls-refused":
                send("454 4.7.0 TLS not available")
                continue
            if mode == "tls-garbage":
                send("220 2.0.0 go")
                time.sleep(0.2)
                send("this is no TLS record")
                time.sleep(0.5)
                return
            send("220 2.0.0 go", "250 injected")
            return
        elif verb == "AUTH":
            mech = line.split(" ")[1].upper()
            if mech == "XOAUTH2":
                raw = base64.b64decode(line.split(" ")[2])
                if raw.endswith(b"auth=Bearer tok-good\x01\x01"):
                    send("235 2.7.0 Accepted")
                else:
                    send("334 eyJzdGF0dXMiOiI0MDEifQ==")
                    readline()
                    send("535 5.7.8 Username and Password not accepted")
            elif mech == "LOGIN":
                send("334 VXNlcm5hbWU6")
                u = base64.b64decode(readline())
                send("334 UGFzc3dvcmQ6")
                p = base64.b64decode(readline())
                if (u, p) == (b"alice", b"s3cret"):
                    send("235 2.7.0 Accepted")
                else:
                    send("535 5.7.8 Bad credentials")
            else:
                send("235 2.7.0 Accepted")
        elif verb == "MAIL":
            if mode == "strict-pipe":
                strict_pipe(line)
                messages += 1
            elif transaction_plain(line):
                messages += 1
            else:
                return
            if mode == "idle-close":
                time.sleep(0.3)
                send("421 4.4.2 Idle timeout, closing")
                return
        elif verb == "RSET":
            send("250 2.0.0 Ok")
        elif verb == "QUIT":
            send("221 2.0.0 Bye")
            return
        else:
            send("502 5.5.1 what?")


try:
    main()
except (EOFError, ConnectionError, socket.timeout):
    pass
finally:
    conn.close()
