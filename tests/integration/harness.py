"""Helpers for otelshim's integration tests (Debian's /usr/bin/python3, stdlib + protobuf).

- build/shim discovery: repo_root(), build_dir(), shim_path()
- run_under_shim(): run a real program with libotelshim.so preloaded
- RecordingHttpServer: raw-socket HTTP/1.1 server recording the exact bytes received
- parse_requests() / strip_injected(): request framing and removal of injected headers
- TRACEPARENT: make and parse W3C traceparent values
- attrs(), find_span(), find_spans(): span assertions over OtlpReceiver dicts

Everything binds 127.0.0.1 only; every loop and wait is bounded by a count or deadline.
"""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import NamedTuple

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))

sys.path.insert(0, os.path.join(_REPO, 'tests', 'receiver'))
from otlp_receiver import OtlpReceiver, format_span  # noqa: E402

LOOPBACK = '127.0.0.1'

__all__ = [
    'OtlpReceiver', 'format_span', 'repo_root', 'build_dir', 'shim_path', 'shim_env',
    'run_under_shim', 'RecordingHttpServer', 'HttpRequest', 'Response', 'parse_requests',
    'strip_injected', 'TRACEPARENT', 'Traceparent', 'attrs', 'find_span', 'find_spans',
    'ABSENT', 'SPAN_KIND_CLIENT', 'SPAN_KIND_SERVER', 'SPAN_KIND_INTERNAL',
    'STATUS_UNSET', 'STATUS_OK', 'STATUS_ERROR', 'wait_until',
]

SPAN_KIND_UNSPECIFIED = 0
SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


# ---------------------------------------------------------------------------------------
# Paths

def repo_root():
    return _REPO


def build_dir():
    """OTELSHIM_BUILD_DIR (set by meson test), else <repo>/build."""
    d = os.environ.get('OTELSHIM_BUILD_DIR')
    if d:
        return os.path.abspath(d)
    return os.path.join(_REPO, 'build')


def shim_path():
    return os.path.join(build_dir(), 'libotelshim.so')


