"""Outgoing HTTP/1.x under the shim: real programs (curl, python3 urllib and
http.client, a C client with non-blocking sockets) against a recording server
and the OTLP receiver. Every span field is checked, and the bytes the server
receives are compared with a run of the same program without the shim: they
differ only by the injected lines."""

import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpServer, Response, run_under_shim, strip_injected,
    TRACEPARENT, attrs, find_span, SPAN_KIND_CLIENT, STATUS_ERROR, STATUS_UNSET)

PY = '/usr/bin/python3'
TP_LINE = re.compile(rb'^traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$')
T = '4bf92f3577b34da6a3ce929d0e0e4736'
P = '00f067aa0ba902b7'


def head_lines(wire):
    return wire.split(b'\r\n\r\n', 1)[0].split(b'\r\n')


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.receiver = OtlpReceiver().start()
        cls.server = RecordingHttpServer(body=b'{"ok":true}\n').start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.receiver.stop()

    def setUp(self):
        self.receiver.clear()
        self.server.clear()

    def run_both(self, argv, env=None, **kw):
        """Run argv without and with the shim; return (plain wire, shim wire, result)."""
        base = run_under_shim(argv, env_extra=env, preload=False, check=True, **kw)
        self.server.wait_for_closed()
        plain = b''.join(self.server.connections())
        self.server.clear()
        res = run_under_shim(argv, env_extra=env, receiver=self.receiver, check=True, **kw)
        self.server.wait_for_closed()
        wire = b''.join(self.server.connections())
        self.assertEqual(base.stdout, res.stdout, 'program output changed under the shim')
        return plain, wire, res


