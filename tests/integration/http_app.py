"""A small threaded HTTP server for test_server.py (stdlib only; run under the shim).

    python3 http_app.py [--http10] [--fork]

Listens on 127.0.0.1 on a free port, prints "PORT <n>" on stdout once it accepts
connections, and stops when its stdin reaches end of file. Routes:

    GET  /status/NNN     NNN with the body "status NNN\\n"
    GET  /headers        200, a JSON object of the request's header fields
                         (lowercase name -> list of values)
    POST /echo           200, the request body it read (Content-Length or chunked),
                         with X-Body-Sha256 and X-Body-Length of what it read
    GET  /call?url=U     calls U with urllib on the handling thread; answers with U's
                         status and body
    GET  /spawn?url=U    runs /bin/true with subprocess (vfork and close_range in the
                         child, on Python 3.10+), then calls U; answers with U's status
    GET  /pid            200, the pid of the process that handled the request
    GET  /stream         HTTP/1.0 only: a body without length, ended by the close
    anything else        404

Every request is handled on its own thread (ThreadingHTTPServer), keep-alive with
HTTP/1.1 unless --http10. With --fork, every connection is handled in a forked
child instead (socketserver.ForkingMixIn: a prefork-style server whose children
leave with os._exit), and GET /pid answers the handling process's pid.
"""

import hashlib
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _read_body(self):
        te = self.headers.get('Transfer-Encoding', '')
        if 'chunked' in te.lower():
            out = bytearray()
            for _ in range(1 << 20):
                size = int(self.rfile.readline(1024).split(b';', 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b'\r\n', b'\n', b''):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(16)
            raise ValueError('too many chunks')
        n = int(self.headers.get('Content-Length', '0'))
        return self.rfile.read(n)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split('/')
        if len(parts) == 3 and parts[1] == 'status' and parts[2].isdigit():
            code = int(parts[2])
            self._send(code, b'status %d\n' % code)
        elif url.path == '/pid':
            self._send(200, b'%d\n' % os.getpid())
        elif url.path == '/headers':
            fields = {}
            for name, value in self.headers.items():
                fields.setdefault(name.lower(), []).append(value)
            self._send(200, json.dumps(fields, sort_keys=True).encode())
        elif url.path in ('/call', '/spawn'):
            if url.path == '/spawn':
                subprocess.run(['/bin/true'], check=True)
            target = urllib.parse.parse_qs(url.query)['url'][0]
            try:
                with urllib.request.urlopen(target, timeout=20) as r:
                    status, body = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
            self._send(status, body)
        elif url.path == '/stream' and self.request_version == 'HTTP/1.0':
            self.close_connection = True
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain')
            self.end_headers()
            for i in range(5):
                self.wfile.write(b'line %d\n' % i)
        else:
            self._send(404, b'not found\n')

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        if self.path != '/echo':
            self._read_body()
            self._send(404, b'not found\n')
            return
        body = self._read_body()
        self._send(200, body, [('X-Body-Sha256', hashlib.sha256(body).hexdigest()),
                               ('X-Body-Length', str(len(body)))])


class ForkingHTTPServer(socketserver.ForkingMixIn, http.server.HTTPServer):
    pass


def main():
    if '--http10' in sys.argv[1:]:
        Handler.protocol_version = 'HTTP/1.0'
    if '--fork' in sys.argv[1:]:
        server = ForkingHTTPServer(('127.0.0.1', 0), Handler)
    else:
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    sys.stdout.write('PORT %d\n' % server.server_address[1])
    sys.stdout.flush()
    sys.stdin.read()
    server.shutdown()
    server.server_close()


if __name__ == '__main__':
    main()