def wait_until(cond, timeout=10.0, interval=0.02, message='condition'):
    """Poll cond() until truthy (returned) or raise AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError('timed out after %.1fs waiting for %s' % (timeout, message))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Running programs under the shim

# Inherited variables that would make a test depend on the developer's shell.
_SCRUB_PREFIXES = ('OTEL_', 'OTELSHIM_')
_SCRUB_NAMES = ('LD_PRELOAD', 'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY',
                'all_proxy', 'ALL_PROXY', 'ftp_proxy', 'FTP_PROXY')


def shim_env(env_extra=None, receiver=None, preload=True):
    """Environment for a program under test (see run_under_shim)."""
    env = {}
    for k, v in os.environ.items():
        if k.startswith(_SCRUB_PREFIXES) or k in _SCRUB_NAMES:
            continue
        env[k] = v
    # Keep OTELSHIM_BUILD_DIR: programs under test may be our own helpers that need it.
    if 'OTELSHIM_BUILD_DIR' in os.environ:
        env['OTELSHIM_BUILD_DIR'] = os.environ['OTELSHIM_BUILD_DIR']
    env['NO_PROXY'] = env['no_proxy'] = '127.0.0.1,localhost'
    env['OTEL_BSP_SCHEDULE_DELAY'] = '100'
    env['OTEL_LOG_LEVEL'] = 'warn'
    if receiver is not None:
        env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.endpoint
    if preload:
        env['LD_PRELOAD'] = shim_path()
    for k, v in (env_extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def run_under_shim(argv, env_extra=None, receiver=None, timeout=30, preload=True, cwd=None,
                   input=None, check=False):
    """Run argv with libotelshim.so preloaded; returns a CompletedProcess (bytes output).

    env: the inherited environment minus OTEL_*/OTELSHIM_*/LD_PRELOAD/proxy variables,
    plus LD_PRELOAD=<shim>, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint (if given),
    OTEL_BSP_SCHEDULE_DELAY=100, OTEL_LOG_LEVEL=warn, then env_extra (a value of None
    removes the variable). preload=False runs the same command and environment without
    the shim. On timeout the whole process group is killed and TimeoutExpired raised.
    """
    if preload and not os.path.exists(shim_path()):
        raise FileNotFoundError('shim not built: %s (set OTELSHIM_BUILD_DIR)' % shim_path())
    env = shim_env(env_extra, receiver, preload)
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        # Kill the group: a grandchild holding our pipes would block communicate().
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = b'', b''
        raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err)
    res = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and res.returncode != 0:
        raise AssertionError('%r exited %d\nstdout: %r\nstderr: %s' % (
            argv, res.returncode, out[-2000:], err[-4000:].decode(errors='replace')))
    return res


# ---------------------------------------------------------------------------------------
# HTTP/1.1 request framing

MAX_HEAD = 64 * 1024
MAX_LINE = 8192


class HttpRequest(NamedTuple):
    method: str
    target: str
    headers: dict       # lowercase name -> list of values, in order
    body: bytes         # de-chunked


class _Frame(NamedTuple):
    start: int          # offset of the request line
    head_end: int       # offset just after the empty line ending the head
    end: int            # offset just after the body (None: incomplete)
    request: HttpRequest
    expects_continue: bool
    version: str


class FramingError(Exception):
    pass


def _read_line(data, pos):
    """Return (line without EOL, next pos) or None if no full line yet."""
    nl = data.find(b'\n', pos, pos + MAX_LINE + 1)
    if nl < 0:
        if len(data) - pos > MAX_LINE:
            raise FramingError('line too long at %d' % pos)
        return None
    line = data[pos:nl]
    if line.endswith(b'\r'):
        line = line[:-1]
    return line, nl + 1


def _parse_head(data, pos):
    """Parse a request head at pos: (method, target, version, headers, head_end) or None."""
    # Tolerate stray empty lines before a request line (RFC 9112 section 2.2).
    for _ in range(8):
        r = _read_line(data, pos)
        if r is None:
            return None
        if r[0]:
            break
        pos = r[1]
    else:
        raise FramingError('too many empty lines')
    start_line, p = r
    parts = start_line.split(b' ')
    if len(parts) != 3 or not parts[2].startswith(b'HTTP/'):
        raise FramingError('bad request line %r' % start_line[:200])
    headers = {}
    for _ in range(200):
        r = _read_line(data, p)
        if r is None:
            return None
        line, p = r
        if p - pos > MAX_HEAD:
            raise FramingError('head too large')
        if not line:
            return (parts[0].decode('latin-1'), parts[1].decode('latin-1'),
                    parts[2].decode('latin-1'), headers, p)
        name, sep, value = line.partition(b':')
        if not sep:
            raise FramingError('bad header line %r' % line[:200])
        headers.setdefault(name.strip().lower().decode('latin-1'), []).append(
            value.strip().decode('latin-1'))
    raise FramingError('too many header lines')


def _chunked_end(data, pos):
    """Return (end offset, de-chunked body) of a chunked body at pos, or None if partial."""
    body = bytearray()
    for _ in range(1 << 20):
        r = _read_line(data, pos)
        if r is None:
            return None
        line, pos = r
        try:
            size = int(line.split(b';', 1)[0].strip(), 16)
        except ValueError:
            raise FramingError('bad chunk size line %r' % line[:100])
        if size == 0:
            # Trailer section, ended by an empty line.
            for _ in range(200):
                r = _read_line(data, pos)
                if r is None:
                    return None
                line, pos = r
                if not line:
                    return pos, bytes(body)
            raise FramingError('too many trailer lines')
        if len(data) < pos + size:
            return None
        body += data[pos:pos + size]
        pos += size
        r = _read_line(data, pos)
        if r is None:
            return None
        if r[0]:
            raise FramingError('missing CRLF after chunk')
        pos = r[1]
    raise FramingError('too many chunks')


def _frame_at(data, pos):
    """Frame one request at pos; None if its head is not complete yet."""
    h = _parse_head(data, pos)
    if h is None:
        return None
    method, target, version, headers, head_end = h
    start = pos
    expects = any(v.lower() == '100-continue' for v in headers.get('expect', []))
    te = ','.join(headers.get('transfer-encoding', [])).lower()
    if 'chunked' in te:
        c = _chunked_end(data, head_end)
        if c is None:
            return _Frame(start, head_end, None,
                          HttpRequest(method, target, headers, b''), expects, version)
        end, body = c
    else:
        cl = headers.get('content-length')
        n = 0
        if cl:
            try:
                n = int(cl[0])
            except ValueError:
                raise FramingError('bad Content-Length %r' % cl[0])
        if len(data) < head_end + n:
            return _Frame(start, head_end, None,
                          HttpRequest(method, target, headers, b''), expects, version)
        end = head_end + n
        body = bytes(data[head_end:end])
    return _Frame(start, head_end, end, HttpRequest(method, target, headers, body), expects,
                  version)


def _frames(data):
    """Yield frames of consecutive requests in data; stops at the first incomplete or
    unparseable one (the rest is treated as opaque)."""
    pos = 0
    for _ in range(100000):
        if pos >= len(data):
            return
        try:
            f = _frame_at(data, pos)
        except FramingError:
            return
        if f is None:
            return
        yield f
        if f.end is None:
            return
        pos = f.end


def parse_requests(data):
    """Parse all complete requests in data (a connection's client-to-server bytes)."""
    return [f.request for f in _frames(data) if f.end is not None]


_INJECTED = re.compile(rb'(?i)(traceparent|tracestate|baggage)[ \t]*:')


def strip_injected(data):
    """Remove traceparent/tracestate/baggage header lines from request heads only.

    Request bodies (framed by Content-Length or chunked encoding) and anything after an
    incomplete or unparseable request are left byte-for-byte untouched."""
    data = bytes(data)
    out = bytearray()
    pos = 0
    for f in _frames(data):
        out += data[pos:f.start]
        p = f.start
        for _ in range(1000):
            if p >= f.head_end:
                break
            nl = data.index(b'\n', p, f.head_end)
            line = data[p:nl + 1]
            if not _INJECTED.match(line):
                out += line
            p = nl + 1
        pos = f.head_end
        if f.end is None:
            break
        out += data[f.head_end:f.end]
        pos = f.end
    out += data[pos:]
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Recording HTTP server

class Response:
    """An answer from a RecordingHttpServer handler.

    framing: 'length' (Content-Length), 'chunked', 'close' (no length; the connection
    closes after the body) or 'none' (no body and no length header: 1xx/204/304).
    headers: list of (name, value). close: add Connection: close and close afterwards.
    """

    def __init__(self, status=200, body=b'ok\n', headers=None, framing=None, close=False,
                 reason=None, chunk_size=5):
        self.status = status
        self.body = body
        self.headers = list(headers or [('Content-Type', 'text/plain')])
        if framing is None:
            framing = 'none' if status in (204, 304) or status < 200 else 'length'
        self.framing = framing
        self.close = close
        self.reason = reason
        self.chunk_size = chunk_size


_REASONS = {100: 'Continue', 200: 'OK', 201: 'Created', 204: 'No Content',
            301: 'Moved Permanently', 302: 'Found', 304: 'Not Modified', 400: 'Bad Request',
            401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
            417: 'Expectation Failed', 429: 'Too Many Requests', 500: 'Internal Server Error',
            502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout'}


def _serialize(resp, method, close=False):
    status_line = 'HTTP/1.1 %d %s\r\n' % (resp.status, resp.reason or
                                          _REASONS.get(resp.status, 'Status'))
    head = [status_line.encode('latin-1')]
    for name, value in resp.headers:
        head.append(('%s: %s\r\n' % (name, value)).encode('latin-1'))
    body = resp.body or b''
    if resp.framing == 'length':
        head.append(b'Content-Length: %d\r\n' % len(body))
    elif resp.framing == 'chunked':
        head.append(b'Transfer-Encoding: chunked\r\n')
    if close or resp.close or resp.framing == 'close':
        head.append(b'Connection: close\r\n')
    head.append(b'\r\n')
    out = b''.join(head)
    if method == 'HEAD' or resp.framing == 'none':
        return out
    if resp.framing == 'chunked':
        step = max(1, resp.chunk_size)
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            out += b'%x\r\n' % len(piece) + piece + b'\r\n'
        out += b'0\r\n\r\n'
        return out
    return out + body


class RecordingHttpServer:
    """Raw-socket HTTP/1.1 server on 127.0.0.1 that records the exact request bytes.

    Each accepted connection gets a thread that appends every received byte to that
    connection's record, frames requests (Content-Length / chunked), and answers each:

    handler(request) -> Response or None; None (or no handler) means the defaults below.
    Defaults: /status/NNN -> status NNN; other paths -> 200 with body `body`; framing
    from `framing` ('length', 'chunked' or 'close'); HEAD gets the head only; 204/304
    get no body. Keep-alive unless the request asks to close (or is HTTP/1.0 without
    keep-alive). continue_mode for `Expect: 100-continue`: 'send' (write
    "HTTP/1.1 100 Continue" before reading the body), 'ignore' (just wait for the body),
    'reject' (answer 417 and close without reading the body).
    slow_reader: tiny SO_RCVBUF set before listen, then recv() of slow_chunk bytes with
    slow_delay pauses, for at most slow_budget seconds per connection (then full speed).
    """

    def __init__(self, handler=None, body=b'ok\n', framing='length', continue_mode='send',
                 slow_reader=False, slow_chunk=16, slow_delay=0.002, slow_budget=5.0,
                 rcvbuf=1024, idle_timeout=15.0):
        self.handler = handler
        self.body = body
        self.framing = framing
        self.continue_mode = continue_mode
        self.slow_reader = slow_reader
        self.slow_chunk = slow_chunk
        self.slow_delay = slow_delay
        self.slow_budget = slow_budget
        self.rcvbuf = rcvbuf
        self.idle_timeout = idle_timeout
        self._lock = threading.Condition()
        self._conn_bytes = []      # bytearray per connection, in accept order
        self._conn_reqs = []       # list of HttpRequest per connection
        self._conn_open = []       # bool per connection
        self._socks = []
        self._threads = []
        self._errors = []
        self._listener = None
        self._accept_thread = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        if self._listener is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.slow_reader:
            # Must be set before listen(): accepted sockets inherit it, and the window
            # is negotiated during the handshake.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.bind((LOOPBACK, 0))
        s.listen(64)
        self._listener = s
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name='recording-http-accept')
        self._accept_thread.start()
        return self

    def stop(self, timeout=5.0):
        if self._listener is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._listener = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def port(self):
        return self._listener.getsockname()[1]

    @property
    def host_port(self):
        return '%s:%d' % (LOOPBACK, self.port)

    @property
    def url(self):
        """http://127.0.0.1:PORT (no trailing slash)."""
        return 'http://%s' % self.host_port

    # -- results ---------------------------------------------------------------------

    def connections(self):
        """All bytes received, one bytes object per connection, in accept order."""
        with self._lock:
            return [bytes(b) for b in self._conn_bytes]

    def requests(self):
        """Parsed requests (method, target, headers, body), in order of arrival per
        connection, connections in accept order."""
        with self._lock:
            return [r for reqs in self._conn_reqs for r in reqs]

    def requests_by_connection(self):
        with self._lock:
            return [list(reqs) for reqs in self._conn_reqs]

    def errors(self):
        """Framing errors seen (a test should usually assert this is empty)."""
        with self._lock:
            return list(self._errors)

    def clear(self):
        with self._lock:
            for b in self._conn_bytes:
                del b[:]
            for r in self._conn_reqs:
                del r[:]
            self._errors.clear()

    def wait_for_requests(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for reqs in self._conn_reqs for r in reqs]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        'expected >= %d request(s) within %.1fs, got %d: %r; errors %r' % (
                            n, timeout, len(got), [(r.method, r.target) for r in got],
                            self._errors))
                self._lock.wait(min(left, 0.5))

    def wait_for_closed(self, timeout=10.0):
        """Wait until every accepted connection was closed by the peer or by us."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(self._conn_open):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('connections still open after %.1fs' % timeout)
                self._lock.wait(min(left, 0.5))

    # -- internals -------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                r, _, _ = select.select([self._listener], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                c, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                idx = len(self._conn_bytes)
                self._conn_bytes.append(bytearray())
                self._conn_reqs.append([])
                self._conn_open.append(True)
                self._socks.append(c)
                t = threading.Thread(target=self._serve_conn, args=(c, idx), daemon=True,
                                     name='recording-http-%d' % idx)
                self._threads.append(t)
            t.start()

    def _recv(self, c, started):
        if self.slow_reader and time.monotonic() - started < self.slow_budget:
            if self.slow_delay > 0:
                time.sleep(self.slow_delay)
            return c.recv(self.slow_chunk)
        return c.recv(65536)

    def _default_response(self, req):
        m = re.match(r'^/status/(\d{3})(?:[/?]|$)', req.target)
        if m:
            status = int(m.group(1))
            return Response(status, body=b'status %d\n' % status if status not in
                            (204, 304) and status >= 200 else b'')
        return Response(200, body=self.body, framing=self.framing)

    def _wants_close(self, req, version):
        conn = ','.join(req.headers.get('connection', [])).lower()
        if 'close' in conn:
            return True
        return version == 'HTTP/1.0' and 'keep-alive' not in conn

    def _serve_conn(self, c, idx):
        started = time.monotonic()
        c.settimeout(self.idle_timeout)
        buf = bytearray()
        pos = 0               # start of the next unanswered request in buf
        continued = -1        # pos of the request that already got its 100 Continue
        try:
            for _ in range(1000000):
                f = None
                try:
                    f = _frame_at(buf, pos) if pos < len(buf) else None
                except FramingError as e:
                    with self._lock:
                        self._errors.append('conn %d: %s' % (idx, e))
                    return
                if f is not None and f.end is None and f.expects_continue and \
                        continued != pos:
                    continued = pos
                    if self.continue_mode == 'send':
                        c.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')
                    elif self.continue_mode == 'reject':
                        req = f.request
                        with self._lock:
                            self._conn_reqs[idx].append(req)
                            self._lock.notify_all()
                        c.sendall(_serialize(Response(417, body=b'', close=True), req.method))
                        return
                if f is not None and f.end is not None:
                    req = f.request
                    with self._lock:
                        self._conn_reqs[idx].append(req)
                        self._lock.notify_all()
                    resp = None
                    if self.handler is not None:
                        resp = self.handler(req)
                    if resp is None:
                        resp = self._default_response(req)
                    close = resp.close or resp.framing == 'close' or \
                        self._wants_close(req, f.version)
                    c.sendall(_serialize(resp, req.method, close))
                    pos = f.end
                    if close:
                        return
                    continue
                try:
                    data = self._recv(c, started)
                except socket.timeout:
                    return
                except OSError:
                    return
                if not data:
                    return
                buf += data
                with self._lock:
                    self._conn_bytes[idx] += data
        except OSError:
            return
        finally:
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.close()
            with self._lock:
                self._conn_open[idx] = False
                if c in self._socks:
                    self._socks.remove(c)
                self._lock.notify_all()


# ---------------------------------------------------------------------------------------
# W3C traceparent

class Traceparent(NamedTuple):
    version: str
    trace_id: str
    span_id: str
    flags: int

    @property
    def sampled(self):
        return bool(self.flags & 1)

    def __str__(self):
        return '%s-%s-%s-%02x' % (self.version, self.trace_id, self.span_id, self.flags)


_TP_RE = re.compile(r'^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$')


class _TraceparentHelper:
    """TRACEPARENT.make(...) builds valid values; TRACEPARENT.parse(s) validates them."""

    TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
    SPAN_ID = '00f067aa0ba902b7'
    SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    UNSAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'

    def make(self, trace_id=None, span_id=None, sampled=True, flags=None, version='00'):
        trace_id = (trace_id or self.TRACE_ID).lower()
        span_id = (span_id or self.SPAN_ID).lower()
        if flags is None:
            flags = 1 if sampled else 0
        value = '%s-%s-%s-%02x' % (version, trace_id, span_id, flags)
        self.parse(value)
        return value

    def parse(self, value):
        """Return a Traceparent; ValueError if the value is not a valid traceparent."""
        if isinstance(value, bytes):
            value = value.decode('latin-1')
        v = value.strip(' \t')
        m = _TP_RE.match(v)
        if not m:
            raise ValueError('malformed traceparent %r' % value)
        version, trace_id, span_id, flags, rest = m.groups()
        if version == 'ff':
            raise ValueError('traceparent version ff is invalid: %r' % value)
        if version == '00' and rest:
            raise ValueError('version 00 traceparent with extra fields: %r' % value)
        if trace_id == '0' * 32 or span_id == '0' * 16:
            raise ValueError('all-zero id in traceparent %r' % value)
        return Traceparent(version, trace_id, span_id, int(flags, 16))

    def is_valid(self, value):
        try:
            self.parse(value)
            return True
        except ValueError:
            return False

    def for_span(self, span):
        """The traceparent a client span should have propagated (sampled flag from flags)."""
        return '00-%s-%s-%02x' % (span['trace_id'], span['span_id'], span['flags'] & 0xff)


TRACEPARENT = _TraceparentHelper()


# ---------------------------------------------------------------------------------------
# Span assertions

class _Absent:
    def __repr__(self):
        return 'ABSENT'


ABSENT = _Absent()


def attrs(span):
    """The span's attributes as {key: value}."""
    return span['attributes']


