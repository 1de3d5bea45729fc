"""Incoming HTTP/1.x under the shim: a Python ThreadingHTTPServer (http_app.py) and
nginx run preloaded; a plain, unpreloaded curl sends requests with a valid
traceparent, an invalid one and none. Every SERVER span's ids, attributes and status
are checked, and so is that the bodies the server read are the bytes curl sent. A
chain (preloaded client -> preloaded server A, whose handler calls preloaded server
B) must form one trace with correct parents at every hop, tracestate, baggage and
x-request-id carried along."""

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, run_under_shim, shim_env, attrs, find_span, format_span,
    SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, LOOPBACK)

PY = '/usr/bin/python3'
APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'http_app.py')
NGINX = shutil.which('nginx') or '/usr/sbin/nginx'

T = '4bf92f3577b34da6a3ce929d0e0e4736'
P = '00f067aa0ba902b7'
VALID_TP = '00-%s-%s-01' % (T, P)
INVALID_TP = '00-%s-%s-01' % (T.upper(), P)     # uppercase hex: invalid per W3C


def curl(args, timeout=30):
    """A plain curl (never preloaded); returns the CompletedProcess."""
    return run_under_shim(['curl', '-s', '--max-time', '20'] + args, preload=False, check=True,
                          timeout=timeout)


def read_line(stream, deadline, what):
    """One line from a pipe, or AssertionError at the deadline."""
    buf = b''
    while not buf.endswith(b'\n'):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('timed out waiting for %s (got %r)' % (what, buf))
        r, _, _ = select.select([stream], [], [], left)
        if not r:
            continue
        ch = os.read(stream.fileno(), 1)
        if not ch:
            raise AssertionError('%s: stream closed (got %r)' % (what, buf))
        buf += ch
    return buf.decode()


class AppServer:
    """http_app.py under the shim, exporting to @receiver."""

    def __init__(self, receiver, args=(), env=None):
        self.receiver = receiver
        self.args = list(args)
        self.env = env
        self.proc = None
        self.port = None
        self._err = None

    def start(self, timeout=20.0):
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([PY, APP] + self.args,
                                     env=shim_env(self.env, self.receiver),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, start_new_session=True)
        line = read_line(self.proc.stdout, time.monotonic() + timeout, 'http_app.py port')
        self.port = int(line.split()[1])
        return self

    @property
    def url(self):
        return 'http://%s:%d' % (LOOPBACK, self.port)

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc.stdout.close()
        self._err.close()
        self.proc = None

    def stderr(self):
        self._err.seek(0)
        return self._err.read().decode(errors='replace')

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


NGINX_CONF = '''
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    sendfile on;
    keepalive_timeout 30;
    server {{
        listen {host}:{port};
        root {d}/html;
    }}
}}
'''


class Nginx:
    """nginx under the shim with its own prefix, config, pid and logs in a temp dir."""

    STATIC = b'static file served by nginx\n'
    BIG = bytes((i * 131) % 251 for i in range(300 * 1024))

    def __init__(self, receiver):
        self.receiver = receiver
        self.dir = None
        self.proc = None
        self.port = None

    def start(self, timeout=20.0):
        self.dir = tempfile.mkdtemp(prefix='osh-nginx-')
        # The worker may drop privileges (nobody): everything it serves must be
        # readable by anyone.
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, 'html'))
        os.makedirs(os.path.join(self.dir, 'tmp'))
        for name, data in (('index.html', self.STATIC), ('big.bin', self.BIG)):
            with open(os.path.join(self.dir, 'html', name), 'wb') as f:
                f.write(data)
        os.chmod(os.path.join(self.dir, 'html'), 0o755)
        deadline = time.monotonic() + timeout
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir, 'nginx.conf')
            with open(conf, 'w') as f:
                f.write(NGINX_CONF.format(d=self.dir, host=LOOPBACK, port=self.port))
            self.proc = subprocess.Popen(
                [NGINX, '-p', self.dir, '-c', conf, '-e', os.path.join(self.dir, 'error.log')],
                env=shim_env(None, self.receiver), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break       # could not bind (port taken meanwhile): next attempt
                try:
                    socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                break
        raise AssertionError('nginx did not start: %s' % self.error_log())

    @property
    def url(self):
        return 'http://%s:%d' % (LOOPBACK, self.port)

    def error_log(self):
        try:
            with open(os.path.join(self.dir, 'error.log')) as f:
                return f.read()
        except OSError:
            return ''

    def stop(self, timeout=10.0):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)   # graceful: workers flush
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def server_spans(receiver, n, timeout=15.0):
    return receiver.wait_for_spans(n, timeout=timeout,
                                   predicate=lambda s: s['kind'] == SPAN_KIND_SERVER)


