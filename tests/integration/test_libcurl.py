"""libcurl under the shim: every transfer of an http(s) URL is one CLIENT span made at
the libcurl level, with traceparent added through CURLOPT_HTTPHEADER after the
program's own headers (which stay intact, in the program's order), and nothing at the
socket or TLS level below it. Programs: curl_easy.c (easy API), curl_multi.c (multi
API, curl_multi_perform and curl_multi_socket_action), the curl CLI (serial and
--parallel), curl --http2 against nginx over TLS, and a library loaded RTLD_LOCAL the
way Python extension modules load libcurl."""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpServer, Response, run_under_shim, strip_injected, TRACEPARENT,
    attrs, find_span, wait_until, SPAN_KIND_CLIENT, STATUS_ERROR, STATUS_UNSET, LOOPBACK)

PY = '/usr/bin/python3'
NGINX = shutil.which('nginx') or '/usr/sbin/nginx'
OPENSSL = shutil.which('openssl')
CC = shutil.which('cc') or shutil.which('gcc')
T = '4bf92f3577b34da6a3ce929d0e0e4736'
P = '00f067aa0ba902b7'
HEAD_RE = re.compile(rb'([A-Z]+ /\S* HTTP/1\.[01])\r\n((?:[^\r\n]+\r\n)*)\r\n')


def program(name):
    path = os.environ.get('OTELSHIM_' + name.upper())
    if not path:
        raise unittest.SkipTest('OTELSHIM_%s not set (run through meson test)' % name.upper())
    return path


def request_heads(wire):
    """[(request line, [header lines in order])] for every request head in one
    connection's bytes."""
    return [(m.group(1).decode(), m.group(2).decode().split('\r\n')[:-1])
            for m in HEAD_RE.finditer(wire)]


def all_heads(server):
    return [h for conn in server.connections() for h in request_heads(conn)]


def header_names(lines):
    return [l.split(':', 1)[0].lower() for l in lines]


def traceparent_of(lines):
    tps = [l.split(':', 1)[1].strip() for l in lines if l.lower().startswith('traceparent:')]
    return tps


def make_cert(tmp):
    """A self-signed certificate for 127.0.0.1/localhost made with the openssl CLI."""
    key, cert = os.path.join(tmp, 'key.pem'), os.path.join(tmp, 'cert.pem')
    subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '2', '-subj', '/CN=localhost', '-addext',
                    'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)
    return key, cert


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.release = threading.Event()
        cls.receiver = OtlpReceiver().start()
        cls.server = RecordingHttpServer(handler=cls.handle, body=b'{"ok":true}\n').start()

    @classmethod
    def tearDownClass(cls):
        cls.release.set()
        cls.server.stop()
        cls.receiver.stop()

    @classmethod
    def handle(cls, req):
        if req.target == '/slow':
            # Answered only when the test ends: the client gives up first.
            cls.release.wait(20)
            return Response(200, body=b'late\n')
        return None

    def setUp(self):
        self.receiver.clear()
        self.server.clear()

    def run_prog(self, argv, env=None, timeout=60):
        res = run_under_shim(argv, env_extra=env, receiver=self.receiver, check=True,
                             timeout=timeout)
        self.server.wait_for_closed()
        return res

    def spans_exactly(self, n):
        """The spans of a run that exited (its exit flushed them): exactly n."""
        spans = self.receiver.wait_for_spans(n) if n else []
        time.sleep(0.2)  # nothing more may trickle in
        self.assertEqual(len(self.receiver.spans()), n, [s['name'] for s in self.receiver.spans()])
        return spans

    def check_matches_wire(self, spans, heads):
        """Each request carries exactly one traceparent naming exactly one span, and
        every span is named by one request (no socket-level twin)."""
        by_id = {s['span_id']: s for s in spans}
        self.assertEqual(len(by_id), len(spans))
        seen = set()
        for line, lines in heads:
            tps = traceparent_of(lines)
            self.assertEqual(len(tps), 1, (line, lines))
            tp = TRACEPARENT.parse(tps[0])
            s = by_id.get(tp.span_id)
            self.assertIsNotNone(s, 'no span for %s (%s)' % (line, tp))
            self.assertEqual(s['trace_id'], tp.trace_id)
            self.assertEqual(s['kind'], SPAN_KIND_CLIENT)
            self.assertEqual(attrs(s)['url.path'], line.split()[1].split('?')[0])
            seen.add(tp.span_id)
        self.assertEqual(seen, set(by_id))

    def check_timings(self, s, tls=False):
        a = attrs(s)
        total = a['http.client.timing.total']
        self.assertGreater(total, 0)
        self.assertLessEqual(a['http.client.timing.first_byte'], total)
        self.assertLessEqual(a['http.client.timing.request_start'], a['http.client.timing.first_byte'])
        self.assertEqual('http.client.timing.tls_done' in a, tls)
        self.assertLessEqual(total * 1e9, s['end_time_unix_nano'] - s['start_time_unix_nano'] + 1e6)


