"""A fake LLM provider for the integration tests (stdlib only, 127.0.0.1 only).

Speaks like OpenAI (chat completions, embeddings, streaming with and without the usage
chunk), Anthropic (messages, streaming), Google Gemini (generateContent) and Ollama
(/api/chat, NDJSON stream), with the bodies those APIs document, written here by hand.
Error cases: model "rate-limited" gets 429 with Retry-After, model "no-such-model" gets
400 invalid_request_error.

Per-request switches, as request headers (the shim never adds these):
  X-Fake-Encoding: gzip | deflate | br  -- compress the body (br: not really, flagged)
  X-Fake-Framing: chunked | close        -- instead of Content-Length
  X-Fake-First-Delay-Ms: N               -- wait N ms before the first streamed event

Every answer is recorded in `answers` with the numbers the test must find on the span
(tokens, ids, models) and, for streams, the CLOCK_REALTIME time the first content event
was written.
"""

import gzip
import json
import socket
import ssl
import threading
import time
import zlib

LOOPBACK = '127.0.0.1'


class Answer:
    def __init__(self, path, request):
        self.path = path
        self.request = request          # decoded request JSON (or None)
        self.request_headers = {}
        self.status = 200
        self.response_id = None
        self.response_model = None
        self.input_tokens = None
        self.output_tokens = None
        self.finish_reason = None
        self.first_content_ns = None    # CLOCK_REALTIME ns of the first content event
        self.request_id = None          # the provider request-id header sent


def _chunked(body, size=7):
    out = b''
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b'%x\r\n' % len(piece) + piece + b'\r\n'
    return out + b'0\r\n\r\n'


