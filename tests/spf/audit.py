#!/usr/bin/python3
# audit.py - spf_audit() and `ombud spf platform-record` / `ombud spf
# check` against zones served on loopback by rfc7208.py's responder.
#
# What it does: audits customer domains (the platform include missing,
# present directly or nested, two records, +all, more than 10 lookups
# after the include, no record) with spf_audit_run; publishes the
# platform record that `ombud spf platform-record` makes for many egress
# addresses (chained records), checks its shape, and has `ombud spf
# check` and the audit pass every egress address through it.
#
# Must never: answer or ask anywhere but on loopback.
import json, os, subprocess, sys, tempfile, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rfc7208  # noqa: E402

AUDIT = sys.argv[1] if len(sys.argv) > 1 else None
OMBUD = sys.argv[2] if len(sys.argv) > 2 else None
PLATFORM = '_spf.platform.test'
EGRESS = ['192.0.2.10', '2001:db8::10']
# a configuration needs a listener (never started here)
LISTENER = ('[listener local]\naddress = 127.0.0.1:2525\nauth = no\n'
            'trusted_networks = 127.0.0.1/32\n')

ZONE = {
    PLATFORM: [{'TXT': 'v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all'}],
    'missing.test': [{'TXT': 'v=spf1 ip4:198.51.100.1 -all'}],
    'good.test': [{'TXT': 'v=spf1 include:%s -all' % PLATFORM},
                  {'TXT': 'google-site-verification=x'}],
    'nested.test': [{'TXT': 'v=spf1 include:mid.test ~all'}],
    'mid.test': [{'TXT': 'v=spf1 a include:%s -all' % PLATFORM},
                 {'A': '198.51.100.7'}],
    'two.test': [{'TXT': 'v=spf1 include:%s -all' % PLATFORM},
                 {'TXT': 'v=spf1 -all'}],
    'plusall.test': [{'TXT': 'v=spf1 include:%s +all' % PLATFORM}],
    'many.test': [{'TXT': 'v=spf1 include:%s ' % PLATFORM +
                   ' '.join('a:h%d.many.test' % i for i in range(10)) +
                   ' -all'}],
    'none.test': [{'A': '198.51.100.9'}],
    'loop.test': [{'TXT': 'v=spf1 include:loop.test include:%s -all'
                   % PLATFORM}],
}