class CurlTest(Base):
    def test_get_span_fields_and_wire_bytes(self):
        url = self.server.url + '/users/12345/orders?color=blue&sig=s3cr3t'
        argv = ['curl', '-s', '-H', 'User-Agent: otelshim-test/1.0', url]
        plain, wire, res = self.run_both(argv, env={'OTEL_SERVICE_NAME': 'llm.curl-test'})
        self.assertEqual(res.stderr, b'')

        # Only the injected line differs. libcurl's own level adds it to the
        # program's header list, which libcurl sends after its own headers: it is
        # the head's last line.
        self.assertEqual(strip_injected(wire), plain)
        lines = head_lines(wire)
        self.assertTrue(lines[0].startswith(b'GET /users/12345/orders?'))
        m = TP_LINE.match(lines[-1])
        self.assertIsNotNone(m, lines[-1])
        self.assertEqual(len(wire), len(plain) + len(lines[-1]) + 2)

        (s,) = self.receiver.wait_for_spans(1)
        a = attrs(s)
        self.assertEqual(s['name'], 'GET /users/{id}/orders')
        self.assertEqual(s['kind'], SPAN_KIND_CLIENT)
        self.assertEqual(s['trace_id'], m.group(1).decode())
        self.assertEqual(s['span_id'], m.group(2).decode())
        self.assertEqual(s['parent_span_id'], '')
        self.assertEqual(s['flags'], 0x101)
        self.assertEqual(s['status']['code'], STATUS_UNSET)
        port = self.server.port
        self.assertEqual(a['http.request.method'], 'GET')
        self.assertEqual(a['url.full'], 'http://127.0.0.1:%d/users/12345/orders?color=blue&sig=REDACTED' % port)
        self.assertEqual(a['url.scheme'], 'http')
        self.assertEqual(a['url.path'], '/users/12345/orders')
        self.assertEqual(a['server.address'], '127.0.0.1')
        self.assertEqual(a['server.port'], port)
        self.assertEqual(a['network.peer.address'], '127.0.0.1')
        self.assertEqual(a['network.peer.port'], port)
        self.assertEqual(a['network.protocol.version'], '1.1')
        self.assertEqual(a['http.response.status_code'], 200)
        self.assertEqual(a['http.response.body.size'], len(b'{"ok":true}\n'))
        self.assertEqual(a['user_agent.original'], 'otelshim-test/1.0')
        self.assertNotIn('error.type', a)
        self.assertGreater(s['end_time_unix_nano'], s['start_time_unix_nano'])
        self.assertGreater(s['start_time_unix_nano'], 1_600_000_000 * 10**9)

        r = s['resource']
        self.assertEqual(r['service.name'], 'llm.curl-test')
        self.assertEqual(r['service.version'], 'unknown')
        self.assertEqual(r['deployment.environment'], 'development')
        self.assertEqual(r['deployment.environment.name'], 'development')
        self.assertEqual(r['service.namespace'], 'llm-devops')
        self.assertEqual(r['telemetry.sdk.name'], 'otelshim')
        self.assertEqual(r['process.executable.name'], 'curl')
        self.assertEqual(r['process.command'], 'curl')  # never the arguments (credentials)
        self.assertIsInstance(r['process.pid'], int)
        self.assertRegex(r['service.instance.id'], r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
        self.assertEqual(s['scope']['name'], 'otelshim')

    def test_service_name_derived_from_executable(self):
        run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + '/'],
                       receiver=self.receiver, check=True)
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['resource']['service.name'], 'llm.curl')

    def test_env_carrier_parent_tracestate_baggage(self):
        env = {'TRACEPARENT': '00-%s-%s-01' % (T, P), 'TRACESTATE': 'vendor=abc',
               'BAGGAGE': 'user_id=u-1,tenant_id=t-9'}
        plain, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', self.server.url + '/a'], env=env)
        self.assertEqual(strip_injected(wire), plain)
        lines = head_lines(wire)
        m = TP_LINE.match(lines[-3])
        self.assertEqual(m.group(1).decode(), T)
        self.assertEqual(lines[-2], b'tracestate: vendor=abc')
        self.assertEqual(lines[-1], b'baggage: user_id=u-1,tenant_id=t-9')
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['trace_id'], T)
        self.assertEqual(s['parent_span_id'], P)
        self.assertEqual(s['span_id'], m.group(2).decode())
        self.assertEqual(s['flags'], 0x301)  # sampled, parent is remote
        self.assertEqual(s['trace_state'], 'vendor=abc')

    def test_env_carrier_unsampled_parent(self):
        env = {'TRACEPARENT': '00-%s-%s-00' % (T, P)}
        _, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', self.server.url + '/a'], env=env)
        m = TP_LINE.match(head_lines(wire)[-1])
        self.assertEqual(m.group(1).decode(), T)
        self.assertEqual(m.group(3), b'00')
        self.assertEqual(self.receiver.spans(), [])  # exit flushed: nothing was recorded

    def test_app_traceparent_is_kept_and_parents_the_span(self):
        tp = '00-%s-%s-01' % (T, P)
        plain, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', '-H', 'TraceParent: ' + tp,
                                        '-H', 'tracestate: app=1', self.server.url + '/b'])
        self.assertEqual(wire, plain)  # nothing injected at all
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['trace_id'], T)
        self.assertEqual(s['parent_span_id'], P)
        self.assertEqual(s['trace_state'], 'app=1')

    def test_app_invalid_traceparent_unchanged_root_span(self):
        plain, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', '-H',
                                        'traceparent: 00-%s-%s-01' % (T.upper(), P), self.server.url + '/c'])
        self.assertEqual(wire, plain)
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['parent_span_id'], '')
        self.assertNotEqual(s['trace_id'], T.lower())

    def test_error_statuses(self):
        for code in (404, 500):
            self.receiver.clear()
            run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + '/status/%d' % code],
                           receiver=self.receiver, check=True)
            (s,) = self.receiver.wait_for_spans(1)
            a = attrs(s)
            self.assertEqual(s['name'], 'GET /status/{id}')
            self.assertEqual(a['http.response.status_code'], code)
            self.assertEqual(a['error.type'], str(code))
            self.assertEqual(s['status']['code'], STATUS_ERROR)

    def test_connection_refused_same_exit_and_an_error_span(self):
        base = run_under_shim(['curl', '-s', 'http://127.0.0.1:9/'], preload=False)
        res = run_under_shim(['curl', '-s', 'http://127.0.0.1:9/'], receiver=self.receiver)
        self.assertEqual(base.returncode, res.returncode)
        self.assertEqual(base.stdout, res.stdout)
        # The libcurl level sees the failed transfer (the socket level saw no request).
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(attrs(s)['error.type'], 'CURLE_COULDNT_CONNECT')
        self.assertEqual(s['status']['code'], STATUS_ERROR)

    def test_head_request_and_keepalive_several_urls(self):
        u = self.server.url
        run_under_shim(['curl', '-s', '-o', '/dev/null', '-I', u + '/h'], receiver=self.receiver, check=True)
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['name'], 'HEAD /h')
        self.receiver.clear()
        self.server.clear()
        run_under_shim(['curl', '-s', '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null',
                        u + '/k1', u + '/k2', u + '/k3'], receiver=self.receiver, check=True)
        spans = self.receiver.wait_for_spans(3)
        self.assertEqual(sorted(s['name'] for s in spans), ['GET /k1', 'GET /k2', 'GET /k3'])
        self.assertEqual(len([c for c in self.server.connections() if c]), 1, 'curl reused one connection')
        self.assertEqual(len({s['span_id'] for s in spans}), 3)
        self.assertEqual(len({s['trace_id'] for s in spans}), 3)
        for req in self.server.requests():
            self.assertEqual(len(req.headers['traceparent']), 1)

    def test_exporter_traffic_is_not_traced(self):
        run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + '/x'], receiver=self.receiver,
                       env_extra={'OTEL_BSP_SCHEDULE_DELAY': '10'}, check=True)
        spans = self.receiver.wait_for_spans(1)
        self.assertEqual(len(spans), 1)
        self.assertTrue(all(attrs(s)['server.port'] == self.server.port for s in spans))
        for req in self.receiver.requests():
            self.assertNotIn('traceparent', req['headers'])


