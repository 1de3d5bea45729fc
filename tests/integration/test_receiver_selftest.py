"""Self-test of the integration-test infrastructure (no shim needed).

Proves that OtlpReceiver really decodes OTLP/HTTP protobuf with Google's runtime, that
its scripted answers work, and that RecordingHttpServer / strip_injected frame requests
correctly. Run: /usr/bin/python3 -m unittest -v tests/integration/test_receiver_selftest.py
"""

import gzip
import http.client
import os
import socket
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (OtlpReceiver, RecordingHttpServer, Response, TRACEPARENT,  # noqa: E402
                     attrs, find_span, find_spans, parse_requests, strip_injected, ABSENT)
import otlp_receiver  # noqa: E402

PB = otlp_receiver.load_proto_modules()
TRACE_ID = bytes.fromhex('0af7651916cd43dd8448eb211c80319c')
ROOT_ID = bytes.fromhex('b7ad6b7169203331')
CHILD_ID = bytes.fromhex('00f067aa0ba902b7')

# No proxy may intercept loopback traffic from urllib in these tests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _kv(key, **value):
    kv = PB['common'].KeyValue(key=key)
    for field, v in value.items():
        if field == 'array':
            for item in v:
                kv.value.array_value.values.add(**item)
        else:
            setattr(kv.value, field, v)
    return kv


def build_request():
    """Two spans (root SERVER + child CLIENT) with every kind of attribute value."""
    req = PB['trace_service'].ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.schema_url = 'https://opentelemetry.io/schemas/1.26.0'
    rs.resource.attributes.extend([
        _kv('service.name', string_value='selftest'),
        _kv('process.pid', int_value=4242),
        _kv('host.arch.bits', int_value=-64),
    ])
    ss = rs.scope_spans.add()
    ss.scope.name = 'otelshim'
    ss.scope.version = '0.1.0'
    ss.schema_url = 'https://opentelemetry.io/schemas/1.27.0'

    root = ss.spans.add()
    root.trace_id = TRACE_ID
    root.span_id = ROOT_ID
    root.trace_state = 'vendor=x'
    root.flags = 0x301
    root.name = 'GET /root'
    root.kind = PB['trace'].Span.SPAN_KIND_SERVER
    root.start_time_unix_nano = 1700000000000000000
    root.end_time_unix_nano = 1700000000500000000
    root.attributes.extend([
        _kv('http.request.method', string_value='GET'),
        _kv('http.response.status_code', int_value=200),
        _kv('ratio', double_value=0.25),
        _kv('ok', bool_value=True),
        _kv('list', array=[{'string_value': 'a'}, {'int_value': 2}]),
        _kv('blob', bytes_value=b'\x00\xff'),
    ])
    root.dropped_attributes_count = 3
    ev = root.events.add()
    ev.name = 'exception'
    ev.time_unix_nano = 1700000000100000000
    ev.attributes.append(_kv('exception.type', string_value='E'))

    child = ss.spans.add()
    child.trace_id = TRACE_ID
    child.span_id = CHILD_ID
    child.parent_span_id = ROOT_ID
    child.flags = 0x101
    child.name = 'POST'
    child.kind = PB['trace'].Span.SPAN_KIND_CLIENT
    child.start_time_unix_nano = 1700000000200000000
    child.end_time_unix_nano = 1700000000300000000
    child.attributes.append(_kv('url.full', string_value='http://127.0.0.1:1/x'))
    child.status.code = PB['trace'].Status.STATUS_CODE_ERROR
    child.status.message = 'boom'
    return req


def post(url, body, headers, timeout=10):
    req = urllib.request.Request(url, data=body, headers=headers, method='POST')
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def parse_response(body):
    resp = PB['trace_service'].ExportTraceServiceResponse()
    resp.ParseFromString(body)
    return resp


PROTO = {'Content-Type': 'application/x-protobuf'}