class EasyTest(Base):
    def test_program_headers_kept_in_order_one_span_per_transfer(self):
        res = self.run_prog([program('curl_easy'), self.server.url, 'basic'])
        self.assertEqual(res.stdout.decode().splitlines(), [
            'GET /items/1 -> 200, 12 bytes', 'POST /submit -> 200, 12 bytes',
            'GET /items/2 -> 200, 12 bytes', 'GET /plain -> 200, 12 bytes', 'ok'])
        conns = [c for c in self.server.connections() if c]
        self.assertEqual(len(conns), 1, 'libcurl reused its connection')
        heads = request_heads(conns[0])
        self.assertEqual([h[0] for h in heads], [
            'GET /items/1 HTTP/1.1', 'POST /submit HTTP/1.1', 'GET /items/2 HTTP/1.1',
            'GET /plain HTTP/1.1'])
        # The program's own lines, in its order, then ours right after them
        # (libcurl sends its own headers first, then the list, then a POST's
        # Content-Type).
        for _, lines in heads[:3]:
            names = header_names(lines)
            self.assertIn('x-first', names)
            i = names.index('x-first')
            self.assertEqual(lines[i:i + 3], ['X-First: one', 'X-Second: two',
                                              'Accept: application/json'])
            self.assertEqual(names[i + 3], 'traceparent')
            self.assertEqual(names.count('accept'), 1)
        # The list taken away: only the traceparent remains.
        self.assertNotIn('x-first', header_names(heads[3][1]))
        self.assertEqual(header_names(heads[3][1])[-1], 'traceparent')
        self.assertEqual(self.server.requests()[1].body, b'a=1&b=2')
        self.assertEqual(self.server.errors(), [])

        spans = self.spans_exactly(4)
        self.check_matches_wire(spans, heads)
        port = self.server.port
        get = find_span(spans, 'GET /items/{id}', first=True)
        a = attrs(get)
        self.assertEqual(a['http.request.method'], 'GET')
        self.assertEqual(a['url.full'], 'http://127.0.0.1:%d/items/1' % port)
        self.assertEqual(a['url.scheme'], 'http')
        self.assertEqual(a['server.address'], '127.0.0.1')
        self.assertEqual(a['server.port'], port)
        self.assertEqual(a['network.peer.address'], '127.0.0.1')
        self.assertEqual(a['network.peer.port'], port)
        self.assertEqual(a['network.protocol.version'], '1.1')
        self.assertEqual(a['http.response.status_code'], 200)
        self.assertEqual(a['http.response.body.size'], 12)
        self.assertEqual(a['user_agent.original'], 'curl-easy-test/1.0')
        self.assertNotIn('error.type', a)
        self.assertEqual(get['status']['code'], STATUS_UNSET)
        self.assertEqual(get['parent_span_id'], '')
        self.assertEqual(get['flags'] & 0xff, 1)
        self.check_timings(get)
        post = find_span(spans, 'POST /submit')
        self.assertEqual(attrs(post)['http.request.body.size'], 7)
        self.assertEqual(len({s['trace_id'] for s in spans}), 4)

    def test_program_traceparent_parents_the_span_nothing_injected(self):
        tp = '00-%s-%s-01' % (T, P)
        self.run_prog([program('curl_easy'), self.server.url, 'own-tp', tp])
        (head,) = all_heads(self.server)
        self.assertEqual(traceparent_of(head[1]), [tp])
        self.assertEqual(header_names(head[1])[-2:], ['traceparent', 'x-own'])
        (s,) = self.spans_exactly(1)
        self.assertEqual(s['trace_id'], T)
        self.assertEqual(s['parent_span_id'], P)
        self.assertEqual(s['name'], 'GET /own')

    def test_duphandle_and_reset(self):
        res = self.run_prog([program('curl_easy'), self.server.url, 'dup'])
        self.assertTrue(res.stdout.endswith(b'ok\n'), res.stdout)
        heads = all_heads(self.server)
        self.assertEqual(sorted(h[0] for h in heads), [
            'GET /dup/a HTTP/1.1', 'GET /dup/a HTTP/1.1', 'GET /dup/b HTTP/1.1',
            'GET /reset HTTP/1.1'])
        for line, lines in heads:
            names = header_names(lines)
            self.assertEqual('x-dup' in names, line != 'GET /reset HTTP/1.1', (line, lines))
        self.check_matches_wire(self.spans_exactly(4), heads)

    def test_other_protocols_are_left_alone(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b'hello\n')
            f.flush()
            res = self.run_prog([program('curl_easy'), self.server.url, 'file', f.name])
        self.assertEqual(res.stdout, b'FILE -> 0, 6 bytes\nok\n')
        self.spans_exactly(0)

    def test_connection_refused(self):
        self.run_prog([program('curl_easy'), self.server.url, 'refused', 'http://127.0.0.1:9/r'])
        (s,) = self.spans_exactly(1)
        a = attrs(s)
        self.assertEqual(s['name'], 'GET /r')
        self.assertEqual(a['error.type'], 'CURLE_COULDNT_CONNECT')
        self.assertEqual(s['status']['code'], STATUS_ERROR)
        self.assertNotIn('http.response.status_code', a)

    def test_disabled_is_pure_passthrough(self):
        self.run_prog([program('curl_easy'), self.server.url, 'basic'],
                      env={'OTEL_SDK_DISABLED': 'true'})
        for _, lines in all_heads(self.server):
            self.assertEqual(traceparent_of(lines), [])
        self.spans_exactly(0)

    def test_unsampled_still_propagates(self):
        self.run_prog([program('curl_easy'), self.server.url, 'basic'],
                      env={'OTEL_TRACES_SAMPLER': 'always_off'})
        heads = all_heads(self.server)
        self.assertEqual(len(heads), 4)
        for _, lines in heads:
            (tp,) = traceparent_of(lines)
            self.assertFalse(TRACEPARENT.parse(tp).sampled)
        self.spans_exactly(0)


