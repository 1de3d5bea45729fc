#!/usr/bin/python3
"""OTLP/HTTP (protobuf) trace receiver for otelshim's integration tests.

The shim's own encoder is hand-written, so this receiver deliberately decodes with
Google's protobuf runtime: classes are generated at start-up by `protoc` from the
repository's proto/ tree, so a wire-format mistake in the shim shows up as a decode
failure or a wrong field here rather than being mirrored by a shared bug.

Library use:

    rx = OtlpReceiver().start()
    ... run a program with OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint ...
    spans = rx.wait_for_spans(1, timeout=10.0)
    rx.stop()

Standalone (manual demos): `/usr/bin/python3 tests/receiver/otlp_receiver.py --port 4318`
prints one JSON line per received span on stdout.

Only loopback (127.0.0.1) is ever bound. Every wait is bounded by a deadline.
"""

import argparse
import atexit
import glob
import gzip
import http.server
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

LOOPBACK = '127.0.0.1'
TRACES_PATH = '/v1/traces'

# The OTLP spec recommends servers cap request bodies at 64 MiB after decompression.
MAX_BODY = 64 * 1024 * 1024
MAX_CHUNK_LINE = 4096
MAX_TRAILER_LINES = 100

# A hung request is released at the latest after this long, so a forgotten release()
# cannot wedge a test run; the connection is then closed without an answer.
DEFAULT_MAX_HANG = 60.0

# Idle keep-alive connections are closed after this long without a request.
IDLE_TIMEOUT = 30.0

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_gen_lock = threading.Lock()
_gen_modules = None


def repo_root():
    return _REPO_ROOT


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def load_proto_modules(proto_dir=None):
    """Generate Python classes with protoc (once per process) and import them.

    Returns a dict with keys 'trace_service', 'trace', 'common', 'resource' holding the
    generated *_pb2 modules.
    """
    global _gen_modules
    with _gen_lock:
        if _gen_modules is not None:
            return _gen_modules
        if proto_dir is None:
            proto_dir = os.environ.get('OTELSHIM_PROTO_DIR') or os.path.join(_REPO_ROOT, 'proto')
        proto_dir = os.path.abspath(proto_dir)
        files = sorted(glob.glob(os.path.join(proto_dir, '**', '*.proto'), recursive=True))
        if not files:
            raise RuntimeError('otlp_receiver: no .proto files under %s' % proto_dir)
        protoc = shutil.which('protoc') or '/usr/bin/protoc'
        outdir = tempfile.mkdtemp(prefix='otelshim-pb2-')
        atexit.register(_remove_tree, outdir)
        rel = [os.path.relpath(f, proto_dir) for f in files]
        try:
            res = subprocess.run([protoc, '--python_out=' + outdir, '-I', proto_dir] + rel,
                                 cwd=proto_dir, capture_output=True, timeout=60)
        except FileNotFoundError:
            raise RuntimeError('otlp_receiver: protoc not found (install protobuf-compiler)')
        if res.returncode != 0:
            raise RuntimeError('otlp_receiver: protoc failed (%d): %s' %
                               (res.returncode, res.stderr.decode(errors='replace')))
        # The generated modules import each other as opentelemetry.proto.*; put the
        # generated tree first so nothing else named "opentelemetry" shadows it.
        sys.path.insert(0, outdir)
        importlib.invalidate_caches()
        base = 'opentelemetry.proto.'
        try:
            mods = {
                'common': importlib.import_module(base + 'common.v1.common_pb2'),
                'resource': importlib.import_module(base + 'resource.v1.resource_pb2'),
                'trace': importlib.import_module(base + 'trace.v1.trace_pb2'),
                'trace_service': importlib.import_module(
                    base + 'collector.trace.v1.trace_service_pb2'),
            }
        except ImportError as e:
            raise RuntimeError('otlp_receiver: cannot import generated classes from %s: %s'
                               % (outdir, e))
        _gen_modules = mods
        return mods


# ---------------------------------------------------------------------------------------
# protobuf message -> plain Python values

def any_value(v):
    """Convert an AnyValue to a Python value (None when no member is set)."""
    which = v.WhichOneof('value')
    if which is None:
        return None
    if which == 'string_value':
        return v.string_value
    if which == 'bool_value':
        return v.bool_value
    if which == 'int_value':
        return v.int_value
    if which == 'double_value':
        return v.double_value
    if which == 'bytes_value':
        return bytes(v.bytes_value)
    if which == 'array_value':
        return [any_value(x) for x in v.array_value.values]
    if which == 'kvlist_value':
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return None