class ReceiverTest(unittest.TestCase):
    def setUp(self):
        self.rx = OtlpReceiver().start()
        self.addCleanup(self.rx.stop)

    def check_decoded(self, spans):
        self.assertEqual(len(spans), 2)
        root = find_span(spans, name='GET /root')
        child = find_span(spans, name='POST')
        self.assertEqual(root['trace_id'], '0af7651916cd43dd8448eb211c80319c')
        self.assertEqual(root['span_id'], 'b7ad6b7169203331')
        self.assertEqual(root['parent_span_id'], '')
        self.assertEqual(root['trace_state'], 'vendor=x')
        self.assertEqual(root['flags'], 0x301)
        self.assertEqual(root['kind'], harness.SPAN_KIND_SERVER)
        self.assertEqual(root['start_time_unix_nano'], 1700000000000000000)
        self.assertEqual(root['end_time_unix_nano'], 1700000000500000000)
        self.assertEqual(attrs(root), {
            'http.request.method': 'GET', 'http.response.status_code': 200, 'ratio': 0.25,
            'ok': True, 'list': ['a', 2], 'blob': b'\x00\xff'})
        self.assertIsInstance(attrs(root)['http.response.status_code'], int)
        self.assertIs(attrs(root)['ok'], True)
        self.assertEqual(root['dropped_attributes_count'], 3)
        self.assertEqual(root['status'], {'code': 0, 'message': ''})
        self.assertEqual(root['events'], [{
            'name': 'exception', 'time_unix_nano': 1700000000100000000,
            'attributes': {'exception.type': 'E'}, 'dropped_attributes_count': 0}])
        self.assertEqual(root['resource'], {
            'service.name': 'selftest', 'process.pid': 4242, 'host.arch.bits': -64})
        self.assertEqual(root['scope']['name'], 'otelshim')
        self.assertEqual(root['scope']['version'], '0.1.0')
        self.assertEqual(root['scope']['schema_url'], 'https://opentelemetry.io/schemas/1.27.0')
        self.assertEqual(root['scope']['resource_schema_url'],
                         'https://opentelemetry.io/schemas/1.26.0')

        self.assertEqual(child['parent_span_id'], 'b7ad6b7169203331')
        self.assertEqual(child['span_id'], '00f067aa0ba902b7')
        self.assertEqual(child['kind'], harness.SPAN_KIND_CLIENT)
        self.assertEqual(child['flags'], 0x101)
        self.assertEqual(child['status'], {'code': 2, 'message': 'boom'})
        self.assertEqual(attrs(child), {'url.full': 'http://127.0.0.1:1/x'})
        self.assertEqual(TRACEPARENT.for_span(child),
                         '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01')

    def test_plain_content_length(self):
        body = build_request().SerializeToString()
        status, headers, rbody = post(self.rx.traces_url, body,
                                      dict(PROTO, **{'User-Agent': 'selftest/1'}))
        self.assertEqual(status, 200)
        self.assertEqual(headers['Content-Type'], 'application/x-protobuf')
        self.assertFalse(parse_response(rbody).HasField('partial_success'))
        self.check_decoded(self.rx.wait_for_spans(2, timeout=5))
        (r,) = self.rx.requests()
        self.assertEqual(r['path'], '/v1/traces')
        self.assertEqual(r['method'], 'POST')
        self.assertEqual(r['user_agent'], 'selftest/1')
        self.assertEqual(r['headers']['user-agent'], 'selftest/1')
        self.assertEqual(r['content_encoding'], '')
        self.assertEqual(r['body_size'], len(body))
        self.assertEqual(r['span_count'], 2)
        self.assertEqual(r['status'], 200)
        self.assertFalse(r['chunked'])

    def test_endpoint_shape(self):
        self.assertRegex(self.rx.endpoint, r'^http://127\.0\.0\.1:\d+$')
        self.assertEqual(self.rx.traces_url, self.rx.endpoint + '/v1/traces')

    def test_gzip(self):
        raw = build_request().SerializeToString()
        body = gzip.compress(raw)
        status, _, _ = post(self.rx.traces_url, body,
                            dict(PROTO, **{'Content-Encoding': 'gzip'}))
        self.assertEqual(status, 200)
        self.check_decoded(self.rx.wait_for_spans(2, timeout=5))
        (r,) = self.rx.requests()
        self.assertEqual(r['content_encoding'], 'gzip')
        self.assertEqual(r['body_size'], len(body))
        self.assertEqual(r['decoded_size'], len(raw))

    def test_chunked_gzip_keepalive(self):
        raw = build_request().SerializeToString()
        conn = http.client.HTTPConnection('127.0.0.1', self.rx.port, timeout=10)
        self.addCleanup(conn.close)
        for i, (enc, body) in enumerate([('', raw), ('gzip', gzip.compress(raw))]):
            hdrs = dict(PROTO)
            if enc:
                hdrs['Content-Encoding'] = enc
            # A generator body makes http.client send Transfer-Encoding: chunked.
            pieces = [body[j:j + 7] for j in range(0, len(body), 7)]
            conn.request('POST', '/v1/traces', body=iter(pieces), headers=hdrs,
                         encode_chunked=True)
            resp = conn.getresponse()
            rbody = resp.read()
            self.assertEqual(resp.status, 200, rbody)
            parse_response(rbody)
        spans = self.rx.wait_for_spans(4, timeout=5)
        self.check_decoded([s for s in spans if s['request_index'] == 0])
        self.check_decoded([s for s in spans if s['request_index'] == 1])
        reqs = self.rx.requests()
        self.assertEqual([r['chunked'] for r in reqs], [True, True])
        self.assertEqual([r['content_encoding'] for r in reqs], ['', 'gzip'])
        # Both requests travelled on one kept-alive connection.
        self.assertEqual(reqs[0]['connection_id'], reqs[1]['connection_id'])

    def test_garbage_body_is_400_and_recorded(self):
        status, _, _ = post(self.rx.traces_url, b'\xff\xff\xff\xff', PROTO)
        self.assertEqual(status, 400)
        (r,) = self.rx.requests()
        self.assertIn('protobuf decode', r['error'])
        self.assertEqual(self.rx.spans(), [])

    def test_bad_gzip_and_wrong_path(self):
        status, _, _ = post(self.rx.traces_url, b'not gzip', dict(PROTO, **{
            'Content-Encoding': 'gzip'}))
        self.assertEqual(status, 400)
        status, _, _ = post(self.rx.endpoint + '/v1/trace', b'', PROTO)
        self.assertEqual(status, 404)
        self.assertEqual([r['status'] for r in self.rx.requests()], [400, 404])

    def test_scripted_503_then_normal(self):
        self.rx.script([(503, {'Retry-After': '1'}), (429, {}), 'close'])
        body = build_request().SerializeToString()
        status, headers, _ = post(self.rx.traces_url, body, PROTO)
        self.assertEqual(status, 503)
        self.assertEqual(headers['Retry-After'], '1')
        status, _, _ = post(self.rx.traces_url, body, PROTO)
        self.assertEqual(status, 429)
        with self.assertRaises((http.client.RemoteDisconnected, urllib.error.URLError,
                                ConnectionError)):
            post(self.rx.traces_url, body, PROTO)
        self.assertEqual(self.rx.spans(), [])
        self.assertEqual(self.rx.script_remaining(), 0)
        status, _, _ = post(self.rx.traces_url, body, PROTO)
        self.assertEqual(status, 200)
        self.assertEqual(len(self.rx.wait_for_spans(2, timeout=5)), 2)
        self.assertEqual([(r['status'], r['outcome']) for r in self.rx.requests()],
                         [(503, 'scripted'), (429, 'scripted'), (None, 'closed'), (200, 'ok')])

    def test_partial_success(self):
        self.rx.partial_success(1, 'one dropped')
        status, _, rbody = post(self.rx.traces_url, build_request().SerializeToString(), PROTO)
        self.assertEqual(status, 200)
        resp = parse_response(rbody)
        self.assertTrue(resp.HasField('partial_success'))
        self.assertEqual(resp.partial_success.rejected_spans, 1)
        self.assertEqual(resp.partial_success.error_message, 'one dropped')
        self.rx.normal()
        status, _, rbody = post(self.rx.traces_url, build_request().SerializeToString(), PROTO)
        self.assertFalse(parse_response(rbody).HasField('partial_success'))

    def test_hang_then_release(self):
        self.rx.hang()
        sock = socket.create_connection(('127.0.0.1', self.rx.port), timeout=10)
        self.addCleanup(sock.close)
        body = build_request().SerializeToString()
        sock.sendall(b'POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: '
                     b'application/x-protobuf\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
        self.rx.wait_for_requests(1, timeout=5)
        harness.wait_until(lambda: self.rx.hung_count() == 1, timeout=5, message='hung')
        # Nothing is answered while hung (non-blocking peek: no bytes pending).
        sock.setblocking(False)
        with self.assertRaises(BlockingIOError):
            sock.recv(1)
        sock.setblocking(True)
        self.assertEqual(self.rx.spans(), [])
        self.rx.release()
        data = sock.recv(4096)
        self.assertTrue(data.startswith(b'HTTP/1.1 200'), data)
        self.assertEqual(len(self.rx.wait_for_spans(2, timeout=5)), 2)

    def test_scripted_hang_then_release(self):
        self.rx.script(['hang'])
        sock = socket.create_connection(('127.0.0.1', self.rx.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b'POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: '
                     b'application/x-protobuf\r\nContent-Length: 0\r\n\r\n')
        harness.wait_until(lambda: self.rx.hung_count() == 1, timeout=5, message='hung')
        self.assertEqual(self.rx.requests()[0]['outcome'], 'hung')
        self.rx.release()
        self.assertTrue(sock.recv(4096).startswith(b'HTTP/1.1 200'))
        self.assertEqual(self.rx.wait_for_requests(1, timeout=5)[0]['outcome'], 'ok')

    def test_hang_dropped_on_stop(self):
        self.rx.hang()
        sock = socket.create_connection(('127.0.0.1', self.rx.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b'POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')
        harness.wait_until(lambda: self.rx.hung_count() == 1, timeout=5, message='hung')
        t0 = time.monotonic()
        self.rx.stop()
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(sock.recv(4096), b'')
        self.assertEqual(self.rx.requests()[0]['outcome'], 'hung-dropped')

    def test_wait_for_spans_timeout_message(self):
        post(self.rx.traces_url, build_request().SerializeToString(), PROTO)
        self.rx.wait_for_spans(2, timeout=5)
        with self.assertRaises(AssertionError) as cm:
            self.rx.wait_for_spans(1, timeout=0.2, predicate=lambda s: s['name'] == 'nope')
        msg = str(cm.exception)
        self.assertIn("'GET /root'", msg)
        self.assertIn('/v1/traces', msg)
        self.rx.clear()
        self.assertEqual((self.rx.spans(), self.rx.requests()), ([], []))


class RecordingServerTest(unittest.TestCase):
    def start(self, **kw):
        srv = RecordingHttpServer(**kw).start()
        self.addCleanup(srv.stop)
        return srv

    def test_keepalive_multiple_requests(self):
        srv = self.start()
        conn = http.client.HTTPConnection('127.0.0.1', srv.port, timeout=10)
        self.addCleanup(conn.close)
        for path in ('/a', '/b', '/status/404', '/c'):
            conn.request('GET', path, headers={'X-Test': path})
            r = conn.getresponse()
            body = r.read()
            if path == '/status/404':
                self.assertEqual(r.status, 404)
            else:
                self.assertEqual((r.status, body), (200, b'ok\n'))
        conns = srv.connections()
        self.assertEqual(len(conns), 1)
        self.assertEqual(conns[0].count(b'GET /'), 4)
        reqs = srv.requests()
        self.assertEqual([r.target for r in reqs], ['/a', '/b', '/status/404', '/c'])
        self.assertEqual(reqs[0].headers['x-test'], ['/a'])
        self.assertEqual(parse_requests(conns[0]), reqs)
        self.assertEqual(srv.errors(), [])

    def test_exact_bytes_and_chunked_request(self):
        srv = self.start()
        raw = (b'POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n'
               b'5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n'
               b'GET /next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
        with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
            # Byte-at-a-time: framing must not depend on how the bytes arrive.
            for i in range(len(raw)):
                s.sendall(raw[i:i + 1])
            got = _recv_all(s)
        self.assertEqual(got.count(b'HTTP/1.1 200 OK'), 2)
        srv.wait_for_closed(timeout=5)
        self.assertEqual(srv.connections(), [raw])
        reqs = srv.requests()
        self.assertEqual(reqs[0].method, 'POST')
        self.assertEqual(reqs[0].body, b'hello world')
        self.assertEqual(reqs[1].target, '/next')

    def test_100_continue(self):
        srv = self.start()
        with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
            s.sendall(b'PUT /put HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n'
                      b'Content-Length: 4\r\n\r\n')
            interim = _recv_until(s, b'\r\n\r\n')
            self.assertEqual(interim, b'HTTP/1.1 100 Continue\r\n\r\n')
            s.sendall(b'data')
            final = _recv_until(s, b'ok\n')
        self.assertTrue(final.startswith(b'HTTP/1.1 200 OK\r\n'), final)
        self.assertEqual(srv.requests()[0].body, b'data')

    def test_100_continue_reject(self):
        srv = self.start(continue_mode='reject')
        with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
            s.sendall(b'PUT /put HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n'
                      b'Content-Length: 4\r\n\r\n')
            got = _recv_all(s)
        self.assertTrue(got.startswith(b'HTTP/1.1 417 Expectation Failed\r\n'), got)
        self.assertEqual(srv.requests()[0].target, '/put')

    def test_100_continue_via_curl(self):
        srv = self.start()
        body = b'x' * 2000
        res = harness.run_under_shim(
            ['curl', '-sS', '-H', 'Expect: 100-continue', '--data-binary', '@-',
             srv.url + '/post'], preload=False, input=body, timeout=20)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout, b'ok\n')
        (r,) = srv.requests()
        self.assertEqual(r.body, body)
        self.assertEqual(r.headers['expect'], ['100-continue'])

    def test_close_delimited_and_chunked_responses(self):
        for framing, marker in (('close', b'Connection: close'),
                                ('chunked', b'Transfer-Encoding: chunked')):
            srv = self.start(framing=framing, body=b'0123456789abcdef')
            req = urllib.request.Request(srv.url + '/x')
            with _OPENER.open(req, timeout=10) as r:
                self.assertEqual(r.read(), b'0123456789abcdef')
            with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
                s.sendall(b'GET /y HTTP/1.1\r\nHost: h\r\n\r\n')
                if framing == 'close':
                    got = _recv_all(s)
                    self.assertNotIn(b'Content-Length', got)
                    self.assertTrue(got.endswith(b'\r\n\r\n0123456789abcdef'), got)
                else:
                    got = _recv_until(s, b'0\r\n\r\n')
                    self.assertIn(b'\r\n5\r\n01234\r\n', got)
                self.assertIn(marker, got)

    def test_head_204_304(self):
        def handler(req):
            if req.target == '/nc':
                return Response(204)
            if req.target == '/nm':
                return Response(304, headers=[('ETag', '"1"')])
            return None
        srv = self.start(handler=handler, body=b'twelve bytes')
        with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
            s.sendall(b'HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n'
                      b'GET /nc HTTP/1.1\r\nHost: h\r\n\r\n'
                      b'GET /nm HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
            got = _recv_all(s)
        parts = got.split(b'\r\n\r\n')
        self.assertIn(b'Content-Length: 12', parts[0])
        self.assertTrue(parts[1].startswith(b'HTTP/1.1 204 No Content'), got)
        self.assertTrue(parts[2].startswith(b'HTTP/1.1 304 Not Modified'), got)
        self.assertEqual(parts[3], b'')
        self.assertNotIn(b'twelve', got)

    def test_slow_reader_is_bounded(self):
        srv = self.start(slow_reader=True, slow_budget=1.0)
        body = b'z' * 200000
        t0 = time.monotonic()
        status, _, rbody = post(srv.url + '/slow', body, {})
        self.assertEqual((status, rbody), (200, b'ok\n'))
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(srv.requests()[0].body, body)

    def test_strip_injected_only_in_heads(self):
        body = b'line1\r\ntraceparent: 00-in-body\r\nBaggage: k=v\r\n'
        chunk_body = b'traceparent: chunk\r\n'
        data = (b'POST /a HTTP/1.1\r\nHost: h\r\ntraceparent: ' +
                TRACEPARENT.SAMPLED.encode() +
                b'\r\nTraceState: a=b\r\nBAGGAGE: x=y\r\nContent-Length: %d\r\n\r\n' % len(body)
                + body +
                b'POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n'
                b'traceparent: ' + TRACEPARENT.UNSAMPLED.encode() + b'\r\n\r\n'
                b'%x\r\n' % len(chunk_body) + chunk_body + b'\r\n0\r\n\r\n'
                b'GET /c HTTP/1.1\r\nX-traceparent: keep\r\n\r\n')
        want = (b'POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n' % len(body)
                + body +
                b'POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n'
                b'%x\r\n' % len(chunk_body) + chunk_body + b'\r\n0\r\n\r\n'
                b'GET /c HTTP/1.1\r\nX-traceparent: keep\r\n\r\n')
        self.assertEqual(strip_injected(data), want)
        self.assertEqual(strip_injected(want), want)
        # An incomplete trailing request: its head is stripped, its partial body kept.
        partial = (b'POST /p HTTP/1.1\r\ntraceparent: x\r\nContent-Length: 50\r\n\r\n'
                   b'traceparent: y\r\n')
        self.assertEqual(strip_injected(partial),
                         b'POST /p HTTP/1.1\r\nContent-Length: 50\r\n\r\ntraceparent: y\r\n')
        # Not HTTP at all: untouched.
        self.assertEqual(strip_injected(b'traceparent: z\r\n\r\n'), b'traceparent: z\r\n\r\n')

    def test_strip_injected_recorded_connection(self):
        srv = self.start()
        body = b'traceparent: 00-body-stays\n'
        with socket.create_connection(('127.0.0.1', srv.port), timeout=10) as s:
            s.sendall(b'POST /x HTTP/1.1\r\nHost: h\r\ntraceparent: ' +
                      TRACEPARENT.SAMPLED.encode() + b'\r\nContent-Length: %d\r\n'
                      b'Connection: close\r\n\r\n' % len(body) + body)
            _recv_all(s)
        srv.wait_for_closed(timeout=5)
        (conn,) = srv.connections()
        self.assertEqual(strip_injected(conn), b'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: '
                         b'%d\r\nConnection: close\r\n\r\n' % len(body) + body)


class HelpersTest(unittest.TestCase):
    def test_traceparent(self):
        tp = TRACEPARENT.parse(TRACEPARENT.SAMPLED)
        self.assertEqual(tp.trace_id, TRACEPARENT.TRACE_ID)
        self.assertEqual(tp.span_id, TRACEPARENT.SPAN_ID)
        self.assertTrue(tp.sampled)
        self.assertFalse(TRACEPARENT.parse(TRACEPARENT.UNSAMPLED).sampled)
        self.assertEqual(str(tp), TRACEPARENT.SAMPLED)
        v = TRACEPARENT.make(trace_id='1' * 32, span_id='2' * 16, sampled=False)
        self.assertEqual(v, '00-' + '1' * 32 + '-' + '2' * 16 + '-00')
        for bad in ('', '00-' + '0' * 32 + '-' + '2' * 16 + '-01',
                    '00-' + '1' * 32 + '-' + '0' * 16 + '-01',
                    'ff-' + '1' * 32 + '-' + '2' * 16 + '-01',
                    '00-' + 'A' * 32 + '-' + '2' * 16 + '-01',
                    '00-' + '1' * 32 + '-' + '2' * 16 + '-01-extra',
                    '00-' + '1' * 31 + '-' + '2' * 16 + '-01'):
            self.assertFalse(TRACEPARENT.is_valid(bad), bad)
        self.assertTrue(TRACEPARENT.is_valid('01-' + '1' * 32 + '-' + '2' * 16 + '-01-future'))

    def test_find_span(self):
        spans = [
            {'name': 'GET', 'kind': 3, 'attributes': {'url.path': '/a', 'n': 1},
             'trace_id': 't', 'span_id': 's1', 'parent_span_id': '', 'status': {'code': 0}},
            {'name': 'GET', 'kind': 3, 'attributes': {'url.path': '/b'},
             'trace_id': 't', 'span_id': 's2', 'parent_span_id': '', 'status': {'code': 0}},
        ]
        self.assertEqual(find_span(spans, **{'url.path': '/b'})['span_id'], 's2')
        self.assertEqual(find_span(spans, n=ABSENT)['span_id'], 's2')
        self.assertEqual(find_span(spans, n=lambda v: v > 0)['span_id'], 's1')
        self.assertEqual(len(find_spans(spans, name='GET', kind=3)), 2)
        with self.assertRaises(AssertionError):
            find_span(spans, name='GET')
        self.assertEqual(find_span(spans, name='GET', first=True)['span_id'], 's1')
        with self.assertRaises(AssertionError) as cm:
            find_span(spans, name='POST')
        self.assertIn("'GET'", str(cm.exception))

    def test_env(self):
        rx = OtlpReceiver().start()
        self.addCleanup(rx.stop)
        os.environ['OTEL_SERVICE_NAME'] = 'leak'
        self.addCleanup(os.environ.pop, 'OTEL_SERVICE_NAME', None)
        env = harness.shim_env({'OTEL_LOG_LEVEL': None, 'X': 1}, receiver=rx)
        self.assertEqual(env['LD_PRELOAD'], harness.shim_path())
        self.assertEqual(env['OTEL_EXPORTER_OTLP_ENDPOINT'], rx.endpoint)
        self.assertEqual(env['OTEL_BSP_SCHEDULE_DELAY'], '100')
        self.assertNotIn('OTEL_LOG_LEVEL', env)
        self.assertNotIn('OTEL_SERVICE_NAME', env)
        self.assertEqual(env['X'], '1')
        self.assertNotIn('LD_PRELOAD', harness.shim_env(preload=False))
        self.assertTrue(harness.shim_path().endswith('/libotelshim.so'))

    def test_run_without_preload_and_timeout(self):
        res = harness.run_under_shim([sys.executable, '-c', 'import os,sys;'
                                      'sys.stdout.write(os.environ.get("LD_PRELOAD", "-"))'],
                                     preload=False)
        self.assertEqual((res.returncode, res.stdout), (0, b'-'))
        import subprocess
        t0 = time.monotonic()
        with self.assertRaises(subprocess.TimeoutExpired):
            harness.run_under_shim(['sleep', '30'], preload=False, timeout=0.5)
        self.assertLess(time.monotonic() - t0, 10)


def _recv_all(s, limit=1 << 20):
    out = b''
    for _ in range(10000):
        d = s.recv(65536)
        if not d:
            return out
        out += d
        if len(out) > limit:
            break
    return out


def _recv_until(s, marker, limit=1 << 20):
    out = b''
    for _ in range(10000):
        if marker in out:
            return out
        d = s.recv(65536)
        if not d or len(out) > limit:
            break
        out += d
    return out


if __name__ == '__main__':
    unittest.main()