class MultiTest(Base):
    def check_multi(self, mode, n):
        res = self.run_prog([program('curl_multi'), self.server.url, mode, str(n)])
        lines = res.stdout.decode().splitlines()
        self.assertEqual(lines[-1], 'ok')
        self.assertEqual(sorted(lines[:-1]), sorted('GET /m/%d -> 200, 12 bytes' % i
                                                    for i in range(n)))
        heads = all_heads(self.server)
        self.assertEqual(len(heads), n)
        for line, hl in heads:
            i = int(line.split()[1].rsplit('/', 1)[1])
            names = header_names(hl)
            j = names.index('x-index')
            self.assertEqual(hl[j:j + 2], ['X-Index: %d' % i, 'X-Multi: yes'])
            self.assertEqual(names[-1], 'traceparent')
        spans = self.spans_exactly(n)
        self.check_matches_wire(spans, heads)
        for s in spans:
            self.assertEqual(attrs(s)['http.response.status_code'], 200)
            self.assertEqual(s['name'], 'GET /m/{id}')
            self.check_timings(s)

    def test_perform_and_info_read(self):
        self.check_multi('perform', 6)

    def test_socket_action(self):
        self.check_multi('socket', 4)

    def test_removed_before_the_response(self):
        res = run_under_shim([program('curl_multi'), self.server.url, 'abort', '1'],
                             receiver=self.receiver, check=True, timeout=60)
        self.release.set()  # the server's handler may go on now
        self.server.wait_for_closed()
        self.assertEqual(res.stdout, b'GET /slow aborted\nok\n')
        (head,) = request_heads(wait_until(lambda: b''.join(self.server.connections())))
        (s,) = self.spans_exactly(1)
        self.check_matches_wire([s], [head])
        self.assertEqual(attrs(s)['error.type'], 'no_response')
        self.assertEqual(s['status']['code'], STATUS_ERROR)