class Checks(unittest.TestCase):
    def check_common(self, s, port, name, path, status):
        a = attrs(s)
        self.assertEqual(s['kind'], SPAN_KIND_SERVER, format_span(s))
        self.assertEqual(s['name'], name)
        self.assertEqual(a['http.request.method'], name.split()[0])
        self.assertEqual(a['url.path'], path)
        self.assertEqual(a['url.scheme'], 'http')
        self.assertEqual(a['server.address'], LOOPBACK)
        self.assertEqual(a['server.port'], port)
        self.assertEqual(a['client.address'], LOOPBACK)
        self.assertEqual(a['network.peer.address'], LOOPBACK)
        self.assertIsInstance(a['network.peer.port'], int)
        self.assertNotEqual(a['network.peer.port'], port)
        self.assertEqual(a['network.protocol.version'], '1.1')
        self.assertTrue(a['user_agent.original'].startswith('curl/'), a)
        self.assertEqual(a['http.response.status_code'], status)
        self.assertGreaterEqual(s['end_time_unix_nano'], s['start_time_unix_nano'])
        if status >= 500:
            self.assertEqual(a['error.type'], str(status))
            self.assertEqual(s['status']['code'], STATUS_ERROR)
        else:
            self.assertNotIn('error.type', a)
            self.assertEqual(s['status']['code'], STATUS_UNSET)

    def check_parent(self, s, tp):
        if tp == VALID_TP:
            self.assertEqual(s['trace_id'], T)
            self.assertEqual(s['parent_span_id'], P)
            self.assertEqual(s['flags'], 0x301)      # sampled, remote parent
        else:
            self.assertEqual(s['parent_span_id'], '', format_span(s))
            self.assertNotEqual(s['trace_id'], T.lower())
            self.assertEqual(s['flags'], 0x101)


