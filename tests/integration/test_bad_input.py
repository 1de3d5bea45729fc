"""Hostile and odd traffic through the shim: garbage, binary protocols, huge
heads, a 1 MiB request line, invalid traceparent values from the program,
heads written in small pieces, malformed responses. The program must see
exactly what it would see without the shim, the peer must receive exactly the
program's bytes (plus injected lines only where a request was recognised), and
nothing may crash."""

import base64
import json
import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import OtlpReceiver, run_under_shim, strip_injected  # noqa: E402

PY = '/usr/bin/python3'

# The program under test: sends the chunks given on stdin (one send() each, looping on
# partial sends), half-closes, then prints everything it read, base64.
CLIENT = r'''
import base64, json, socket, sys
port = int(sys.argv[1]); chunks = [base64.b64decode(c) for c in json.loads(sys.stdin.read())]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for c in chunks:
    while c:
        n = s.send(c); c = c[n:]
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(65536)
    if not d: break
    got += d
s.close()
print(base64.b64encode(got).decode())
'''


class SinkServer:
    """Reads a connection until EOF (bounded), records it, answers with @reply."""

    def __init__(self, reply=b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(4)
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        c.settimeout(30)
        data = bytearray()
        while len(data) < 64 * 1024 * 1024:
            d = c.recv(1 << 20)
            if not d:
                break
            data += d
        c.sendall(self.reply)
        c.close()
        self.received.append(bytes(data))

    def close(self):
        self.sock.close()
        self.thread.join(5)


class BadInputTest(unittest.TestCase):
    def exchange(self, chunks, reply=b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', preload=True,
                 receiver=None):
        srv = SinkServer(reply)
        try:
            arg = json.dumps([base64.b64encode(c).decode() for c in chunks])
            res = run_under_shim([PY, '-c', CLIENT, str(srv.port)], preload=preload,
                                 receiver=receiver, check=True, timeout=120, input=arg.encode())
            srv.thread.join(30)
            self.assertEqual(base64.b64decode(res.stdout.strip()), reply, 'the program read other bytes')
            self.assertEqual(res.stderr, b'')
            return srv.received[0]
        finally:
            srv.close()

    def assert_unchanged(self, chunks, reply=b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'):
        got = self.exchange(chunks, reply)
        self.assertEqual(got, b''.join(chunks))

    def test_binary_and_tls_like_first_bytes(self):
        self.assert_unchanged([bytes(range(256)) * 64])
        self.assert_unchanged([b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + os.urandom(500)])
        self.assert_unchanged([b'*1\r\n$4\r\nPING\r\n'])
        self.assert_unchanged([b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + b'\x00' * 64])

    def test_garbage_answer_to_a_real_request(self):
        req = b'GET /g HTTP/1.1\r\nHost: x\r\n\r\n'
        got = self.exchange([req], reply=os.urandom(4096))
        self.assertEqual(strip_injected(got), req)

    def test_malformed_response_framing(self):
        req = b'GET /m HTTP/1.1\r\nHost: x\r\n\r\n'
        for reply in (b'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello',
                      b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad',
                      b'HTTP/1.1 2000 Weird\r\n\r\n', b'HTTP/1.1 200 OK\r\n' + b'X: y\r\n' * 20000):
            got = self.exchange([req], reply=reply)
            self.assertEqual(strip_injected(got), req)

    def test_head_over_64k_passes_through(self):
        req = b'GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * (70 * 1024) + b'\r\n\r\n'
        self.assert_unchanged([req])

    def test_one_mib_request_line(self):
        req = b'GET /' + b'p' * (1024 * 1024) + b' HTTP/1.1\r\nHost: x\r\n\r\n'
        self.assert_unchanged([req])

    def test_program_traceparent_values_are_never_touched(self):
        for value in (b'00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
                      b'00-00000000000000000000000000000000-00f067aa0ba902b7-01',
                      b'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
                      b'garbage', b'', b'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'):
            self.assert_unchanged([b'GET /tp HTTP/1.1\r\nHost: x\r\nTraceparent: ' + value + b'\r\n\r\n'])
        self.assert_unchanged([b'GET /tp HTTP/1.1\r\ntraceparent: a\r\ntraceparent: b\r\n\r\n'])

    def test_head_written_line_by_line_gets_injection_before_blank_line(self):
        chunks = [b'GET /lines HTTP/1.1\r\n', b'Host: x\r\n', b'Accept: */*\r\n', b'\r\n']
        with OtlpReceiver() as receiver:
            got = self.exchange(chunks, receiver=receiver)
            (s,) = receiver.wait_for_spans(1)
        lines = got.split(b'\r\n')
        self.assertEqual(lines[:3], [b'GET /lines HTTP/1.1', b'Host: x', b'Accept: */*'])
        self.assertTrue(lines[3].startswith(b'traceparent: 00-' + s['trace_id'].encode()))
        self.assertEqual(strip_injected(got), b''.join(chunks))
        self.assertEqual(s['name'], 'GET /lines')

    def test_head_written_byte_by_byte(self):
        req = b'POST /bytes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'
        with OtlpReceiver() as receiver:
            got = self.exchange([req[i:i + 1] for i in range(len(req))], receiver=receiver)
            (s,) = receiver.wait_for_spans(1)
        # The empty line's CR left in an earlier write than its LF: no place to
        # inject is left, so the request goes out exactly as written.
        self.assertEqual(got, req)
        self.assertEqual(s['name'], 'POST /bytes')

    def test_bad_pointers_get_the_programs_own_errors(self):
        # NULL/invalid buffers on a tracked socket: the program gets EFAULT
        # (or whatever libc says) exactly as without the shim, never a crash.
        script = (
            'import ctypes, socket, sys\n'
            'libc = ctypes.CDLL(None, use_errno=True)\n'
            's = socket.create_connection(("127.0.0.1", int(sys.argv[1])))\n'
            's.sendall(b"GET /p HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")\n'
            's.setblocking(False); fd = s.fileno(); out = []\n'
            'for name, args in (("write", (fd, None, 10)), ("writev", (fd, None, 1)),\n'
            '                   ("send", (fd, None, 10, 0)), ("sendmsg", (fd, None, 0)),\n'
            '                   ("recvmsg", (fd, None, 0)), ("recv", (fd, None, 10, 0)),\n'
            '                   ("read", (fd, None, 10)), ("readv", (fd, None, 1))):\n'
            '    r = getattr(libc, name)(*args)\n'
            '    out.append("%s=%d/%d" % (name, r, ctypes.get_errno()))\n'
            'print(" ".join(out))\n')
        srv = SinkServer()
        try:
            base = run_under_shim([PY, '-c', script, str(srv.port)], preload=False, check=True)
        finally:
            srv.close()
        srv = SinkServer()
        try:
            res = run_under_shim([PY, '-c', script, str(srv.port)], check=True)
        finally:
            srv.close()
        self.assertEqual(res.stdout, base.stdout)
        self.assertIn(b'recvmsg=-1/14', res.stdout)
        self.assertIn(b'write=-1/14', res.stdout)

    def test_random_http_like_fuzz(self):
        rnd = __import__('random').Random(1234)
        pieces = [b'GET ', b'POST ', b'/', b'a', b' HTTP/1.1', b'\r\n', b'\n', b'Host: x', b':', b' ',
                  b'Content-Length: 3', b'Transfer-Encoding: chunked', b'0\r\n\r\n', b'\x00', b'\xff']
        for _ in range(20):
            data = b''.join(rnd.choice(pieces) for _ in range(rnd.randint(1, 60)))
            got = self.exchange([data])
            self.assertEqual(strip_injected(got), data)


if __name__ == '__main__':
    unittest.main()