class CurlCliTest(Base):
    def test_cli_get(self):
        url = self.server.url + '/users/12345/orders?color=blue&sig=s3cr3t'
        argv = ['curl', '-s', '-H', 'X-App: 1', url]
        base = run_under_shim(argv, preload=False, check=True)
        self.server.wait_for_closed()
        plain = b''.join(self.server.connections())
        self.server.clear()
        res = self.run_prog(argv)
        self.assertEqual(res.stdout, base.stdout)
        wire = b''.join(self.server.connections())
        self.assertEqual(strip_injected(wire), plain)
        ((line, lines),) = request_heads(wire)
        self.assertEqual(header_names(lines)[-2:], ['x-app', 'traceparent'])
        (s,) = self.spans_exactly(1)
        self.check_matches_wire([s], [(line, lines)])
        a = attrs(s)
        self.assertEqual(s['name'], 'GET /users/{id}/orders')
        self.assertEqual(a['url.full'], 'http://127.0.0.1:%d/users/12345/orders?color=blue&sig=REDACTED'
                         % self.server.port)
        self.assertTrue(a['user_agent.original'].startswith('curl/'))
        self.assertEqual(s['resource']['process.executable.name'], 'curl')

    def test_cli_parallel_uses_the_multi_interface(self):
        u = self.server.url
        self.run_prog(['curl', '-s', '-Z', '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null',
                       u + '/p1', u + '/p2', u + '/p3'])
        heads = all_heads(self.server)
        self.assertEqual(sorted(h[0] for h in heads), ['GET /p1 HTTP/1.1', 'GET /p2 HTTP/1.1',
                                                       'GET /p3 HTTP/1.1'])
        self.check_matches_wire(self.spans_exactly(3), heads)

    def test_cli_program_traceparent(self):
        tp = '00-%s-%s-00' % (T, P)
        self.run_prog(['curl', '-s', '-o', '/dev/null', '-H', 'TraceParent: ' + tp, self.server.url + '/b'])
        (head,) = all_heads(self.server)
        self.assertEqual(traceparent_of(head[1]), [tp])
        # The parent said "not sampled": nothing recorded, nothing added.
        self.spans_exactly(0)


NGINX_CONF = '''
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format trace '$server_protocol|$request_method|$request_uri|$http_traceparent|$http_x_app';
    access_log {d}/access.log trace;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen {host}:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {d}/html;
    }}
}}
'''