class FakeLLMServer:
    def __init__(self, cert=None, key=None):
        self.cert, self.key = cert, key
        self.answers = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = None
        self._threads = []

    # -- lifecycle ------------------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, 0))
        s.listen(32)
        s.settimeout(0.2)
        self._listener = s
        self._ctx = None
        if self.cert:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(self.cert, self.key)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._listener.getsockname()[1]

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('https' if self.cert else 'http', self.port)

    def clear(self):
        with self._lock:
            self.answers = []

    # -- connections ----------------------------------------------------------------
    def _accept_loop(self):
        for _ in range(100000):
            if self._stop.is_set():
                return
            try:
                c, _addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c):
        c.settimeout(10)
        try:
            if self._ctx:
                c = self._ctx.wrap_socket(c, server_side=True)
            buf = b''
            for _ in range(1000):
                while b'\r\n\r\n' not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b'\r\n\r\n', 1)
                lines = head.decode('latin-1').split('\r\n')
                method, target, _version = lines[0].split(' ', 2)
                headers = {}
                for line in lines[1:]:
                    k, v = line.split(':', 1)
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get('content-length', '0'))
                if headers.get('transfer-encoding', '').lower() == 'chunked':
                    body = b''
                    while True:
                        while b'\r\n' not in buf:
                            buf += c.recv(65536)
                        size_line, buf = buf.split(b'\r\n', 1)
                        size = int(size_line.split(b';')[0], 16)
                        while len(buf) < size + 2:
                            buf += c.recv(65536)
                        body += buf[:size]
                        buf = buf[size + 2:]
                        if size == 0:
                            break
                else:
                    while len(buf) < n:
                        d = c.recv(65536)
                        if not d:
                            return
                        buf += d
                    body, buf = buf[:n], buf[n:]
                close = self._answer(c, method, target, headers, body)
                if close or headers.get('connection', '').lower() == 'close':
                    return
        except (OSError, ValueError, ssl.SSLError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    # -- answers --------------------------------------------------------------------
    def _answer(self, c, method, target, headers, body):
        try:
            req = json.loads(body) if body else None
        except ValueError:
            req = None
        path = target.split('?', 1)[0]
        a = Answer(path, req)
        a.request_headers = headers
        with self._lock:
            self.answers.append(a)
        model = (req or {}).get('model', '')
        stream = bool((req or {}).get('stream'))
        if path.startswith('/api/'):
            stream = (req or {}).get('stream', True) is not False  # Ollama streams by default
        if model == 'rate-limited':
            return self._send(c, a, headers, 429, self._error_body(path, 'rate_limit'),
                              extra=[('Retry-After', '7')])
        if model == 'no-such-model':
            return self._send(c, a, headers, 400, self._error_body(path, 'invalid_model'))
        if path == '/v1/chat/completions':
            if stream:
                return self._stream(c, a, headers, self._openai_events(a, req), 'text/event-stream')
            return self._send(c, a, headers, 200, self._openai_chat(a, req),
                              extra=[('x-request-id', 'req_oai_1')])
        if path == '/v1/embeddings':
            return self._send(c, a, headers, 200, self._openai_embeddings(a, req))
        if path == '/v1/messages':
            if stream:
                return self._stream(c, a, headers, self._anthropic_events(a, req),
                                    'text/event-stream', extra=[('request-id', 'req_ant_1')])
            return self._send(c, a, headers, 200, self._anthropic_message(a, req),
                              extra=[('request-id', 'req_ant_1')])
        if path.endswith(':generateContent'):
            return self._send(c, a, headers, 200, self._gemini(a, req, path))
        if path == '/api/chat':
            if stream:
                return self._stream(c, a, headers, self._ollama_lines(a, req),
                                    'application/x-ndjson')
            return self._send(c, a, headers, 200, self._ollama_chat(a, req))
        return self._send(c, a, headers, 404, {'error': 'not found'})

    def _error_body(self, path, kind):
        if path == '/v1/messages':
            t = 'rate_limit_error' if kind == 'rate_limit' else 'invalid_request_error'
            return {'type': 'error', 'error': {'type': t, 'message': 'test error'}}
        if kind == 'rate_limit':
            return {'error': {'message': 'Rate limit reached for requests', 'type': 'requests',
                              'param': None, 'code': 'rate_limit_exceeded'}}
        return {'error': {'message': 'The model `no-such-model` does not exist',
                          'type': 'invalid_request_error', 'param': None,
                          'code': 'model_not_found'}}

    def _send(self, c, a, headers, status, obj, extra=()):
        a.status = status
        for k, v in extra:
            if k.lower() in ('x-request-id', 'request-id'):
                a.request_id = v
        body = json.dumps(obj).encode()
        enc = headers.get('x-fake-encoding')
        hdrs = [('Content-Type', 'application/json')] + list(extra)
        if enc == 'gzip':
            body = gzip.compress(body)
            hdrs.append(('Content-Encoding', 'gzip'))
        elif enc == 'deflate':
            body = zlib.compress(body)
            hdrs.append(('Content-Encoding', 'deflate'))
        elif enc == 'br':
            hdrs.append(('Content-Encoding', 'br'))   # not brotli: the shim only flags it
        framing = headers.get('x-fake-framing', 'length')
        reason = {200: 'OK', 400: 'Bad Request', 404: 'Not Found',
                  429: 'Too Many Requests'}.get(status, 'X')
        head = 'HTTP/1.1 %d %s\r\n' % (status, reason)
        head += ''.join('%s: %s\r\n' % kv for kv in hdrs)
        if framing == 'chunked':
            head += 'Transfer-Encoding: chunked\r\n\r\n'
            c.sendall(head.encode() + _chunked(body))
            return False
        if framing == 'close':
            head += 'Connection: close\r\n\r\n'
            c.sendall(head.encode() + body)
            return True
        head += 'Content-Length: %d\r\n\r\n' % len(body)
        c.sendall(head.encode() + body)
        return False

    def _stream(self, c, a, headers, events, ctype, extra=()):
        """Chunked stream of events; the first content one after the requested delay."""
        a.status = 200
        for k, v in extra:
            if k.lower() in ('x-request-id', 'request-id'):
                a.request_id = v
        head = 'HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n' % ctype
        head += ''.join('%s: %s\r\n' % kv for kv in extra) + '\r\n'
        c.sendall(head.encode())
        delay = int(headers.get('x-fake-first-delay-ms', '0')) / 1000.0
        for content, piece in events:
            if content and a.first_content_ns is None:
                if delay:
                    time.sleep(delay)
                a.first_content_ns = time.time_ns()
            c.sendall(b'%x\r\n' % len(piece) + piece + b'\r\n')
        c.sendall(b'0\r\n\r\n')
        return False

    # -- OpenAI ---------------------------------------------------------------------
    def _openai_chat(self, a, req):
        a.response_id = 'chatcmpl-9abc'
        a.response_model = req['model'] + '-2024-07-18'
        a.input_tokens, a.output_tokens = 23, 7
        tools = req.get('tools')
        if tools:
            a.finish_reason = 'tool_calls'
            msg = {'role': 'assistant', 'content': None, 'tool_calls': [
                {'id': 'call_w1', 'type': 'function',
                 'function': {'name': 'get_weather', 'arguments': '{"city":"Paris"}'}},
                {'id': 'call_t2', 'type': 'function',
                 'function': {'name': 'get_time', 'arguments': '{}'}}]}
        else:
            a.finish_reason = 'stop'
            msg = {'role': 'assistant', 'content': 'Paris is the capital of France.'}
        return {'id': a.response_id, 'object': 'chat.completion', 'created': 1700000000,
                'model': a.response_model, 'system_fingerprint': 'fp_1',
                'choices': [{'index': 0, 'message': msg, 'logprobs': None,
                             'finish_reason': a.finish_reason}],
                'usage': {'prompt_tokens': 23, 'completion_tokens': 7, 'total_tokens': 30,
                          'prompt_tokens_details': {'cached_tokens': 0}}}

    def _openai_events(self, a, req):
        a.response_id = 'chatcmpl-s1'
        a.response_model = req['model'] + '-2024-07-18'
        a.finish_reason = 'stop'
        usage = (req.get('stream_options') or {}).get('include_usage')
        base = {'id': a.response_id, 'object': 'chat.completion.chunk', 'created': 1700000000,
                'model': a.response_model}

        def ev(obj):
            return b'data: ' + json.dumps(obj).encode() + b'\n\n'
        out = [(False, ev(dict(base, choices=[{'index': 0, 'delta': {'role': 'assistant',
                                                                       'content': ''},
                                               'finish_reason': None}])))]
        long = req.get('x_fake_events')
        if long:
            return self._openai_long_events(a, req, base, ev, out, int(long))
        words = ['Hello', ' there', ',', ' friend', '.']
        for w in words:
            out.append((True, ev(dict(base, choices=[{'index': 0, 'delta': {'content': w},
                                                      'finish_reason': None}]))))
        out.append((False, ev(dict(base, choices=[{'index': 0, 'delta': {},
                                                   'finish_reason': 'stop'}]))))
        if usage:
            a.input_tokens, a.output_tokens = 11, len(words)
            out.append((False, ev(dict(base, choices=[], usage={
                'prompt_tokens': 11, 'completion_tokens': len(words), 'total_tokens': 16}))))
        out.append((False, b'data: [DONE]\n\n'))
        return out

    def _openai_long_events(self, a, req, base, ev, out, n):
        """A long stream (`"x_fake_events": N` in the request): N content events; with
        tools, two tool calls starting a third and two thirds in; a second choice
        that finishes half-way ("length"); the first finishes last ("tool_calls",
        or "stop"); then the usage chunk."""
        tools = bool(req.get('tools'))
        calls = {n // 3: ('call_a1', 'lookup'), 2 * n // 3: ('call_b2', 'search')}
        for i in range(n):
            if tools and i in calls:
                cid, name = calls[i]
                delta = {'tool_calls': [{'index': 0 if i == n // 3 else 1, 'id': cid,
                                         'type': 'function',
                                         'function': {'name': name, 'arguments': ''}}]}
                out.append((True, ev(dict(base, choices=[{'index': 0, 'delta': delta,
                                                          'finish_reason': None}]))))
            elif i == n // 2:
                out.append((False, ev(dict(base, choices=[{'index': 1, 'delta': {},
                                                           'finish_reason': 'length'}]))))
            else:
                out.append((True, ev(dict(base, system_fingerprint='fp_1', choices=[{
                    'index': 0, 'delta': {'content': ' w%d' % i}, 'finish_reason': None}]))))
        a.finish_reason = None      # two choices: the test checks both
        out.append((False, ev(dict(base, choices=[{'index': 0, 'delta': {},
                                                   'finish_reason': 'tool_calls' if tools
                                                   else 'stop'}]))))
        a.input_tokens, a.output_tokens = 31, n
        out.append((False, ev(dict(base, choices=[], usage={
            'prompt_tokens': 31, 'completion_tokens': n, 'total_tokens': 31 + n}))))
        out.append((False, b'data: [DONE]\n\n'))
        return out

    def _openai_embeddings(self, a, req):
        a.response_model = req['model']
        a.input_tokens = 8
        return {'object': 'list', 'data': [{'object': 'embedding', 'index': 0,
                                            'embedding': [0.01, -0.02, 0.03]}],
                'model': req['model'], 'usage': {'prompt_tokens': 8, 'total_tokens': 8}}

    # -- Anthropic ------------------------------------------------------------------
    def _anthropic_message(self, a, req):
        a.response_id = 'msg_01abc'
        a.response_model = req['model']
        a.input_tokens, a.output_tokens = 30 + 5 + 2, 12   # input + cache read + creation
        content = [{'type': 'text', 'text': 'Let me check.'}]
        a.finish_reason = 'end_turn'
        if req.get('tools'):
            a.finish_reason = 'tool_use'
            content.append({'type': 'tool_use', 'id': 'toolu_01', 'name': 'lookup',
                            'input': {'q': 'x'}})
        return {'id': a.response_id, 'type': 'message', 'role': 'assistant',
                'model': a.response_model, 'content': content,
                'stop_reason': a.finish_reason, 'stop_sequence': None,
                'usage': {'input_tokens': 30, 'cache_read_input_tokens': 5,
                          'cache_creation_input_tokens': 2, 'output_tokens': 12}}

    def _anthropic_events(self, a, req):
        a.response_id = 'msg_02s'
        a.response_model = req['model']
        a.finish_reason = 'end_turn'
        a.input_tokens, a.output_tokens = 25, 9

        def ev(name, obj):
            return ('event: %s\ndata: %s\n\n' % (name, json.dumps(obj))).encode()
        out = [(False, ev('message_start', {'type': 'message_start', 'message': {
            'id': a.response_id, 'type': 'message', 'role': 'assistant', 'model': a.response_model,
            'content': [], 'stop_reason': None,
            'usage': {'input_tokens': 25, 'output_tokens': 1}}})),
            (False, ev('content_block_start', {'type': 'content_block_start', 'index': 0,
                                               'content_block': {'type': 'text', 'text': ''}})),
            (False, b'event: ping\ndata: {"type": "ping"}\n\n')]
        for w in ['Hi', ' there', '!']:
            out.append((True, ev('content_block_delta', {
                'type': 'content_block_delta', 'index': 0,
                'delta': {'type': 'text_delta', 'text': w}})))
        out.append((False, ev('content_block_stop', {'type': 'content_block_stop', 'index': 0})))
        out.append((False, ev('message_delta', {'type': 'message_delta',
                                                'delta': {'stop_reason': 'end_turn',
                                                          'stop_sequence': None},
                                                'usage': {'output_tokens': 9}})))
        out.append((False, ev('message_stop', {'type': 'message_stop'})))
        return out

    # -- Gemini ---------------------------------------------------------------------
    def _gemini(self, a, req, path):
        a.response_model = path.rsplit('/', 1)[1].split(':')[0]
        a.input_tokens, a.output_tokens = 14, 6
        a.finish_reason = 'STOP'
        return {'candidates': [{'content': {'parts': [{'text': 'Bonjour'}], 'role': 'model'},
                                'finishReason': 'STOP', 'index': 0}],
                'usageMetadata': {'promptTokenCount': 14, 'candidatesTokenCount': 6,
                                  'totalTokenCount': 20},
                'modelVersion': a.response_model}

    # -- Ollama ---------------------------------------------------------------------
    def _ollama_chat(self, a, req):
        a.response_model = req['model']
        a.input_tokens, a.output_tokens = 26, 298
        a.finish_reason = 'stop'
        return {'model': req['model'], 'created_at': '2024-01-01T00:00:00Z',
                'message': {'role': 'assistant', 'content': 'Hello!'}, 'done': True,
                'done_reason': 'stop', 'total_duration': 4883583458, 'prompt_eval_count': 26,
                'eval_count': 298}

    def _ollama_lines(self, a, req):
        a.response_model = req['model']
        a.input_tokens, a.output_tokens = 20, 3
        a.finish_reason = 'stop'
        out = []
        for w in ['The', ' sky', ' is']:
            out.append((True, json.dumps({'model': req['model'], 'created_at': 'x',
                                          'message': {'role': 'assistant', 'content': w},
                                          'done': False}).encode() + b'\n'))
        out.append((False, json.dumps({'model': req['model'], 'created_at': 'x',
                                       'message': {'role': 'assistant', 'content': ''},
                                       'done': True, 'done_reason': 'stop',
                                       'prompt_eval_count': 20, 'eval_count': 3}).encode() + b'\n'))
        return out