class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rfc7208.Server()
        cls.srv.zone = rfc7208.load_zone(ZONE)
        cls.dns = '127.0.0.1:%d' % cls.srv.port

    def audit(self, domain, include=PLATFORM, egress=EGRESS):
        out = subprocess.run([AUDIT, self.dns, domain, include] + egress,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_missing_include(self):
        a = self.audit('missing.test')
        self.assertEqual(a['nrecords'], 1)
        self.assertFalse(a['include_found'])
        self.assertFalse(a['ok'])
        self.assertIn('include:%s is missing' % PLATFORM, a['findings'])
        self.assertEqual([e['result'] for e in a['egress']],
                         ['fail', 'fail'])
        self.assertIn('192.0.2.10: fail (-all matched in missing.test)',
                      a['findings'])

    def test_include_present(self):
        a = self.audit('good.test')
        self.assertTrue(a['ok'], a)
        self.assertTrue(a['include_found'])
        self.assertEqual(a['record'], 'v=spf1 include:%s -all' % PLATFORM)
        self.assertEqual(a['lookups'], 1)
        self.assertEqual(a['findings'], [])
        self.assertEqual([e['result'] for e in a['egress']],
                         ['pass', 'pass'])

    def test_nested_include(self):
        a = self.audit('nested.test')
        self.assertTrue(a['ok'], a)
        self.assertTrue(a['include_found'])
        self.assertEqual(a['lookups'], 3)    # include, a, include

    def test_two_records(self):
        a = self.audit('two.test')
        self.assertEqual(a['nrecords'], 2)
        self.assertFalse(a['ok'])
        self.assertIn('2 SPF records at two.test: permerror',
                      a['findings'])
        self.assertEqual(a['egress'][0]['result'], 'permerror')

    def test_plus_all(self):
        a = self.audit('plusall.test')
        self.assertTrue(a['all_pass'])
        self.assertFalse(a['ok'])
        self.assertIn('+all authorises the whole Internet', a['findings'])
        # the egress addresses themselves pass
        self.assertEqual([e['result'] for e in a['egress']],
                         ['pass', 'pass'])

    def test_too_many_lookups(self):
        a = self.audit('many.test')
        self.assertEqual(a['lookups'], 11)
        self.assertIn('too many DNS lookups (11 > 10): permerror',
                      a['findings'])
        # the include comes first: the platform's addresses still pass
        self.assertEqual([e['result'] for e in a['egress']],
                         ['pass', 'pass'])
        self.assertTrue(a['include_found'])

    def test_no_record(self):
        a = self.audit('none.test')
        self.assertEqual(a['nrecords'], 0)
        self.assertIsNone(a['record'])
        self.assertFalse(a['ok'])
        self.assertEqual(a['findings'][0], 'no SPF record at none.test')
        self.assertEqual([e['result'] for e in a['egress']],
                         ['none', 'none'])

    def test_loop(self):
        a = self.audit('loop.test')
        self.assertTrue(a['lookups_partial'])
        self.assertTrue(a['include_found'])
        self.assertEqual(a['egress'][0]['result'], 'permerror')
        self.assertFalse(a['ok'])

    def test_platform_record(self):
        egress = ['192.0.2.%d' % i for i in range(1, 25)] + \
                 ['2001:db8:%x::1/48' % i for i in range(1, 20)] + \
                 ['198.51.100.77/24']
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, 'ombud.conf')
            with open(conf, 'w') as f:
                f.write('dns_servers = %s\negress_addresses = %s\n'
                        'spf_domain = spf.platform2.test\n%s'
                        % (self.dns, ', '.join(egress), LISTENER))
            out = subprocess.run([OMBUD, 'spf', 'platform-record',
                                  '--json', '-c', conf],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            pr = json.loads(out.stdout)
            self.assertEqual(pr['include'], 'include:spf.platform2.test')
            recs = pr['records']
            self.assertGreater(len(recs), 1)
            self.assertEqual(pr['lookups'], len(recs))
            self.assertEqual(recs[0]['name'], 'spf.platform2.test')
            self.assertEqual(recs[1]['name'], '_spf1.spf.platform2.test')
            text = ' '.join(r['txt'] for r in recs)
            self.assertIn('ip4:198.51.100.0/24', text)
            self.assertIn('ip6:2001:db8:13::/48', text)
            for r in recs:
                self.assertLessEqual(len(r['txt']), 450)
                self.assertTrue(all(len(s) <= 255 for s in r['strings']))
                self.assertEqual(''.join(r['strings']), r['txt'])
                self.assertTrue(r['txt'].startswith('v=spf1 '))
                self.assertTrue(r['txt'].endswith(' -all'))
            zone = dict(ZONE)
            for r in recs:
                zone[r['name']] = [{'TXT': r['strings']}]
            zone['cust.test'] = [{'TXT': 'v=spf1 mx include:'
                                  'spf.platform2.test -all'}]
            self.srv.zone = rfc7208.load_zone(zone)
            try:
                probe = ['192.0.2.24', '2001:db8:13:ffff::5',
                         '198.51.100.200']
                for ip in probe:
                    out = subprocess.run(
                        [OMBUD, 'spf', 'check', '--ip', ip, '--sender',
                         'x@cust.test', '--json', '-c', conf],
                        capture_output=True, text=True, timeout=60)
                    self.assertEqual(out.returncode, 0, out.stderr)
                    r = json.loads(out.stdout)
                    self.assertEqual(r['result'], 'pass', r)
                    self.assertLessEqual(r['lookups'], 10)
                a = self.audit('cust.test', 'spf.platform2.test', probe)
                self.assertTrue(a['ok'], a)
                self.assertEqual(a['lookups'], 1 + 1 + len(recs) - 1)
                out = subprocess.run(
                    [OMBUD, 'spf', 'check', '--ip', '203.0.113.1',
                     '--sender', '', '--helo', 'cust.test', '-c', conf],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn('result: fail\n', out.stdout)
                self.assertIn('identity: helo postmaster@cust.test',
                              out.stdout)
                self.assertIn('-all: match', out.stdout)
            finally:
                self.srv.zone = rfc7208.load_zone(ZONE)

    def test_cli_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, 'ombud.conf')
            with open(conf, 'w') as f:
                f.write('dns_servers = %s\n%s' % (self.dns, LISTENER))
            out = subprocess.run([OMBUD, 'spf', 'platform-record', '-c',
                                  conf], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1)
            self.assertIn('spf_domain and egress_addresses is not set',
                          out.stderr)
            for args in (['--ip', 'nope', '--sender', 'a@b.test'],
                         ['--ip', '192.0.2.1'],
                         ['--ip', '192.0.2.1', '--sender', ''],
                         ['--ip', '192.0.2.1', '--sender', 'a@b.test',
                          '--bogus', 'x']):
                out = subprocess.run([OMBUD, 'spf', 'check', '-c', conf] +
                                     args, capture_output=True, text=True)
                self.assertEqual(out.returncode, 2, (args, out.stderr))


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0], '-v'])
