#!/usr/bin/python3
# rfc7208.py - runs the RFC 7208 test suite (python3-spf's
# rfc7208-tests.yml) against ombud's spf_check().
#
# What it does: for each scenario, serves its zone data from a DNS
# responder on 127.0.0.1 (TXT, A, AAAA, MX, PTR, CNAME; SPF records copied
# to TXT when the name has no TXT, as the suite asks of drivers; TIMEOUT by
# not answering), feeds every test case to the spf_run program and
# compares its result with the expected one(s), and the explanation when
# one is expected ("DEFAULT" = no exp).  Fails if fewer cases pass than
# PASS_MIN.
#
# Must never: answer anywhere but on loopback.
import gzip, socket, subprocess, sys, threading
import yaml
import dns.message, dns.rrset, dns.rcode, dns.rdatatype, dns.flags

PASS_MIN = 193
SUITE = '/usr/share/doc/python3-spf/rfc7208-tests.yml.gz'


def load_zone(zd):
    zone = {}
    for name, rrs in zd.items():
        recs, gen, txt = [], True, []
        for rr in rrs:
            if rr == 'TIMEOUT':
                recs.append(('TIMEOUT', None))
                continue
            for t, v in rr.items():
                if t in ('TXT', 'SPF') and isinstance(v, str):
                    v = [v]
                if t == 'TXT':
                    gen = False
                elif t == 'SPF' and gen:
                    txt.append(('TXT', v))
                if v != ['NONE']:
                    recs.append((t, v))
        if gen:
            recs += txt
        zone[name.lower().rstrip('.')] = recs
    return zone


def txt_quote(strings):
    out = []
    for s in strings:
        b = s.encode('utf-8')
        out.append('"' + ''.join(chr(c) if 32 <= c < 127 and chr(c) not in '"\\'
                                 else '\\%03d' % c for c in b) + '"')
    return ' '.join(out)


def answer(zone, q):
    qname = q.question[0].name.to_text().rstrip('.').lower()
    qtype = dns.rdatatype.to_text(q.question[0].rdtype)
    resp = dns.message.make_response(q)
    resp.flags |= dns.flags.AA
    name = qname
    for depth in range(2):
        if name not in zone:
            if depth == 0:
                if name.startswith('error.'):
                    return None
                resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp
        seen, cname = False, None
        for t, v in zone[name]:
            if t == 'TIMEOUT':
                if not seen:
                    return None
                continue
            if t == qtype:
                seen = True
                if v == 'TIMEOUT':
                    return None
            if t == 'CNAME' and qtype != 'CNAME':
                cname = v
            if t != qtype:
                continue
            if t in ('TXT', 'SPF'):
                rd = txt_quote(v)
            elif t == 'MX':
                rd = '%d %s.' % (v[0], v[1].rstrip('.'))
            elif t in ('PTR', 'CNAME'):
                rd = v.rstrip('.') + '.'
            else:
                rd = v
            try:
                resp.answer.append(dns.rrset.from_text(name + '.', 60, 'IN',
                                                       t, rd))
            except Exception:
                pass
        if cname is None or resp.answer:
            return resp
        resp.answer.append(dns.rrset.from_text(name + '.', 60, 'IN',
                                               'CNAME', cname.rstrip('.') + '.'))
        name = cname.rstrip('.').lower()
    return resp


class Server:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.zone = {}
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            data, peer = self.sock.recvfrom(4096)
            try:
                q = dns.message.from_wire(data)
                r = answer(self.zone, q)
            except Exception as e:
                print('responder:', e, file=sys.stderr)
                continue
            if r is not None:
                self.sock.sendto(r.to_wire(max_size=65535), peer)


def main():
    prog = sys.argv[1]
    docs = list(yaml.safe_load_all(gzip.open(SUITE, 'rt')))
    srv = Server()
    npass = total = 0
    for doc in docs:
        srv.zone = load_zone(doc.get('zonedata') or {})
        names = list(doc['tests'])
        lines = ''.join('%s\t%s\t%s\n' % (doc['tests'][n]['host'],
                        doc['tests'][n]['mailfrom'], doc['tests'][n]['helo'])
                        for n in names)
        out = subprocess.run([prog, '127.0.0.1:%d' % srv.port], input=lines,
                             capture_output=True, text=True, timeout=120)
        got = out.stdout.splitlines()
        for i, n in enumerate(names):
            tc = doc['tests'][n]
            total += 1
            want = tc['result'] if isinstance(tc['result'], list) else [tc['result']]
            res, reason, exp = (got[i].split('\t') + ['', '', ''])[:3] \
                if i < len(got) else ('crash', out.stderr[-300:], '')
            ok = res in want
            if ok and 'explanation' in tc and res == 'fail':
                wexp = tc['explanation']
                ok = (exp == '') if wexp == 'DEFAULT' else exp == wexp
            if ok:
                npass += 1
            else:
                print('FAIL %s/%s: want %s (%s) got %s: %s [%s]' % (
                    doc['description'], n, want, tc.get('explanation', ''),
                    res, reason, exp))
    print('rfc7208 suite: %d/%d passed (minimum %d)' % (npass, total, PASS_MIN))
    return 0 if npass >= PASS_MIN else 1


if __name__ == '__main__':
    sys.exit(main())