class SamplingTest(Base):
    def test_always_off_still_propagates_flag_00(self):
        _, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', self.server.url + '/s'],
                                   env={'OTEL_TRACES_SAMPLER': 'always_off'})
        m = TP_LINE.match(head_lines(wire)[-1])
        self.assertEqual(m.group(3), b'00')
        self.assertEqual(self.receiver.spans(), [])

    def test_traceidratio_zero_and_parentbased(self):
        env = {'OTEL_TRACES_SAMPLER': 'parentbased_traceidratio', 'OTEL_TRACES_SAMPLER_ARG': '0',
               'TRACEPARENT': '00-%s-%s-01' % (T, P)}
        _, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', self.server.url + '/s'], env=env)
        self.assertEqual(TP_LINE.match(head_lines(wire)[-1]).group(3), b'01')  # parent sampled wins
        self.assertEqual(len(self.receiver.wait_for_spans(1)), 1)
        self.receiver.clear()
        env.pop('TRACEPARENT')
        _, wire, _ = self.run_both(['curl', '-s', '-o', '/dev/null', self.server.url + '/s'], env=env)
        self.assertEqual(TP_LINE.match(head_lines(wire)[-1]).group(3), b'00')  # root at ratio 0
        self.assertEqual(self.receiver.spans(), [])

    def test_sdk_disabled_is_pure_passthrough(self):
        plain, wire, res = self.run_both(['curl', '-s', self.server.url + '/d'],
                                         env={'OTEL_SDK_DISABLED': 'true'})
        self.assertEqual(wire, plain)
        self.assertEqual(res.stderr, b'')
        self.assertEqual(self.receiver.spans(), [])


class PythonClientTest(Base):
    def test_urllib_get_and_100k_post(self):
        script = (
            'import urllib.request,sys\n'
            'u=sys.argv[1]\n'
            'print(urllib.request.urlopen(u+"/get/abc").read().decode().strip())\n'
            'data=bytes((i*31)%%251 for i in range(%d))\n'
            'r=urllib.request.Request(u+"/post",data=data,method="POST",headers={"Content-Type":"application/octet-stream"})\n'
            'print(urllib.request.urlopen(r).status)\n' % (100 * 1024))
        plain, wire, res = self.run_both([PY, '-c', script, self.server.url])
        self.assertEqual(strip_injected(wire), plain)
        self.assertEqual(res.stdout, b'{"ok":true}\n200\n')
        reqs = self.server.requests()
        self.assertEqual(len(reqs[-1].body), 100 * 1024)
        spans = self.receiver.wait_for_spans(2)
        get = find_span(spans, name='GET /get/abc')
        post = find_span(spans, name='POST /post')
        self.assertEqual(attrs(post)['http.request.body.size'], 100 * 1024)
        self.assertEqual(attrs(post)['http.response.status_code'], 200)
        self.assertTrue(attrs(get)['user_agent.original'].startswith('Python-urllib/'))
        self.assertEqual(get['resource']['process.executable.name'][:6], 'python')

    def test_http_client_keepalive_chunked_post(self):
        script = (
            'import http.client,sys\n'
            'c=http.client.HTTPConnection("127.0.0.1",int(sys.argv[1]))\n'
            'for i in range(3):\n'
            '    c.request("GET","/item/%d"%i); c.getresponse().read()\n'
            'def gen():\n'
            '    yield b"hello "\n'
            '    yield b"traceparent: not-a-header\\r\\n\\r\\n"\n'
            'c.request("POST","/chunked",body=gen(),encode_chunked=True); r=c.getresponse(); r.read()\n'
            'print(r.status)\n')
        plain, wire, res = self.run_both([PY, '-c', script, str(self.server.port)])
        self.assertEqual(strip_injected(wire), plain)
        self.assertIn(b'traceparent: not-a-header', wire)  # body bytes untouched
        self.assertEqual(wire.count(b'\r\ntraceparent: 00-'), 4)
        spans = self.receiver.wait_for_spans(4)
        names = sorted(s['name'] for s in spans)
        self.assertEqual(names, ['GET /item/{id}', 'GET /item/{id}', 'GET /item/{id}', 'POST /chunked'])
        post = find_span(spans, name='POST /chunked')
        self.assertEqual(attrs(post)['http.request.body.size'], len(b'hello traceparent: not-a-header\r\n\r\n'))