def kv_list(kvs):
    """Return (dict, list of (key, value) pairs); the list keeps duplicate keys."""
    pairs = [(kv.key, any_value(kv.value)) for kv in kvs]
    return dict(pairs), pairs


def span_to_dict(span, resource, scope, request_index):
    attrs, attr_pairs = kv_list(span.attributes)
    events = []
    for ev in span.events:
        ev_attrs, _ = kv_list(ev.attributes)
        events.append({
            'name': ev.name,
            'time_unix_nano': ev.time_unix_nano,
            'attributes': ev_attrs,
            'dropped_attributes_count': ev.dropped_attributes_count,
        })
    links = []
    for ln in span.links:
        ln_attrs, _ = kv_list(ln.attributes)
        links.append({
            'trace_id': ln.trace_id.hex(),
            'span_id': ln.span_id.hex(),
            'trace_state': ln.trace_state,
            'flags': ln.flags,
            'attributes': ln_attrs,
            'dropped_attributes_count': ln.dropped_attributes_count,
        })
    return {
        'trace_id': span.trace_id.hex(),
        'span_id': span.span_id.hex(),
        'parent_span_id': span.parent_span_id.hex(),
        'trace_state': span.trace_state,
        'flags': span.flags,
        'name': span.name,
        'kind': int(span.kind),
        'start_time_unix_nano': span.start_time_unix_nano,
        'end_time_unix_nano': span.end_time_unix_nano,
        'attributes': attrs,
        'attribute_list': attr_pairs,
        'dropped_attributes_count': span.dropped_attributes_count,
        'events': events,
        'dropped_events_count': span.dropped_events_count,
        'links': links,
        'dropped_links_count': span.dropped_links_count,
        'status': {'code': int(span.status.code), 'message': span.status.message},
        'has_status': span.HasField('status'),
        'resource': resource,
        'scope': scope,
        'request_index': request_index,
    }