def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TlsNginxTest(unittest.TestCase):
    """curl over TLS against nginx (HTTP/2 with ALPN, and HTTP/1.1); nginx runs
    without the shim and logs the traceparent it received."""

    BODY = b'served over tls\n'

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(NGINX) or not OPENSSL:
            raise unittest.SkipTest('nginx or openssl not installed (scripts/setup --tests)')
        cls.dir = tempfile.mkdtemp(prefix='osh-nginx-tls-')
        os.chmod(cls.dir, 0o755)
        for sub in ('html', 'tmp'):
            os.makedirs(os.path.join(cls.dir, sub))
        os.chmod(os.path.join(cls.dir, 'html'), 0o755)
        with open(os.path.join(cls.dir, 'html', 'index.html'), 'wb') as f:
            f.write(cls.BODY)
        cls.key, cls.cert = make_cert(cls.dir)
        cls.receiver = OtlpReceiver().start()
        cls.proc = None
        for _ in range(5):
            cls.port = free_port()
            conf = os.path.join(cls.dir, 'nginx.conf')
            with open(conf, 'w') as f:
                f.write(NGINX_CONF.format(d=cls.dir, host=LOOPBACK, port=cls.port, cert=cls.cert,
                                          key=cls.key))
            cls.proc = subprocess.Popen([NGINX, '-p', cls.dir, '-c', conf, '-e',
                                         os.path.join(cls.dir, 'error.log')],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and cls.proc.poll() is None:
                try:
                    socket.create_connection((LOOPBACK, cls.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.02)
        cls.tearDownClass()
        raise AssertionError('nginx did not start')

    @classmethod
    def tearDownClass(cls):
        if cls.proc is not None and cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait(5)
        cls.receiver.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.receiver.clear()

    def log_lines(self):
        try:
            with open(os.path.join(self.dir, 'access.log')) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def get(self, version_flag, path):
        before = len(self.log_lines())
        url = 'https://%s:%d%s' % (LOOPBACK, self.port, path)
        res = run_under_shim(['curl', '-s', '-k', version_flag, '-H', 'X-App: tls', url],
                             receiver=self.receiver, check=True)
        self.assertEqual(res.stdout, self.BODY)
        (line,) = wait_until(lambda: self.log_lines()[before:], message='the access log line')
        proto, method, uri, tp, app = line.split('|')
        self.assertEqual((method, uri, app), ('GET', path, 'tls'))
        spans = self.receiver.wait_for_spans(1)
        time.sleep(0.2)
        self.assertEqual(len(self.receiver.spans()), 1, 'one span, none from the TLS or socket level')
        (s,) = spans
        self.assertEqual(TRACEPARENT.for_span(s), tp)
        a = attrs(s)
        self.assertEqual(s['kind'], SPAN_KIND_CLIENT)
        self.assertEqual(a['url.scheme'], 'https')
        self.assertEqual(a['server.port'], self.port)
        self.assertEqual(a['url.full'], url)
        self.assertEqual(a['http.response.status_code'], 200)
        self.assertEqual(a['http.response.body.size'], len(self.BODY))
        self.assertGreater(a['http.client.timing.tls_done'], 0)
        return proto, a

    def test_http2(self):
        proto, a = self.get('--http2', '/index.html')
        self.assertEqual(proto, 'HTTP/2.0')
        self.assertEqual(a['network.protocol.version'], '2')

    def test_https_http1(self):
        proto, a = self.get('--http1.1', '/index.html?v=1')
        self.assertEqual(proto, 'HTTP/1.1')
        self.assertEqual(a['network.protocol.version'], '1.1')


class TlsProxy:
    """TLS in front of a plain TCP service (the OTLP receiver): the shim exports to
    https:// through libcurl, which the libcurl hooks must never trace."""

    def __init__(self, target_port, cert, key):
        self.target = target_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.sock.getsockname()[1]

    def loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(10)
            t = self.ctx.wrap_socket(c, server_side=True)
            u = socket.create_connection((LOOPBACK, self.target), timeout=10)
        except OSError:
            c.close()
            return

        def pump(src, dst):
            try:
                for _ in range(100000):
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(u, t), daemon=True)
        back.start()
        pump(t, u)
        back.join(10)
        t.close()
        u.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


class HttpsExportTest(Base):
    def test_export_over_https_is_invisible(self):
        if not OPENSSL:
            self.skipTest('openssl not installed')
        with tempfile.TemporaryDirectory() as tmp:
            key, cert = make_cert(tmp)
            proxy = TlsProxy(self.receiver.port, cert, key)
            try:
                env = {'OTEL_EXPORTER_OTLP_ENDPOINT': 'https://127.0.0.1:%d' % proxy.port,
                       'OTEL_EXPORTER_OTLP_CERTIFICATE': cert, 'OTEL_BSP_SCHEDULE_DELAY': '10'}
                self.run_prog([program('curl_easy'), self.server.url, 'basic'], env=env)
                spans = self.spans_exactly(4)
            finally:
                proxy.stop()
        self.assertTrue(all(attrs(s)['server.port'] == self.server.port for s in spans))
        for req in self.receiver.requests():
            self.assertNotIn('traceparent', req['headers'])


LOCAL_LIB = r'''
#include <curl/curl.h>
/* Called by a program that loaded this library RTLD_LOCAL: its libcurl is
 * not in the global scope, as with Python extension modules. */
int fetch(const char *url)
{
    CURL *h = curl_easy_init();
    struct curl_slist *l = curl_slist_append(NULL, "X-Local: 1");
    long code = 0;
    CURLcode rc;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    curl_slist_free_all(l);
    return rc == CURLE_OK ? (int)code : -(int)rc;
}
'''


class LocalLibcurlTest(Base):
    def test_libcurl_loaded_rtld_local(self):
        if not CC:
            self.skipTest('no C compiler')
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, 'fetchlib.c')
            lib = os.path.join(tmp, 'libfetch.so')
            with open(src, 'w') as f:
                f.write(LOCAL_LIB)
            subprocess.run([CC, '-shared', '-fPIC', '-o', lib, src, '-lcurl'], check=True,
                           capture_output=True, timeout=120)
            script = ('import ctypes,sys\n'
                      'lib=ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_LOCAL)\n'
                      'lib.fetch.argtypes=[ctypes.c_char_p]\n'
                      'print(lib.fetch(sys.argv[2].encode()))\n')
            res = self.run_prog([PY, '-c', script, lib, self.server.url + '/local'])
        # The body (libcurl's default write callback), then the status.
        self.assertEqual(res.stdout, b'{"ok":true}\n200\n')
        (head,) = all_heads(self.server)
        self.assertEqual(header_names(head[1])[-2:], ['x-local', 'traceparent'])
        self.check_matches_wire(self.spans_exactly(1), [head])


if __name__ == '__main__':
    unittest.main()
