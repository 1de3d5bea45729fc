"""HTTPS under the shim (issue 4): real programs talking TLS through OpenSSL and GnuTLS.

Clients (curl -k, Python urllib with an unverified context, a C client on OpenSSL and
one on GnuTLS with non-blocking sockets and tiny send buffers, so that their writes
are retried) against a recording HTTPS server (Python ssl, a certificate made with
the openssl CLI): the server gets the traceparent, the bytes are otherwise the
program's own, and each request makes exactly one CLIENT span, https, with no
duplicate from the socket level. Then the server side: a Python HTTPS server under the
shim makes SERVER spans (https, continuing an incoming traceparent), and its handler's
own HTTPS call is their child."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpsServer, make_cert, run_under_shim, shim_env, strip_injected,
    attrs, find_span, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_UNSET)

PY = '/usr/bin/python3'
TP = re.compile(rb'\r\ntraceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\r\n', re.I)
T = '4bf92f3577b34da6a3ce929d0e0e4736'
P = '00f067aa0ba902b7'
BODY = b'{"ok":true}\n'


def program(name):
    path = os.environ.get('OTELSHIM_' + name.upper())
    if not path:
        raise unittest.SkipTest('OTELSHIM_%s not set (built by meson when its library '
                                'headers are installed)' % name.upper())
    return path


class Base(unittest.TestCase):
    slow = False

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, cls.key = make_cert(cls.tmp.name)
        cls.receiver = OtlpReceiver().start()
        cls.server = RecordingHttpsServer(cls.cert, cls.key, body=BODY, slow_reader=cls.slow,
                                          slow_chunk=4096, slow_delay=0.0005,
                                          slow_budget=60).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.receiver.stop()
        cls.tmp.cleanup()

    def setUp(self):
        self.receiver.clear()
        self.server.clear()

    def wire(self):
        self.server.wait_for_closed()
        return b''.join(self.server.connections())

    def only_client_spans(self, n):
        """Exactly @n spans, all CLIENT and https (none from the socket level)."""
        # Every span is exported before the program exits: the count is final.
        self.receiver.wait_for_spans(n)
        spans = self.receiver.spans()
        self.assertEqual(len(spans), n, [s['name'] for s in spans])
        for s in spans:
            self.assertEqual(s['kind'], SPAN_KIND_CLIENT)
            self.assertEqual(attrs(s)['url.scheme'], 'https')
        return spans

    def check_propagated(self, wire, span):
        """The one traceparent line in @wire names @span."""
        lines = TP.findall(wire)
        self.assertEqual(len(lines), 1, wire[:600])
        trace_id, span_id, flags = lines[0]
        self.assertEqual(trace_id.decode(), span['trace_id'])
        self.assertEqual(span_id.decode(), span['span_id'])
        self.assertEqual(flags, b'01')


class CurlTest(Base):
    # A libcurl-level hook may trace curl instead of the SSL level: the assertions
    # hold either way (one span per transfer, https, traceparent received).
    def test_curl_k(self):
        url = self.server.url + '/users/42/orders'
        res = run_under_shim(['curl', '-k', '-s', '--http1.1', url], receiver=self.receiver,
                             check=True)
        self.assertEqual(res.stdout, BODY)
        wire = self.wire()
        (s,) = self.only_client_spans(1)
        self.check_propagated(wire, s)
        a = attrs(s)
        self.assertEqual(a['server.port'], self.server.port)
        self.assertEqual(a['http.response.status_code'], 200)
        self.assertEqual(a['url.full'], url)
        self.assertEqual(s['status']['code'], STATUS_UNSET)
        (req,) = self.server.requests()
        self.assertEqual(req.target, '/users/42/orders')


class PythonClientTest(Base):
    SCRIPT = (
        'import ssl,sys,urllib.request\n'
        'u=sys.argv[1]\n'
        'ctx=ssl._create_unverified_context()\n'
        'print(urllib.request.urlopen(u+"/get/abc",context=ctx).read().decode().strip())\n'
        'data=bytes((i*31)%%251 for i in range(%d))\n'
        'r=urllib.request.Request(u+"/post",data=data,method="POST",'
        'headers={"Content-Type":"application/octet-stream"})\n'
        'print(urllib.request.urlopen(r,context=ctx).status)\n' % (100 * 1024))

    def test_urllib_get_and_100k_post(self):
        argv = [PY, '-c', self.SCRIPT, self.server.url]
        base = run_under_shim(argv, preload=False, check=True)
        plain = self.wire()
        self.server.clear()
        res = run_under_shim(argv, receiver=self.receiver, check=True)
        wire = self.wire()
        self.assertEqual(res.stdout, base.stdout)
        self.assertEqual(res.stdout, b'{"ok":true}\n200\n')
        # Only the injected lines differ; the 100 KB body is byte for byte the same.
        self.assertEqual(strip_injected(wire), plain)
        self.assertEqual(len(TP.findall(wire)), 2)
        self.assertEqual(len(self.server.requests()[-1].body), 100 * 1024)

        spans = self.only_client_spans(2)
        get = find_span(spans, name='GET /get/abc')
        post = find_span(spans, name='POST /post')
        port = self.server.port
        self.assertEqual(attrs(get)['url.full'], 'https://127.0.0.1:%d/get/abc' % port)
        self.assertEqual(attrs(post)['url.full'], 'https://127.0.0.1:%d/post' % port)
        for s in (get, post):
            a = attrs(s)
            self.assertEqual(a['server.address'], '127.0.0.1')
            self.assertEqual(a['server.port'], port)
            self.assertEqual(a['network.peer.address'], '127.0.0.1')
            self.assertEqual(a['network.peer.port'], port)
            self.assertEqual(a['http.response.status_code'], 200)
            self.assertEqual(a['network.protocol.version'], '1.1')
        self.assertEqual(attrs(post)['http.request.body.size'], 100 * 1024)
        self.assertEqual(attrs(get)['http.response.body.size'], len(BODY))
        got = {m[1].decode() for m in TP.findall(wire)}
        self.assertEqual(got, {get['span_id'], post['span_id']})


class RetryingClientTest(Base):
    """C clients whose one big write the TLS library asks to retry (the server reads
    slowly through a small receive buffer)."""
    slow = True

    def run_client(self, name, mode, body=1 << 20):
        exe = program(name)
        sent = os.path.join(self.tmp.name, 'sent-%s-%s' % (name, mode))
        res = run_under_shim([exe, '127.0.0.1', str(self.server.port), '/upload/7', str(body),
                              mode, sent], receiver=self.receiver, check=True, timeout=120)
        wire = self.wire()
        with open(sent, 'rb') as f:
            expected = f.read()
        self.assertEqual(res.stdout, b'status 200\n' + BODY)
        self.assertEqual(strip_injected(wire), expected)
        (s,) = self.only_client_spans(1)
        self.check_propagated(wire, s)
        a = attrs(s)
        self.assertEqual(s['name'], 'POST /upload/{id}')
        self.assertEqual(a['url.full'], 'https://127.0.0.1:%d/upload/7' % self.server.port)
        self.assertEqual(a['server.port'], self.server.port)
        self.assertEqual(a['http.request.body.size'], body)
        self.assertEqual(a['http.response.status_code'], 200)
        self.assertEqual(a['network.peer.address'], '127.0.0.1')
        return res.stderr.decode()

    def retries(self, stderr, key):
        m = re.search(r'%s=(\d+)' % key, stderr)
        self.assertIsNotNone(m, stderr)
        return int(m.group(1))

    def test_openssl_want_write_retried_with_same_buffer(self):
        err = self.run_client('tls_client', 'same')
        self.assertGreater(self.retries(err, 'want_write'), 0, err)

    def test_openssl_moving_write_buffer(self):
        err = self.run_client('tls_client', 'moving')
        self.assertGreater(self.retries(err, 'want_write'), 0, err)

    def test_openssl_partial_write_mode(self):
        err = self.run_client('tls_client', 'partial')
        self.assertGreater(self.retries(err, 'calls'), 2, err)

    def test_openssl_handshake_inside_the_first_write(self):
        err = self.run_client('tls_client', 'implicit')
        self.assertGreater(self.retries(err, 'want_read') + self.retries(err, 'want_write'), 0,
                           err)

    def test_gnutls_again_retried_with_same_arguments(self):
        err = self.run_client('gnutls_client', 'same')
        self.assertGreater(self.retries(err, 'again'), 0, err)

    def test_gnutls_corked_request_seen_once(self):
        err = self.run_client('gnutls_client', 'cork')
        self.assertGreater(self.retries(err, 'calls'), 10, err)

    def test_gnutls_again_retried_with_null(self):
        err = self.run_client('gnutls_client', 'null')
        self.assertGreater(self.retries(err, 'again'), 0, err)


# A library with its own copy of libssl (as Python wheels vendor one under another soname).
VENDORED_USER = r'''
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ssl.h>

/* One GET over the vendored libssl; returns the status, or < 0. */
int fetch(int port)
{
	static const char req[] = "GET /vendored HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				  "Connection: close\r\n\r\n";
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	char buf[4096];
	int fd, n, got = 0, status = -4;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		return -1;
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1)
		return -2;
	if (SSL_write(ssl, req, sizeof(req) - 1) != (int)sizeof(req) - 1)
		return -3;
	while ((n = SSL_read(ssl, buf + got, (int)sizeof(buf) - 1 - got)) > 0)
		got += n;
	buf[got] = 0;
	if (got > 12 && !memcmp(buf, "HTTP/1.1 ", 9))
		status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return status;
}
'''

VENDORED_DRIVER = (
    'import ctypes,ssl,sys,urllib.request\n'
    'ctx=ssl._create_unverified_context()\n'
    'print(urllib.request.urlopen(sys.argv[2]+"/system",context=ctx).status)\n'
    'print(ctypes.CDLL(sys.argv[1]).fetch(int(sys.argv[3])))\n')


class VendoredLibsslTest(Base):
    """Two copies of libssl in one process: Python's (the system's, loaded RTLD_LOCAL by
    _ssl) and a library's own under another soname. Each call goes to the copy its
    caller uses: the vendored library's SSL objects handed to the system libssl would
    crash it."""

    def build(self):
        cc = shutil.which('cc')
        if not cc:
            self.skipTest('no C compiler')
        real = os.path.realpath('/usr/lib/x86_64-linux-gnu/libssl.so.3')
        if not os.path.exists(real):
            self.skipTest('no libssl.so.3')
        d = os.path.join(self.tmp.name, 'vendored')
        os.makedirs(d, exist_ok=True)
        with open(real, 'rb') as f:
            data = f.read()
        # A copy under another soname (same length, patched in place).
        self.assertEqual(data.count(b'libssl.so.3\0'), 1)
        with open(os.path.join(d, 'libosh.so.3'), 'wb') as f:
            f.write(data.replace(b'libssl.so.3\0', b'libosh.so.3\0'))
        src = os.path.join(d, 'user.c')
        with open(src, 'w') as f:
            f.write(VENDORED_USER)
        lib = os.path.join(d, 'libuser.so')
        res = subprocess.run([cc, '-shared', '-fPIC', '-o', lib, src, '-L' + d, '-l:libosh.so.3',
                              '-Wl,-rpath,' + d], capture_output=True, timeout=60)
        if res.returncode != 0:
            self.skipTest('cannot build the vendored-libssl library: %s' % res.stderr[-500:])
        return lib

    def test_each_call_goes_to_its_own_copy(self):
        lib = self.build()
        res = run_under_shim([PY, '-c', VENDORED_DRIVER, lib, self.server.url,
                              str(self.server.port)], receiver=self.receiver, check=True,
                             env_extra={'OTEL_LOG_LEVEL': 'debug'})
        self.assertEqual(res.stdout, b'200\n200\n')
        # Same code in both copies here, so a call sent to the wrong one would still
        # work: the shim's debug log says which copy each call site went to.
        err = res.stderr.decode(errors='replace')
        self.assertRegex(err, r'SSL_write calls go to \S*/libssl\.so\.3\n')
        self.assertIn('SSL_write calls go to %s' % os.path.join(os.path.dirname(lib),
                                                                'libosh.so.3'), err)
        spans = self.only_client_spans(2)
        find_span(spans, name='GET /system')
        v = find_span(spans, name='GET /vendored')
        self.assertEqual(attrs(v)['url.full'], 'https://127.0.0.1/vendored')
        self.assertEqual(len(TP.findall(self.wire())), 2)


# A Python HTTPS server for the server-side tests (run under the shim).
APP = r'''
import hashlib, http.server, ssl, sys, threading, urllib.parse, urllib.request

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def _send(self, status, body):
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == '/call':
            target = urllib.parse.parse_qs(u.query)['url'][0]
            ctx = ssl._create_unverified_context()
            with urllib.request.urlopen(target, context=ctx) as r:
                self._send(r.status, r.read())
            return
        self._send(200, ('tp=%s' % self.headers.get('traceparent')).encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        self._send(201, hashlib.sha256(data).hexdigest().encode())

srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print('PORT %d' % srv.server_address[1], flush=True)
sys.stdin.read()
srv.shutdown()
'''


class ServerTest(Base):
    def start_app(self):
        app = os.path.join(self.tmp.name, 'https_app.py')
        with open(app, 'w') as f:
            f.write(APP)
        proc = subprocess.Popen([PY, app, self.cert, self.key],
                                env=shim_env(None, self.receiver), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        line = proc.stdout.readline().decode()
        if not line.startswith('PORT '):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            self.fail('https_app.py did not start: %r %s' % (line, err[-2000:].decode()))
        return proc, int(line.split()[1])

    def stop_app(self, proc):
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail('https_app.py did not stop')
        self.assertEqual(proc.returncode, 0, proc.stderr.read().decode())
        proc.stdout.close()
        proc.stderr.close()

    def curl(self, args):
        return run_under_shim(['curl', '-k', '-s', '--http1.1', '--max-time', '20'] + args,
                              preload=False, check=True).stdout

    def test_server_spans_are_https_and_continue_the_caller(self):
        proc, port = self.start_app()
        try:
            base = 'https://127.0.0.1:%d' % port
            tp = '00-%s-%s-01' % (T, P)
            out = self.curl(['-H', 'traceparent: ' + tp, base + '/items/42'])
            self.assertEqual(out, ('tp=%s' % tp).encode())  # nothing added on the way in
            body = bytes((i * 7) % 256 for i in range(50 * 1024))
            with open(os.path.join(self.tmp.name, 'body'), 'wb') as f:
                f.write(body)
            out = self.curl(['--data-binary', '@' + os.path.join(self.tmp.name, 'body'),
                             base + '/up'])
            self.assertEqual(out, hashlib.sha256(body).hexdigest().encode())
        finally:
            self.stop_app(proc)
        spans = self.receiver.wait_for_spans(2)
        spans = self.receiver.spans()
        self.assertEqual(len(spans), 2, [s['name'] for s in spans])
        get = find_span(spans, name='GET /items/{id}')
        post = find_span(spans, name='POST /up')
        for s in (get, post):
            a = attrs(s)
            self.assertEqual(s['kind'], SPAN_KIND_SERVER)
            self.assertEqual(a['url.scheme'], 'https')
            self.assertEqual(a['server.port'], port)
            self.assertEqual(a['client.address'], '127.0.0.1')
        self.assertEqual(get['trace_id'], T)
        self.assertEqual(get['parent_span_id'], P)
        self.assertEqual(attrs(get)['url.path'], '/items/42')
        self.assertEqual(attrs(get)['http.response.status_code'], 200)
        self.assertEqual(attrs(post)['http.request.body.size'], 50 * 1024)
        self.assertEqual(attrs(post)['http.response.status_code'], 201)
        self.assertNotEqual(post['trace_id'], T)
        self.assertEqual(post['parent_span_id'], '')

    def test_handler_https_call_is_a_child_of_the_server_span(self):
        proc, port = self.start_app()
        try:
            target = self.server.url + '/downstream'
            out = self.curl(['https://127.0.0.1:%d/call?url=%s' % (port, target)])
            self.assertEqual(out, BODY)
        finally:
            self.stop_app(proc)
        wire = self.wire()
        spans = self.receiver.wait_for_spans(2)
        spans = self.receiver.spans()
        self.assertEqual(len(spans), 2, [s['name'] for s in spans])
        srv = find_span(spans, kind=SPAN_KIND_SERVER)
        cli = find_span(spans, kind=SPAN_KIND_CLIENT)
        self.assertEqual(attrs(srv)['url.scheme'], 'https')
        self.assertEqual(attrs(cli)['url.full'], target)
        self.assertEqual(cli['trace_id'], srv['trace_id'])
        self.assertEqual(cli['parent_span_id'], srv['span_id'])
        self.check_propagated(wire, cli)


if __name__ == '__main__':
    unittest.main()