class PythonServerTest(Checks):
    @classmethod
    def setUpClass(cls):
        cls.receiver = OtlpReceiver().start()
        cls.app = AppServer(cls.receiver).start()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        cls.receiver.stop()

    def setUp(self):
        self.receiver.clear()

    def test_statuses_with_valid_invalid_and_no_traceparent(self):
        cases = [(VALID_TP, 200), (INVALID_TP, 404), (None, 500)]
        for tp, status in cases:
            self.receiver.clear()
            args = ['-o', '/dev/null', '-H', 'User-Agent: curl/otelshim-test']
            if tp:
                args += ['-H', 'traceparent: ' + tp, '-H', 'tracestate: vendor=abc']
            curl(args + [self.app.url + '/status/%d?color=blue&api_key=sekrit' % status])
            (s,) = server_spans(self.receiver, 1)
            self.check_common(s, self.app.port, 'GET /status/{id}', '/status/%d' % status,
                              status)
            self.check_parent(s, tp)
            a = attrs(s)
            self.assertEqual(a['http.route'], '/status/{id}')
            self.assertEqual(a['url.query'], 'color=blue&api_key=REDACTED')
            self.assertEqual(s['trace_state'], 'vendor=abc' if tp == VALID_TP else '')
            self.assertEqual(s['resource']['process.executable.name'][:6], 'python')

    def test_request_id_and_baggage(self):
        curl(['-o', '/dev/null', '-H', 'x-request-id: req-123', '-H',
              'baggage: user_id=alice%20b,tenant_id=acme,other=1', self.app.url + '/headers'])
        (s,) = server_spans(self.receiver, 1)
        a = attrs(s)
        self.assertEqual(a['http.request.header.x-request-id'], 'req-123')
        self.assertEqual(a['user_id'], 'alice b')
        self.assertEqual(a['tenant_id'], 'acme')

    def test_bodies_read_by_the_server_are_unchanged(self):
        with tempfile.TemporaryDirectory() as tmp:
            # Bytes that look like header lines inside a body, and binary.
            body = (b'traceparent: 00-%s-%s-01\r\n\r\n' % (T.encode(), P.encode()) +
                    bytes(range(256)) * 400)
            path = os.path.join(tmp, 'body')
            with open(path, 'wb') as f:
                f.write(body)
            want = hashlib.sha256(body).hexdigest()
            for chunked in (False, True):
                self.receiver.clear()
                hdr = os.path.join(tmp, 'headers')
                args = ['-D', hdr, '--data-binary', '@' + path, '-H', 'Expect: 100-continue']
                if chunked:
                    args += ['-H', 'Transfer-Encoding: chunked']
                res = curl(args + [self.app.url + '/echo'])
                self.assertEqual(res.stdout, body, 'echoed body differs (chunked=%s)' % chunked)
                with open(hdr, 'rb') as f:
                    head = f.read().lower()
                self.assertIn(b'x-body-sha256: ' + want.encode(), head)
                # The interim "100 Continue" before the body must not end the
                # exchange.
                self.assertIn(b'100 continue', head)
                (s,) = server_spans(self.receiver, 1)
                a = attrs(s)
                self.assertEqual(s['name'], 'POST /echo')
                self.assertEqual(a['http.request.body.size'], len(body))
                self.assertEqual(a['http.response.body.size'], len(body))
                self.assertEqual(a['http.response.status_code'], 200)

    def test_keep_alive_head_and_several_requests_on_one_connection(self):
        u = self.app.url
        curl(['-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null',
              u + '/status/201', u + '/headers', u + '/nothing/here'])
        curl(['-I', u + '/status/200'])
        spans = server_spans(self.receiver, 4)
        names = sorted(s['name'] for s in spans)
        self.assertEqual(names, ['GET /headers', 'GET /nothing/here', 'GET /status/{id}',
                                 'HEAD /status/{id}'])
        ports = {attrs(s)['network.peer.port'] for s in spans if s['name'] != 'HEAD /status/{id}'}
        self.assertEqual(len(ports), 1, 'curl reused one connection')
        self.assertEqual(len({s['trace_id'] for s in spans}), 4)
        head = find_span(spans, name='HEAD /status/{id}')
        self.assertEqual(attrs(head)['http.response.body.size'], 0)

    def test_client_going_away_before_the_answer(self):
        # /call to a port where nothing answers quickly would be timing-dependent;
        # instead a raw client sends a head and closes at once, and the server's
        # answer goes to a closed peer: the span still ends.
        with socket.create_connection((LOOPBACK, self.app.port), timeout=10) as c:
            c.sendall(b'GET /status/200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
            c.shutdown(socket.SHUT_WR)
            data = b''
            while True:
                piece = c.recv(4096)
                if not piece:
                    break
                data += piece
        self.assertTrue(data.startswith(b'HTTP/1.1 200'))
        (s,) = server_spans(self.receiver, 1)
        self.assertEqual(attrs(s)['http.response.status_code'], 200)
        self.assertNotIn('error.type', attrs(s))

    def test_non_http_connection_passes_through(self):
        with socket.create_connection((LOOPBACK, self.app.port), timeout=10) as c:
            c.sendall(b'\x16\x03\x01\x00\x05hello')
            c.shutdown(socket.SHUT_WR)
            c.settimeout(10)
            while c.recv(4096):
                pass
        # Then a normal request: only that one has a span.
        curl(['-o', '/dev/null', self.app.url + '/status/200'])
        (s,) = server_spans(self.receiver, 1)
        self.assertEqual(s['name'], 'GET /status/{id}')


class SubprocessInHandlerTest(unittest.TestCase):
    def test_vfork_child_leaves_the_parents_connections_alone(self):
        # Python's subprocess forks with vfork and closes every fd in the child with
        # close_range: the child runs on the parent's memory, and must not end the
        # parent's exchanges (the response here follows the subprocess).
        with OtlpReceiver() as receiver, AppServer(receiver) as app:
            res = curl(['-H', 'traceparent: ' + VALID_TP,
                        app.url + '/spawn?url=' + app.url + '/status/200'])
            self.assertEqual(res.stdout, b'status 200\n')
            spans = receiver.wait_for_spans(3, timeout=15)
            outer = find_span(spans, name='GET /spawn', kind=SPAN_KIND_SERVER)
            inner = find_span(spans, name='GET /status/{id}', kind=SPAN_KIND_SERVER)
            call = find_span(spans, kind=SPAN_KIND_CLIENT)
            self.assertEqual(attrs(outer)['http.response.status_code'], 200)
            self.assertNotIn('error.type', attrs(outer))
            self.assertEqual(outer['parent_span_id'], P)
            self.assertEqual(call['parent_span_id'], outer['span_id'])
            self.assertEqual(inner['parent_span_id'], call['span_id'])


class ForkingServerTest(Checks):
    def test_each_forked_child_exports_its_own_server_span(self):
        # A prefork-style server: every connection is served by a forked child
        # that leaves with os._exit (no exit handlers). Each child must export
        # its span itself, under its own pid, with the caller as parent.
        with OtlpReceiver() as receiver, AppServer(receiver, ['--fork']) as app:
            pids = []
            for _ in range(3):
                res = curl(['-H', 'traceparent: ' + VALID_TP, app.url + '/pid'])
                pids.append(int(res.stdout))
            self.assertEqual(len(set(pids)), 3, pids)
            self.assertNotIn(app.proc.pid, pids)
            spans = server_spans(receiver, 3)
            self.assertEqual(sorted(s['resource']['process.pid'] for s in spans), sorted(pids))
            for s in spans:
                self.assertEqual(s['name'], 'GET /pid')
                self.assertEqual(attrs(s)['http.response.status_code'], 200)
                self.check_parent(s, VALID_TP)


class Http10ServerTest(Checks):
    def test_close_delimited_response_ends_at_shutdown(self):
        with OtlpReceiver() as receiver, AppServer(receiver, ['--http10']) as app:
            res = curl(['-0', '-H', 'traceparent: ' + VALID_TP, app.url + '/stream'])
            self.assertEqual(res.stdout, b''.join(b'line %d\n' % i for i in range(5)))
            (s,) = server_spans(receiver, 1)
            a = attrs(s)
            self.assertEqual(s['name'], 'GET /stream')
            self.assertEqual(a['network.protocol.version'], '1.0')
            self.assertEqual(a['http.response.body.size'], len(res.stdout))
            self.assertNotIn('error.type', a)
            self.check_parent(s, VALID_TP)


class NginxTest(Checks):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(NGINX):
            raise unittest.SkipTest('nginx not installed (scripts/setup --tests)')
        cls.receiver = OtlpReceiver().start()
        cls.nginx = Nginx(cls.receiver).start()

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        cls.receiver.stop()

    def setUp(self):
        self.receiver.clear()

    def test_static_file_and_404_with_each_kind_of_traceparent(self):
        for tp in (VALID_TP, INVALID_TP, None):
            for path, status in (('/index.html', 200), ('/missing.txt', 404)):
                self.receiver.clear()
                args = ['-H', 'traceparent: ' + tp] if tp else []
                res = curl(args + [self.nginx.url + path])
                if status == 200:
                    self.assertEqual(res.stdout, Nginx.STATIC)
                (s,) = server_spans(self.receiver, 1)
                self.check_common(s, self.nginx.port, 'GET ' + path, path, status)
                self.check_parent(s, tp)
                a = attrs(s)
                self.assertEqual(a['http.route'], path)
                if status == 200:
                    self.assertEqual(a['http.response.body.size'], len(Nginx.STATIC))
                self.assertEqual(s['resource']['process.executable.name'], 'nginx')

    def test_sendfile_body_keep_alive_and_head(self):
        u = self.nginx.url
        res = curl([u + '/big.bin', u + '/index.html'])
        self.assertEqual(res.stdout, Nginx.BIG + Nginx.STATIC)
        curl(['-I', u + '/index.html'])
        spans = server_spans(self.receiver, 3)
        big = find_span(spans, name='GET /big.bin')
        self.assertEqual(attrs(big)['http.response.body.size'], len(Nginx.BIG))
        self.assertEqual(attrs(big)['http.response.status_code'], 200)
        small = find_span(spans, name='GET /index.html')
        self.assertEqual(attrs(big)['network.peer.port'], attrs(small)['network.peer.port'])
        head = find_span(spans, name='HEAD /index.html')
        self.assertEqual(attrs(head)['http.response.body.size'], 0)
        self.assertEqual(attrs(head)['http.response.status_code'], 200)


class ChainTest(unittest.TestCase):
    def test_client_server_server_is_one_trace(self):
        with OtlpReceiver() as receiver, AppServer(receiver, env={'OTEL_SERVICE_NAME': 'llm.back'}) as back, \
                AppServer(receiver, env={'OTEL_SERVICE_NAME': 'llm.front'}) as front:
            env = {'TRACEPARENT': VALID_TP, 'TRACESTATE': 'vendor=chain',
                   'BAGGAGE': 'user_id=u-1,tenant_id=t-9', 'OTEL_SERVICE_NAME': 'llm.client'}
            res = run_under_shim(['curl', '-s', '--max-time', '20', '-H', 'x-request-id: chain-42',
                                  front.url + '/call?url=' + back.url + '/headers'],
                                 env_extra=env, receiver=receiver, check=True, timeout=30)
            seen = json.loads(res.stdout)   # what the back server received
            spans = receiver.wait_for_spans(4, timeout=15)
            self.assertEqual(len(spans), 4, '\n'.join(format_span(s) for s in spans))

            def svc(s):
                return s['resource']['service.name']
            client = [s for s in spans if svc(s) == 'llm.client'][0]
            front_srv = [s for s in spans if svc(s) == 'llm.front' and s['kind'] == SPAN_KIND_SERVER][0]
            front_cli = [s for s in spans if svc(s) == 'llm.front' and s['kind'] == SPAN_KIND_CLIENT][0]
            back_srv = [s for s in spans if svc(s) == 'llm.back'][0]

            for s in spans:
                self.assertEqual(s['trace_id'], T, format_span(s))
            self.assertEqual(client['kind'], SPAN_KIND_CLIENT)
            self.assertEqual(client['parent_span_id'], P)
            self.assertEqual(front_srv['parent_span_id'], client['span_id'])
            self.assertEqual(front_cli['parent_span_id'], front_srv['span_id'])
            self.assertEqual(back_srv['kind'], SPAN_KIND_SERVER)
            self.assertEqual(back_srv['parent_span_id'], front_cli['span_id'])
            # Remote parents across processes, a local one inside the front server.
            self.assertEqual(front_srv['flags'], 0x301)
            self.assertEqual(front_cli['flags'], 0x101)
            self.assertEqual(back_srv['flags'], 0x301)
            self.assertEqual(front_srv['name'], 'GET /call')
            self.assertEqual(front_cli['name'], 'GET /headers')
            self.assertEqual(back_srv['name'], 'GET /headers')

            # What travelled: the back server got the front's client span as parent,
            # the caller's tracestate and baggage, and the x-request-id.
            self.assertEqual(seen['traceparent'], ['00-%s-%s-01' % (T, front_cli['span_id'])])
            self.assertEqual(seen['tracestate'], ['vendor=chain'])
            self.assertEqual(seen['baggage'], ['user_id=u-1,tenant_id=t-9'])
            self.assertEqual(seen['x-request-id'], ['chain-42'])
            for s in (front_srv, back_srv):
                a = attrs(s)
                self.assertEqual(s['trace_state'], 'vendor=chain')
                self.assertEqual(a['http.request.header.x-request-id'], 'chain-42')
                self.assertEqual(a['user_id'], 'u-1')
                self.assertEqual(a['tenant_id'], 't-9')
            self.assertEqual(front_cli['trace_state'], 'vendor=chain')
            # Inside the front server (one thread, so no timing involved): the call
            # is made while the request is served.
            self.assertLessEqual(front_cli['end_time_unix_nano'], front_srv['end_time_unix_nano'])
            self.assertLessEqual(front_srv['start_time_unix_nano'], front_cli['start_time_unix_nano'])


if __name__ == '__main__':
    unittest.main()