def decode_request(msg, request_index):
    """Flatten an ExportTraceServiceRequest into a list of span dicts."""
    out = []
    for rs in msg.resource_spans:
        res_attrs, _ = kv_list(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope_attrs, _ = kv_list(ss.scope.attributes)
            scope = {
                'name': ss.scope.name,
                'version': ss.scope.version,
                'attributes': scope_attrs,
                'schema_url': ss.schema_url,
                'resource_schema_url': rs.schema_url,
                'resource_dropped_attributes_count':
                    rs.resource.dropped_attributes_count,
            }
            for sp in ss.spans:
                out.append(span_to_dict(sp, res_attrs, scope, request_index))
    return out


# ---------------------------------------------------------------------------------------
# HTTP side

class _BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _read_chunked(rfile):
    """Read a chunked request body from a buffered file; bounded in size and lines."""
    body = bytearray()
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if not line or len(line) > MAX_CHUNK_LINE or not line.endswith(b'\n'):
            raise _BodyError(400, 'bad or truncated chunk-size line')
        size_text = line.split(b';', 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BodyError(400, 'bad chunk size %r' % size_text)
        if size < 0 or len(body) + size > MAX_BODY:
            raise _BodyError(413, 'chunked body too large')
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) != size:
            raise _BodyError(400, 'truncated chunk')
        body += data
        crlf = rfile.readline(MAX_CHUNK_LINE + 1)
        if crlf not in (b'\r\n', b'\n'):
            raise _BodyError(400, 'missing CRLF after chunk data')
    for _ in range(MAX_TRAILER_LINES):
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if not line:
            raise _BodyError(400, 'truncated chunked trailer')
        if line in (b'\r\n', b'\n'):
            return bytes(body)
    raise _BodyError(400, 'too many trailer lines')


def _gunzip(data):
    """Decompress a gzip body with a bound on the output size."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, MAX_BODY + 1)
    if len(out) > MAX_BODY or d.unconsumed_tail:
        raise _BodyError(413, 'decompressed body too large')
    out += d.flush()
    if not d.eof:
        raise _BodyError(400, 'truncated gzip body')
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'otelshim-test-receiver/1'
    sys_version = ''
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        self.receiver = self.server.receiver
        self.conn_id = self.receiver._register_conn(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.receiver._unregister_conn(self.connection)

    def log_message(self, format, *args):
        pass

    def _reply(self, status, headers, body):
        self.send_response(status)
        sent = set()
        for name, value in headers.items():
            self.send_header(name, str(value))
            sent.add(name.lower())
        if 'content-type' not in sent:
            # OTLP: the response content type must equal the request's.
            self.send_header('Content-Type', 'application/x-protobuf')
        if 'content-length' not in sent:
            self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if body and self.command != 'HEAD':
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self):
        """Close the connection without any answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self):
        rx = self.receiver
        headers = {}
        header_list = []
        for name, value in self.headers.items():
            header_list.append((name.lower(), value))
            headers[name.lower()] = value
        path = self.path.split('?', 1)[0]
        # A client sending through a proxy names the whole URL (absolute
        # form, RFC 9112 3.2.2): this receiver then stands in for the proxy
        # and the collector behind it; 'target' keeps what was sent.
        if path.startswith(('http://', 'https://')):
            rest = path.split('://', 1)[1]
            path = rest[rest.find('/'):] if '/' in rest else '/'
        record = {
            'index': None,
            'time': time.monotonic(),
            'method': self.command,
            'path': path,
            'target': self.path,
            'http_version': self.request_version,
            'headers': headers,
            'header_list': header_list,
            'content_type': headers.get('content-type', ''),
            'content_encoding': headers.get('content-encoding', ''),
            'user_agent': headers.get('user-agent', ''),
            'chunked': 'chunked' in headers.get('transfer-encoding', '').lower(),
            'connection_id': self.conn_id,
            'body': b'',
            'body_size': 0,
            'decoded_size': 0,
            'span_count': 0,
            'status': None,
            'outcome': None,
            'error': None,
        }
        try:
            body = self._read_body(record)
        except _BodyError as e:
            record['error'] = str(e)
            self.close_connection = True
            rx._finish_request(record, [], e.status, 'error')
            self._reply(e.status, {'Connection': 'close', 'Content-Type': 'text/plain'},
                        (str(e) + '\n').encode())
            return
        record['body'] = body
        record['body_size'] = len(body)

        action, gen = rx._next_action(record)
        if action == 'close':
            rx._finish_request(record, [], None, 'closed')
            self._drop()
            return
        if action == 'hang':
            if not rx._wait_release(gen):
                rx._finish_request(record, [], None, 'hung-dropped')
                self._drop()
                return
            action = None
        if action is not None:
            status, hdrs, rbody = action
            if rbody is None:
                rbody = b''
                if status == 200:
                    rbody = rx._response_bytes(0, '')
            # A scripted non-2xx answer means the data was not accepted: a retry will
            # resend it, so its spans are not recorded as delivered.
            spans = []
            if 200 <= status < 300:
                spans, _ = self._decode(record, body)
            rx._finish_request(record, spans, status, 'scripted')
            self._reply(status, hdrs, rbody)
            return

        if path != rx.path:
            record['error'] = 'unknown path'
            rx._finish_request(record, [], 404, 'error')
            self._reply(404, {'Content-Type': 'text/plain'}, b'not found\n')
            return
        if self.command != 'POST':
            record['error'] = 'method not allowed'
            rx._finish_request(record, [], 405, 'error')
            self._reply(405, {'Allow': 'POST', 'Content-Type': 'text/plain'},
                        b'method not allowed\n')
            return
        spans, err = self._decode(record, body)
        if err is not None:
            rx._finish_request(record, [], err[0], 'error')
            self._reply(err[0], {'Content-Type': 'text/plain'}, (err[1] + '\n').encode())
            return
        rejected, message = rx._partial_success()
        rx._finish_request(record, spans, 200, 'ok')
        self._reply(200, {}, rx._response_bytes(rejected, message))

    def _read_body(self, record):
        te = self.headers.get('Transfer-Encoding', '')
        if te:
            if te.strip().lower() != 'chunked':
                raise _BodyError(501, 'unsupported transfer-encoding %r' % te)
            return _read_chunked(self.rfile)
        cl = self.headers.get_all('Content-Length') or []
        if not cl:
            return b''
        if len(set(v.strip() for v in cl)) != 1:
            raise _BodyError(400, 'conflicting Content-Length headers')
        try:
            n = int(cl[0].strip())
        except ValueError:
            raise _BodyError(400, 'bad Content-Length %r' % cl[0])
        if n < 0:
            raise _BodyError(400, 'negative Content-Length')
        if n > MAX_BODY:
            raise _BodyError(413, 'body too large')
        data = self.rfile.read(n)
        if len(data) != n:
            raise _BodyError(400, 'truncated body (%d of %d bytes)' % (len(data), n))
        return data

    def _decode(self, record, body):
        """Return (spans, None) or ([], (status, message)); sets record['error']."""
        rx = self.receiver
        enc = record['content_encoding'].strip().lower()
        try:
            if enc == 'gzip':
                body = _gunzip(body)
            elif enc not in ('', 'identity'):
                raise _BodyError(415, 'unsupported content-encoding %r' % enc)
        except _BodyError as e:
            record['error'] = str(e)
            return [], (e.status, str(e))
        except (zlib.error, EOFError, OSError) as e:
            record['error'] = 'gzip: %s' % e
            return [], (400, record['error'])
        record['decoded_size'] = len(body)
        ctype = record['content_type'].split(';', 1)[0].strip().lower()
        if ctype != 'application/x-protobuf':
            record['error'] = 'unsupported content-type %r' % record['content_type']
            return [], (415, record['error'])
        msg = rx._pb['trace_service'].ExportTraceServiceRequest()
        try:
            msg.ParseFromString(body)
        except Exception as e:  # DecodeError, or RuntimeError from the C++ backend
            record['error'] = 'protobuf decode: %s' % e
            return [], (400, record['error'])
        record['message'] = msg
        return decode_request(msg, None), None

    def do_POST(self):
        self._handle()

    do_GET = do_POST
    do_PUT = do_POST
    do_HEAD = do_POST
    do_DELETE = do_POST


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # stop() joins handler threads itself, with a deadline.
    block_on_close = False
    allow_reuse_address = True