def _matches(span, name, kind, filters):
    if name is not None and span['name'] != name:
        return False
    if kind is not None and span['kind'] != kind:
        return False
    a = span['attributes']
    for key, want in filters.items():
        if want is ABSENT:
            if key in a:
                return False
        elif key not in a:
            return False
        elif callable(want):
            if not want(a[key]):
                return False
        elif a[key] != want:
            return False
    return True


def find_spans(spans, name=None, kind=None, **attr_filters):
    """All spans with that name/kind whose attributes match.

    A filter value may be a plain value (equality), a callable (predicate on the value)
    or ABSENT (key must be missing). Dotted keys: find_spans(s, **{'url.path': '/x'})."""
    return [s for s in spans if _matches(s, name, kind, attr_filters)]


def find_span(spans, name=None, kind=None, first=False, **attr_filters):
    """The one span matching (see find_spans); AssertionError when none matches or, unless
    first=True, when several do."""
    got = find_spans(spans, name, kind, **attr_filters)
    if len(got) == 1 or (got and first):
        return got[0]
    what = 'name=%r kind=%r attrs=%r' % (name, kind, attr_filters)
    listing = '\n'.join('  ' + format_span(s) for s in spans[:50])
    raise AssertionError('%s span matching %s among %d span(s):\n%s' % (
        'no' if not got else '%d (expected 1)' % len(got), what, len(spans), listing))


# ---------------------------------------------------------------------------------------
# HTTPS (issue 4): a certificate made with the openssl CLI, and the recording server
# behind TLS

def make_cert(directory):
    """A self-signed P-256 certificate for 127.0.0.1/localhost, made with the openssl CLI
    in @directory; returns (cert_path, key_path)."""
    cert = os.path.join(directory, 'cert.pem')
    key = os.path.join(directory, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '2', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class RecordingHttpsServer(RecordingHttpServer):
    """RecordingHttpServer behind TLS (Python's ssl, the certificate from make_cert): the
    recorded bytes are the plaintext requests. url is https://127.0.0.1:PORT."""

    def __init__(self, cert, key, **kw):
        super().__init__(**kw)
        import ssl
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)

    @property
    def url(self):
        return 'https://%s' % self.host_port

    def _serve_conn(self, c, idx):
        import ssl
        try:
            c.settimeout(self.idle_timeout)
            s = self._ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            with self._lock:
                self._conn_open[idx] = False
                if c in self._socks:
                    self._socks.remove(c)
                self._lock.notify_all()
            return
        with self._lock:
            if c in self._socks:
                self._socks[self._socks.index(c)] = s
        super()._serve_conn(s, idx)
