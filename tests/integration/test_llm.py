"""LLM calls under the shim (issue 5): real clients (Python urllib, Node.js fetch) call a
fake OpenAI/Anthropic/Gemini/Ollama server (tests/integration/fake_llm.py) on loopback;
the CLIENT span of each call must carry the gen_ai.* / llm.* attributes with the server's
own numbers (ids, models, tokens, finish reasons), time to first token for streams, the
cost from a test pricing table, tool-call events, provider errors, and captured content
only when asked for, redacted. Every span is decoded by the protobuf-based receiver."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OtlpReceiver, make_cert, run_under_shim, attrs, SPAN_KIND_CLIENT,  # noqa: E402
                     STATUS_ERROR, STATUS_UNSET)
from fake_llm import FakeLLMServer  # noqa: E402

PY = '/usr/bin/python3'

# One request: URL, JSON body, extra headers; prints the status and the body.
CLIENT = r'''
import json, ssl, sys, urllib.request, urllib.error
url, body, headers = sys.argv[1], sys.argv[2].encode(), json.loads(sys.argv[3])
ctx = ssl._create_unverified_context()   # the test server's own certificate
h = {'Content-Type': 'application/json'}
h.update(headers)
req = urllib.request.Request(url, data=body, headers=h, method='POST')
try:
    with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
        status, data = r.status, r.read()
except urllib.error.HTTPError as e:
    status, data = e.code, e.read()
sys.stdout.write('%d\n' % status)
sys.stdout.flush()
sys.stdout.buffer.write(data)
'''

NODE_CLIENT = r'''
const [url, body] = process.argv.slice(1);
fetch(url, {method: 'POST', body, headers: {'content-type': 'application/json'}})
  .then(async r => { process.stdout.write(r.status + '\n' + await r.text()); })
  .catch(e => { console.error(e); process.exit(1); });
'''

PRICES = {'prices': [
    {'provider': 'openai', 'model': 'gpt-4o-mini*', 'input': 1.0, 'output': 2.0,
     'input_cached': 0.5},
    {'provider': 'anthropic', 'model': 'claude-3-5-haiku*', 'input': 1.0, 'output': 5.0,
     'input_cached': 0.1, 'cache_write': 1.25},
    {'provider': 'gcp.gemini', 'model': 'gemini-1.5-flash', 'input': 0.5, 'output': 1.5},
]}

SECRET_KEY = 'sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz012345'
ANTHROPIC_KEY = 'sk-ant-api03-ZyXwVuTsRqPoNmLkJiHgFeDcBa9876'


class LLMTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.prices = os.path.join(cls.tmp.name, 'prices.json')
        with open(cls.prices, 'w') as f:
            json.dump(PRICES, f)
        cls.receiver = OtlpReceiver().start()
        cls.server = FakeLLMServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.receiver.stop()
        cls.tmp.cleanup()

    def setUp(self):
        self.receiver.clear()
        self.server.clear()

    # -- helpers -----------------------------------------------------------------------
    def call(self, path, body, headers=None, env=None, client='python', server=None):
        """Run one request under the shim; returns (span, answer, status, response bytes)."""
        server = server or self.server
        e = {'OTEL_TRACES_SAMPLER': 'always_on', 'OTELSHIM_LLM_PRICING': self.prices}
        e.update(env or {})
        raw = json.dumps(body)
        if client == 'node':
            argv = ['node', '-e', NODE_CLIENT, server.url + path, raw]
        elif client == 'curl':
            argv = ['curl', '-sS', '-N', '-w', '\n%{http_code}\n', '-o', '/dev/stdout', '--data-binary',
                    raw, '-H', 'Content-Type: application/json']
            for k, v in (headers or {}).items():
                argv += ['-H', '%s: %s' % (k, v)]
            argv.append(server.url + path)
        else:
            argv = [PY, '-c', CLIENT, server.url + path, raw, json.dumps(headers or {})]
        res = run_under_shim(argv, env_extra=e, receiver=self.receiver, check=True)
        if client == 'curl':
            # curl writes the body, then the status line asked for by -w.
            data, _, status = res.stdout.rstrip(b'\n').rpartition(b'\n')
        else:
            status, _, data = res.stdout.partition(b'\n')
        # Exported before the program exits: the count is final.
        self.receiver.wait_for_spans(1)
        spans = self.receiver.spans()
        self.assertEqual(len(spans), 1, [s['name'] for s in spans])
        (answer,) = server.answers
        # The server read the program's body, byte for byte.
        self.assertEqual(answer.request, body)
        return spans[0], answer, int(status), data

    def check_common(self, span, answer, provider, operation='chat', name='llm.completion'):
        a = attrs(span)
        self.assertEqual(span['kind'], SPAN_KIND_CLIENT)
        self.assertEqual(span['name'], name)
        self.assertEqual(a['gen_ai.operation.name'], operation)
        self.assertEqual(a['gen_ai.provider.name'], provider)
        self.assertEqual(a['llm.provider.name'], provider)
        self.assertIn('gen_ai.system', a)
        self.assertEqual(a['llm.provider.endpoint'], '127.0.0.1' + answer.path)
        self.assertEqual(a['http.request.method'], 'POST')
        self.assertEqual(a['http.response.status_code'], answer.status)
        if answer.response_model:
            self.assertEqual(a['gen_ai.response.model'], answer.response_model)
        if answer.input_tokens is not None:
            self.assertEqual(a['gen_ai.usage.input_tokens'], answer.input_tokens)
        if answer.output_tokens is not None:
            self.assertEqual(a['gen_ai.usage.output_tokens'], answer.output_tokens)
        if answer.finish_reason:
            self.assertEqual(a['gen_ai.response.finish_reasons'], [answer.finish_reason])
        # Credentials are never recorded, anywhere.
        blob = json.dumps(span)
        self.assertNotIn(SECRET_KEY, blob)
        self.assertNotIn(ANTHROPIC_KEY, blob)
        return a

    def check_ttft(self, span, answer, a, at_least_ms):
        ttft_ms = a['llm.response.time_to_first_token_ms']
        self.assertAlmostEqual(a['gen_ai.response.time_to_first_chunk'] * 1e3, ttft_ms, places=3)
        # After the server's delay, and no later than the first content event it wrote
        # (plus the span's own end).
        start = span['start_time_unix_nano']
        self.assertGreaterEqual(ttft_ms, at_least_ms)
        self.assertGreaterEqual(start + ttft_ms * 1e6 + 1e6, answer.first_content_ns)
        self.assertLessEqual(start + ttft_ms * 1e6, span['end_time_unix_nano'])

    # -- OpenAI ------------------------------------------------------------------------
    def test_openai_chat(self):
        body = {'model': 'gpt-4o-mini', 'max_tokens': 64, 'temperature': 0.25, 'top_p': 0.5,
                'seed': 7, 'stop': ['\n\n', 'END'],
                'messages': [{'role': 'user', 'content': 'Capital of France?'}]}
        span, ans, status, data = self.call('/v1/chat/completions', body,
                                            {'Authorization': 'Bearer ' + SECRET_KEY})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)['id'], ans.response_id)
        a = self.check_common(span, ans, 'openai')
        self.assertEqual(a['gen_ai.request.model'], 'gpt-4o-mini')
        self.assertEqual(a['gen_ai.request.max_tokens'], 64)
        self.assertEqual(a['gen_ai.request.temperature'], 0.25)
        self.assertEqual(a['gen_ai.request.top_p'], 0.5)
        self.assertEqual(a['gen_ai.request.seed'], 7)
        self.assertEqual(a['gen_ai.request.stop_sequences'], ['\n\n', 'END'])
        self.assertNotIn('gen_ai.request.stream', a)
        self.assertEqual(a['gen_ai.response.id'], ans.response_id)
        self.assertEqual(a['gen_ai.usage.cache_read.input_tokens'], 0)
        self.assertEqual(a['llm.request_id'], ans.request_id)
        self.assertAlmostEqual(a['llm.cost.input_cost_usd'], 23 * 1.0 / 1e6)
        self.assertAlmostEqual(a['llm.cost.output_cost_usd'], 7 * 2.0 / 1e6)
        self.assertEqual(span['status']['code'], STATUS_UNSET)
        self.assertNotIn('gen_ai.input.messages', a)   # capture is off by default
        self.assertNotIn('gen_ai.output.messages', a)
        self.assertEqual(span['events'], [])

    def test_openai_stream_with_usage(self):
        body = {'model': 'gpt-4o-mini', 'stream': True, 'stream_options': {'include_usage': True},
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, status, data = self.call('/v1/chat/completions', body,
                                            {'X-Fake-First-Delay-Ms': '60'})
        self.assertIn(b'data: [DONE]', data)
        self.assertIn(b' friend', data)
        a = self.check_common(span, ans, 'openai')
        self.assertIs(a['gen_ai.request.stream'], True)
        self.assertEqual(a['gen_ai.response.id'], 'chatcmpl-s1')
        self.check_ttft(span, ans, a, 60)
        self.assertIn('llm.cost.input_cost_usd', a)

    def test_openai_stream_without_usage_has_no_usage_or_cost(self):
        body = {'model': 'gpt-4o-mini', 'stream': True,
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, _, _ = self.call('/v1/chat/completions', body)
        a = self.check_common(span, ans, 'openai')
        self.assertNotIn('gen_ai.usage.input_tokens', a)
        self.assertNotIn('gen_ai.usage.output_tokens', a)
        self.assertNotIn('llm.cost.input_cost_usd', a)
        self.assertEqual(a['gen_ai.response.finish_reasons'], ['stop'])
        self.check_ttft(span, ans, a, 0)

    def test_openai_tool_calls_are_events(self):
        body = {'model': 'gpt-4o-mini', 'tools': [{'type': 'function', 'function': {
            'name': 'get_weather'}}], 'messages': [{'role': 'user', 'content': 'weather?'}]}
        span, ans, _, _ = self.call('/v1/chat/completions', body)
        a = self.check_common(span, ans, 'openai')
        self.assertEqual(a['gen_ai.response.finish_reasons'], ['tool_calls'])
        ev = [(e['name'], e['attributes']) for e in span['events']]
        self.assertEqual(ev, [
            ('gen_ai.tool.call', {'gen_ai.tool.name': 'get_weather', 'gen_ai.tool.call.id': 'call_w1'}),
            ('gen_ai.tool.call', {'gen_ai.tool.name': 'get_time', 'gen_ai.tool.call.id': 'call_t2'})])

    def test_openai_long_stream_skimmed(self):
        """After the first token a long stream is only skimmed (not split event by
        event): tool calls starting mid-stream, a choice finishing half-way and the
        usage at the end still come out, through curl and Python alike."""
        body = {'model': 'gpt-4o-mini', 'stream': True, 'x_fake_events': 600,
                'stream_options': {'include_usage': True},
                'tools': [{'type': 'function', 'function': {'name': 'lookup'}}],
                'messages': [{'role': 'user', 'content': 'look it up'}]}
        for client in ('python', 'curl'):
            with self.subTest(client=client):
                self.setUp()
                span, ans, _, data = self.call('/v1/chat/completions', body, client=client)
                self.assertIn(b'data: [DONE]', data)
                a = self.check_common(span, ans, 'openai')
                self.assertEqual(a['gen_ai.response.finish_reasons'], ['tool_calls', 'length'])
                self.assertEqual(a['gen_ai.usage.input_tokens'], 31)
                self.assertEqual(a['gen_ai.usage.output_tokens'], 600)
                ev = [(e['name'], e['attributes']) for e in span['events']]
                self.assertEqual(ev, [
                    ('gen_ai.tool.call', {'gen_ai.tool.name': 'lookup',
                                          'gen_ai.tool.call.id': 'call_a1'}),
                    ('gen_ai.tool.call', {'gen_ai.tool.name': 'search',
                                          'gen_ai.tool.call.id': 'call_b2'})])

    def test_openai_embeddings(self):
        body = {'model': 'text-embedding-3-small', 'input': 'hello', 'dimensions': 3,
                'encoding_format': 'float'}
        span, ans, _, _ = self.call('/v1/embeddings', body)
        a = self.check_common(span, ans, 'openai', 'embeddings', 'llm.embedding')
        self.assertEqual(a['gen_ai.usage.input_tokens'], 8)
        self.assertNotIn('gen_ai.usage.output_tokens', a)
        self.assertEqual(a['gen_ai.embeddings.dimension.count'], 3)
        self.assertEqual(a['gen_ai.request.encoding_formats'], ['float'])

    def test_gzip_deflate_and_chunked_bodies(self):
        body = {'model': 'gpt-4o-mini', 'messages': [{'role': 'user', 'content': 'x'}]}
        for enc, framing in (('gzip', 'length'), ('deflate', 'chunked'), ('gzip', 'close')):
            with self.subTest(enc=enc, framing=framing):
                self.setUp()
                span, ans, _, _ = self.call('/v1/chat/completions', body,
                                            {'X-Fake-Encoding': enc, 'X-Fake-Framing': framing})
                a = self.check_common(span, ans, 'openai')
                self.assertEqual(a['gen_ai.response.id'], ans.response_id)
                self.assertNotIn('llm.response.unparsed', a)

    def test_brotli_is_recorded_as_unparsed(self):
        body = {'model': 'gpt-4o-mini', 'messages': []}
        span, ans, _, _ = self.call('/v1/chat/completions', body, {'X-Fake-Encoding': 'br'})
        a = attrs(span)
        self.assertIs(a['llm.response.unparsed'], True)
        self.assertEqual(a['gen_ai.request.model'], 'gpt-4o-mini')
        self.assertNotIn('gen_ai.usage.input_tokens', a)

    def test_rate_limit_and_invalid_model_errors(self):
        for model, code, etype in (('rate-limited', 429, 'rate_limit_exceeded'),
                                   ('no-such-model', 400, 'model_not_found')):
            with self.subTest(model=model):
                self.setUp()
                span, ans, status, _ = self.call('/v1/chat/completions',
                                                 {'model': model, 'messages': []})
                self.assertEqual(status, code)
                a = attrs(span)
                self.assertEqual(a['error.type'], etype)
                self.assertEqual(a['http.response.status_code'], code)
                if code == 429:
                    self.assertEqual(a['http.response.header.retry-after'], '7')
                else:
                    self.assertNotIn('http.response.header.retry-after', a)
                self.assertEqual(span['status']['code'], STATUS_ERROR)
                self.assertEqual(span['name'], 'llm.completion')
                self.assertNotIn('llm.cost.input_cost_usd', a)

    # -- Anthropic ---------------------------------------------------------------------
    def test_anthropic_message_gzip_tools_and_cache_tokens(self):
        body = {'model': 'claude-3-5-haiku-20241022', 'max_tokens': 256, 'top_k': 5,
                'tools': [{'name': 'lookup'}], 'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, _, _ = self.call('/v1/messages', body,
                                    {'x-api-key': ANTHROPIC_KEY, 'X-Fake-Encoding': 'gzip'})
        a = self.check_common(span, ans, 'anthropic')
        self.assertEqual(a['gen_ai.usage.input_tokens'], 37)    # 30 + cache 5 + 2
        self.assertEqual(a['gen_ai.usage.cache_read.input_tokens'], 5)
        self.assertEqual(a['gen_ai.usage.cache_creation.input_tokens'], 2)
        self.assertEqual(a['gen_ai.request.top_k'], 5)
        self.assertEqual(a['llm.request_id'], 'req_ant_1')
        self.assertAlmostEqual(a['llm.cost.input_cost_usd'], (30 * 1.0 + 5 * 0.1 + 2 * 1.25) / 1e6)
        self.assertAlmostEqual(a['llm.cost.output_cost_usd'], 12 * 5.0 / 1e6)
        self.assertEqual([e['attributes'] for e in span['events']],
                         [{'gen_ai.tool.name': 'lookup', 'gen_ai.tool.call.id': 'toolu_01'}])

    def test_anthropic_stream(self):
        body = {'model': 'claude-3-5-haiku-20241022', 'max_tokens': 100, 'stream': True,
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, _, data = self.call('/v1/messages', body, {'X-Fake-First-Delay-Ms': '40'})
        self.assertIn(b'event: message_stop', data)
        a = self.check_common(span, ans, 'anthropic')
        self.assertEqual(a['gen_ai.response.id'], 'msg_02s')
        self.check_ttft(span, ans, a, 40)

    # -- Gemini and Ollama -----------------------------------------------------------------
    def test_gemini_generate_content(self):
        body = {'contents': [{'role': 'user', 'parts': [{'text': 'Bonjour?'}]}],
                'generationConfig': {'maxOutputTokens': 99, 'temperature': 0.5}}
        span, ans, _, _ = self.call('/v1beta/models/gemini-1.5-flash:generateContent', body)
        a = self.check_common(span, ans, 'gcp.gemini', 'generate_content')
        self.assertEqual(a['gen_ai.request.model'], 'gemini-1.5-flash')    # from the path
        self.assertEqual(a['gen_ai.request.max_tokens'], 99)
        self.assertAlmostEqual(a['llm.cost.input_cost_usd'], 14 * 0.5 / 1e6)

    def test_ollama_chat_stream(self):
        body = {'model': 'llama3.2', 'messages': [{'role': 'user', 'content': 'sky?'}]}
        span, ans, _, data = self.call('/api/chat', body, {'X-Fake-First-Delay-Ms': '30'})
        self.assertEqual(data.count(b'\n'), 4)
        a = self.check_common(span, ans, 'ollama')
        self.assertIs(a['gen_ai.request.stream'], True)
        self.check_ttft(span, ans, a, 30)
        self.assertNotIn('llm.cost.input_cost_usd', a)    # not in the pricing table

    # -- content capture and redaction ---------------------------------------------------
    PROMPT = ('key %s, aws AKIAIOSFODNN7EXAMPLE, jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.'
              'c2lnbmF0dXJlX2hlcmU, auth Bearer abc123def456ghi, mail jane.doe@example.com, '
              'card 4111 1111 1111 1111; look-alikes: task-list, skeleton, AKIA12, '
              'order 4111 1111 1111 1112, user@localhost' % SECRET_KEY)

    def test_capture_off_by_default_and_redacted_when_on(self):
        body = {'model': 'gpt-4o-mini', 'messages': [{'role': 'user', 'content': self.PROMPT}]}
        span, ans, _, _ = self.call('/v1/chat/completions', body,
                                    env={'OTELSHIM_CAPTURE_CONTENT': 'true'})
        a = self.check_common(span, ans, 'openai')
        msgs = json.loads(a['gen_ai.input.messages'])
        self.assertEqual(msgs[0]['role'], 'user')
        text = msgs[0]['parts'][0]['content']
        for kind in ('api_key', 'aws_key', 'jwt', 'bearer', 'email', 'credit_card'):
            self.assertIn('[REDACTED:%s]' % kind, text)
        self.assertNotIn('AKIAIOSFODNN7EXAMPLE', text)
        self.assertNotIn('jane.doe', text)
        self.assertNotIn('4111 1111 1111 1111', text)
        for kept in ('task-list', 'skeleton', 'AKIA12', '4111 1111 1111 1112'):
            self.assertIn(kept, text)
        out = json.loads(a['gen_ai.output.messages'])
        self.assertEqual(out[0]['parts'][0]['content'], 'Paris is the capital of France.')
        self.assertEqual(out[0]['finish_reason'], 'stop')

    def test_redact_prompts_omits_inputs(self):
        body = {'model': 'gpt-4o-mini', 'messages': [{'role': 'user', 'content': 'secret plan'}]}
        span, _, _, _ = self.call('/v1/chat/completions', body,
                                  env={'OTELSHIM_CAPTURE_CONTENT': 'true',
                                       'OTEL_REDACT_PROMPTS': 'true'})
        a = attrs(span)
        self.assertNotIn('gen_ai.input.messages', a)
        self.assertIn('gen_ai.output.messages', a)
        self.assertNotIn('secret plan', json.dumps(span))

    # -- tables --------------------------------------------------------------------------
    def test_provider_table_override(self):
        path = os.path.join(self.tmp.name, 'providers.json')
        with open(path, 'w') as f:
            json.dump({'paths': [{'suffix': '/chat/completions', 'flavour': 'openai',
                                  'operation': 'chat'}],
                       'defaults': {'openai': 'openai'},
                       'providers': [{'name': 'my-gateway', 'system': 'my-gateway',
                                      'hosts': ['127.0.0.*']}]}, f)
        body = {'model': 'gpt-4o-mini', 'messages': []}
        span, ans, _, _ = self.call('/v1/chat/completions', body,
                                    env={'OTELSHIM_LLM_PROVIDERS': path})
        a = attrs(span)
        self.assertEqual(a['gen_ai.provider.name'], 'my-gateway')
        self.assertNotIn('llm.cost.input_cost_usd', a)   # priced per provider: none here
        # The override replaced the table: embeddings are no LLM call any more.
        self.setUp()
        span, _, _, _ = self.call('/v1/embeddings', {'model': 'text-embedding-3-small',
                                                     'input': 'x'},
                                  env={'OTELSHIM_LLM_PROVIDERS': path})
        self.assertNotIn('gen_ai.operation.name', attrs(span))

    def test_plain_http_request_is_not_an_llm_span(self):
        span, _, _, _ = self.call('/v1/models/list', {'model': 'gpt-4o-mini'})
        self.assertNotIn('gen_ai.operation.name', attrs(span))
        self.assertEqual(span['name'], 'POST /v1/models/list')

    # -- curl (libcurl: traced at its level, the body through its write callback) ----
    def test_curl_chat_and_stream(self):
        body = {'model': 'gpt-4o-mini', 'max_tokens': 12,
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, status, data = self.call('/v1/chat/completions', body, client='curl')
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)['id'], ans.response_id)   # output unchanged
        a = self.check_common(span, ans, 'openai')
        self.assertEqual(a['gen_ai.request.max_tokens'], 12)
        self.assertIn('http.client.timing.total', a)    # the libcurl level made it
        self.assertAlmostEqual(a['llm.cost.input_cost_usd'], 23 * 1.0 / 1e6)

        self.setUp()
        body = {'model': 'claude-3-5-haiku-20241022', 'max_tokens': 50, 'stream': True,
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, status, data = self.call('/v1/messages', body,
                                            {'X-Fake-First-Delay-Ms': '40'}, client='curl')
        self.assertIn(b'event: message_stop', data)
        a = self.check_common(span, ans, 'anthropic')
        self.check_ttft(span, ans, a, 40)

    def test_curl_provider_error(self):
        span, ans, status, _ = self.call('/v1/chat/completions',
                                         {'model': 'rate-limited', 'messages': []}, client='curl')
        self.assertEqual(status, 429)
        a = attrs(span)
        self.assertEqual(a['error.type'], 'rate_limit_exceeded')
        self.assertEqual(span['status']['code'], STATUS_ERROR)
        self.assertEqual(span['name'], 'llm.completion')

    # -- HTTPS (the TLS hooks) ---------------------------------------------------------
    def test_https_stream_through_openssl(self):
        cert, key = make_cert(self.tmp.name)
        with FakeLLMServer(cert, key) as tls:
            body = {'model': 'gpt-4o-mini', 'stream': True,
                    'stream_options': {'include_usage': True},
                    'messages': [{'role': 'user', 'content': 'hi'}]}
            span, ans, status, data = self.call('/v1/chat/completions', body,
                                                {'X-Fake-First-Delay-Ms': '30'}, server=tls)
            self.assertEqual(status, 200)
            self.assertIn(b'data: [DONE]', data)
            a = self.check_common(span, ans, 'openai')
            self.assertEqual(a['url.scheme'], 'https')
            self.check_ttft(span, ans, a, 30)

    # -- Node.js -------------------------------------------------------------------------
    @unittest.skipUnless(shutil.which('node'), 'node not installed (scripts/setup --tests)')
    def test_node_fetch(self):
        body = {'model': 'gpt-4o-mini', 'max_tokens': 5,
                'messages': [{'role': 'user', 'content': 'hi'}]}
        span, ans, status, _ = self.call('/v1/chat/completions', body, client='node')
        self.assertEqual(status, 200)
        a = self.check_common(span, ans, 'openai')
        self.assertEqual(a['gen_ai.request.max_tokens'], 5)
        self.assertIn('user_agent.original', a)


if __name__ == '__main__':
    unittest.main()