class OtlpReceiver:
    """OTLP/HTTP protobuf trace receiver on 127.0.0.1 (see module docstring)."""

    def __init__(self, port=0, path=TRACES_PATH, proto_dir=None, max_hang=DEFAULT_MAX_HANG,
                 on_span=None):
        self._pb = load_proto_modules(proto_dir)
        self._port = port
        self.path = path
        self.max_hang = max_hang
        self._on_span = on_span
        self._cond = threading.Condition()
        self._spans = []
        self._requests = []
        self._script = []
        self._hang = False
        self._hung_waiting = 0
        self._release_gen = 0
        self._rejected = None
        self._reject_message = ''
        self._stopping = False
        self._conns = {}
        self._conn_seq = 0
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        if self._server is not None:
            return self
        self._stopping = False
        self._server = _Server((LOOPBACK, self._port), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.05},
                                        name='otlp-receiver', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop serving; drops hung requests and idle connections. Bounded by timeout."""
        if self._server is None:
            return
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            conns = list(self._conns.items())
        for sock, _ in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in conns:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def port(self):
        if self._server is None:
            raise RuntimeError('receiver not started')
        return self._server.server_address[1]

    @property
    def endpoint(self):
        """Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the shim appends /v1/traces)."""
        return 'http://%s:%d' % (LOOPBACK, self.port)

    @property
    def traces_url(self):
        """Full URL, for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT."""
        return self.endpoint + self.path

    # -- behaviour control -----------------------------------------------------------

    def script(self, responses):
        """Queue canned answers used, in order, before normal operation resumes.

        Each entry is (status, headers) or (status, headers, body), or one of the strings
        'close' (read the request, close the connection without answering) and 'hang'
        (hold the request like hang(), until release() or stop()). Scripted non-2xx
        answers do not record spans; scripted 2xx answers do.
        """
        entries = []
        for r in responses:
            if r in ('close', 'hang'):
                entries.append(r)
                continue
            if len(r) == 2:
                status, headers = r
                body = None
            else:
                status, headers, body = r
            entries.append((int(status), dict(headers or {}), body))
        with self._cond:
            self._script.extend(entries)

    def script_remaining(self):
        with self._cond:
            return len(self._script)

    def hang(self):
        """From now on, hold every request without answering until release()/stop()."""
        with self._cond:
            self._hang = True

    def release(self):
        """Leave hang mode; held requests are answered normally and their spans kept."""
        with self._cond:
            self._hang = False
            self._release_gen += 1
            self._cond.notify_all()

    def partial_success(self, rejected, message='rejected by test'):
        """Answer 200 with partial_success {rejected_spans, error_message}; None turns off.

        Spans of such requests are still recorded (the receiver did get them)."""
        with self._cond:
            self._rejected = None if rejected is None else int(rejected)
            self._reject_message = message

    def normal(self):
        """Back to plain 200 answers: clears the script, hang and partial_success."""
        with self._cond:
            self._script.clear()
            self._rejected = None
        self.release()

    # -- results ---------------------------------------------------------------------

    def spans(self):
        with self._cond:
            return list(self._spans)

    def requests(self):
        with self._cond:
            return list(self._requests)

    def clear(self):
        with self._cond:
            self._spans.clear()
            self._requests.clear()

    def hung_count(self):
        """Requests currently held by hang mode."""
        with self._cond:
            return self._hung_waiting

    def wait_for_spans(self, n, timeout=10.0, predicate=None):
        """Wait until at least n spans (matching predicate, if given) have arrived.

        Returns every matching span. On timeout raises AssertionError describing what
        did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [s for s in self._spans if predicate is None or predicate(s)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            msg = self._describe_locked('expected >= %d span(s)%s within %.1fs, got %d' % (
                n, '' if predicate is None else ' matching predicate', timeout, len(got)))
        raise AssertionError(msg)

    def wait_for_requests(self, n, timeout=10.0, predicate=None):
        """Wait until at least n requests (matching predicate) were fully read.

        Held (hung) requests count as soon as they are read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._requests if predicate is None or predicate(r)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            msg = self._describe_locked('expected >= %d request(s) within %.1fs, got %d' % (
                n, timeout, len(got)))
        raise AssertionError(msg)

    def describe(self):
        with self._cond:
            return self._describe_locked('receiver state')

    def _describe_locked(self, headline):
        lines = [headline + ':']
        lines.append('  %d request(s):' % len(self._requests))
        for r in self._requests[-20:]:
            lines.append('    #%s %s %s status=%s outcome=%s spans=%d enc=%r ua=%r%s' % (
                r['index'], r['method'], r['target'], r['status'], r['outcome'],
                r['span_count'], r['content_encoding'], r['user_agent'],
                '' if not r['error'] else ' error=%s' % r['error']))
        lines.append('  %d span(s):' % len(self._spans))
        for s in self._spans[-40:]:
            lines.append('    ' + format_span(s))
        return '\n'.join(lines)

    # -- used by the handler ---------------------------------------------------------

    def _register_conn(self, sock):
        with self._cond:
            self._conn_seq += 1
            self._conns[sock] = threading.current_thread()
            return self._conn_seq

    def _unregister_conn(self, sock):
        with self._cond:
            self._conns.pop(sock, None)

    def _next_action(self, record):
        """(None, _) for normal handling, else (script entry or 'hang', generation).

        A held request is recorded here, under the same lock that decided to hold it, so
        a release() racing with its arrival is never missed."""
        with self._cond:
            action = None
            if self._script:
                action = self._script.pop(0)
            elif self._hang:
                action = 'hang'
            if action == 'hang':
                record['outcome'] = 'hung'
                record['index'] = len(self._requests)
                self._requests.append(record)
                self._hung_waiting += 1
                self._cond.notify_all()
            return action, self._release_gen

    def _wait_release(self, gen):
        """Block a hung request; True when released, False on stop or max_hang."""
        deadline = time.monotonic() + self.max_hang
        with self._cond:
            try:
                while True:
                    if self._stopping:
                        return False
                    if self._release_gen != gen:
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.5))
            finally:
                self._hung_waiting -= 1

    def _partial_success(self):
        with self._cond:
            return self._rejected, self._reject_message

    def _response_bytes(self, rejected, message):
        resp = self._pb['trace_service'].ExportTraceServiceResponse()
        if rejected is not None:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = message
        return resp.SerializeToString()

    def _finish_request(self, record, spans, status, outcome):
        with self._cond:
            if record['index'] is None:
                record['index'] = len(self._requests)
                self._requests.append(record)
            for s in spans:
                s['request_index'] = record['index']
            record['status'] = status
            record['outcome'] = outcome
            record['span_count'] = len(spans)
            self._spans.extend(spans)
            self._cond.notify_all()
        if self._on_span is not None:
            for s in spans:
                self._on_span(s)


def format_span(s):
    """One-line summary of a span dict, for assertion messages."""
    keys = ('http.request.method', 'url.full', 'url.path', 'server.address', 'server.port',
        'http.response.status_code', 'error.type')
    shown = {k: s['attributes'][k] for k in keys if k in s['attributes']}
    return '%r kind=%d trace=%s span=%s parent=%s status=%d %s (%d attrs)' % (
        s['name'], s['kind'], s['trace_id'], s['span_id'], s['parent_span_id'] or '-',
        s['status']['code'], shown, len(s['attributes']))


def _json_default(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return repr(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description='OTLP/HTTP protobuf trace receiver (127.0.0.1 only)')
    ap.add_argument('--port', type=int, default=4318)
    args = ap.parse_args(argv)

    lock = threading.Lock()

    def emit(span):
        out = dict(span)
        out.pop('attribute_list', None)
        with lock:
            sys.stdout.write(json.dumps(out, default=_json_default, sort_keys=True) + '\n')
            sys.stdout.flush()

    rx = OtlpReceiver(port=args.port, on_span=emit).start()
    sys.stderr.write('otlp_receiver: listening on %s%s\n' % (rx.endpoint, rx.path))
    sys.stderr.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        # Wake regularly so Ctrl-C is seen promptly.
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    rx.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