class ResponseFramingTest(unittest.TestCase):
    """Each framing the client must follow to find where a response ends."""

    def check(self, framing, body, path='/f', method='GET', expect_size=None):
        with OtlpReceiver() as receiver, RecordingHttpServer(body=body, framing=framing) as server:
            argv = ['curl', '-s', '-o', '/dev/null'] + (['-I'] if method == 'HEAD' else []) + [server.url + path]
            run_under_shim(argv, receiver=receiver, check=True)
            (s,) = receiver.wait_for_spans(1)
            a = attrs(s)
            self.assertEqual(a['http.response.status_code'], 200 if path == '/f' else int(path.rsplit('/', 1)[1]))
            if expect_size is not None:
                self.assertEqual(a['http.response.body.size'], expect_size)
            return s

    def test_chunked_response(self):
        self.check('chunked', b'x' * 5000, expect_size=5000)

    def test_close_delimited_response(self):
        self.check('close', b'y' * 3000, expect_size=3000)

    def test_no_content_and_not_modified(self):
        self.check('length', b'', path='/status/204', expect_size=0)
        self.check('length', b'', path='/status/304', expect_size=0)

    def test_head(self):
        s = self.check('length', b'z' * 100, method='HEAD', expect_size=0)
        self.assertEqual(s['name'], 'HEAD /f')


class NonBlockingClientTest(unittest.TestCase):
    """A C client with a tiny SO_SNDBUF writing big requests to a slow reader:
    partial writes, EAGAIN, and (blocking mode) EINTR from a timer."""

    def run_client(self, mode, env=None, body=256 * 1024):
        nb = os.environ.get('OTELSHIM_NB_CLIENT')
        if not nb:
            self.fail('OTELSHIM_NB_CLIENT not set (run through meson test)')
        with OtlpReceiver() as receiver, RecordingHttpServer(slow_reader=True, slow_chunk=4096,
                                                             slow_delay=0.0005, slow_budget=60) as server, \
                tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'sent')
            res = run_under_shim([nb, mode, str(server.port), str(body), '3', out], receiver=receiver,
                                 check=True, timeout=120, env_extra=env)
            self.assertTrue(res.stdout.startswith(b'ok '), res.stdout)
            self.assertIn(b' zeros=0', res.stdout)  # never a 0 count for a non-empty write
            server.wait_for_closed()
            wire = b''.join(server.connections())
            with open(out, 'rb') as f:
                sent = f.read()
            self.assertEqual(strip_injected(wire), sent)
            self.assertEqual(wire.count(b'\r\ntraceparent: 00-'), 3)
            self.assertEqual(len(wire), len(sent) + 3 * len(b'traceparent: 00-') + 3 * (32 + 1 + 16 + 1 + 2 + 2))
            spans = receiver.wait_for_spans(3)
            self.assertEqual(sorted(s['name'] for s in spans), ['POST /upload/{id}'] * 3)
            for s in spans:
                self.assertEqual(attrs(s)['http.request.body.size'], body)
            return res.stdout

    def test_nonblocking_partial_writes(self):
        out = self.run_client('nonblocking')
        self.assertNotIn(b'partials=0 ', out)  # the path under test was really taken

    def test_blocking_with_eintr(self):
        self.run_client('blocking')

    def test_kernel_taking_a_few_bytes_per_call(self):
        # A library below the shim accepts at most 7 bytes per socket write:
        # some calls then carry only injected bytes, which the program must
        # never see as a 0 count.
        from harness import shim_path
        env = {'LD_PRELOAD': shim_path() + ':' + os.environ['OTELSHIM_SHORT_WRITES_LIB'],
               'OTELSHIM_TEST_MAX_WRITE': '7'}
        for mode in ('blocking', 'nonblocking'):
            out = self.run_client(mode, env=env, body=2000)
            self.assertNotIn(b'partials=0 ', out)


if __name__ == '__main__':
    unittest.main()
