"""The export pipeline seen from outside: OTLP/HTTP requests as the receiver
(Google's protobuf runtime) decodes them, compression, custom headers, retry
and give-up rules, the console exporter, and the launcher."""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpServer, run_under_shim, shim_env, repo_root, attrs, wait_until)

PY = '/usr/bin/python3'

# A program that makes one request, then waits (bounded) until told to exit
# on stdin: its exporter has time to retry while the test watches.
WAIT_PROG = (
    'import sys,urllib.request\n'
    'urllib.request.urlopen(sys.argv[1]).read()\n'
    'print("requested", flush=True)\n'
    'sys.stdin.readline()\n')


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.receiver = OtlpReceiver().start()
        self.server = RecordingHttpServer().start()

    def tearDown(self):
        self.server.stop()
        self.receiver.stop()

    def curl(self, path='/x', env=None, **kw):
        return run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + path],
                              env_extra=env, receiver=self.receiver, check=True, **kw)

    def start_waiting(self, env=None):
        p = subprocess.Popen([PY, '-c', WAIT_PROG, self.server.url + '/w'],
                             env=shim_env(env, self.receiver), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b'requested\n')
        return p

    def finish(self, p):
        out, err = p.communicate(b'\n', timeout=20)
        self.assertEqual(p.returncode, 0, err)
        return err

    def sched(self, pid):
        """(nice, policy) of the program's main thread and of the shim's exporter
        thread (None until it exists)."""
        def stat(tid):
            with open('/proc/%d/task/%s/stat' % (pid, tid)) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            return int(fields[16]), int(fields[38])
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                if f.read().strip() == 'otelshim-exp':
                    return stat(pid), stat(tid)
        return stat(pid), None

    def exporter_sched(self, env=None, setup=None):
        p = subprocess.Popen([PY, '-c', WAIT_PROG, self.server.url + '/w'],
                             env=shim_env(env, self.receiver), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=setup)
        try:
            self.assertEqual(p.stdout.readline(), b'requested\n')
            return wait_until(lambda: (lambda v: v if v[1] is not None else None)(
                self.sched(p.pid)), timeout=10, message='the exporter thread')
        finally:
            self.finish(p)

    def test_exporter_thread_priority(self):
        """The exporter thread runs at the program's priority unless
        OTELSHIM_EXPORTER_NICE asks for a lower one (never a higher one), under
        SCHED_BATCH (its wake-ups do not preempt the program's threads), and never
        with a real-time policy, whatever the thread that started it had."""
        other, batch = os.SCHED_OTHER, os.SCHED_BATCH
        self.assertEqual(self.exporter_sched(), ((0, other), (0, batch)))
        self.assertEqual(self.exporter_sched({'OTELSHIM_EXPORTER_NICE': '7'}),
                         ((0, other), (7, batch)))
        # A program already at nice 5: 3 would raise the thread's priority.
        self.assertEqual(self.exporter_sched({'OTELSHIM_EXPORTER_NICE': '3'},
                                             lambda: os.nice(5)), ((5, other), (5, batch)))
        if os.geteuid() == 0:
            # Real-time main thread (root may set it): the exporter is not.
            main, exp = self.exporter_sched(
                None, lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
            self.assertEqual(main[1], os.SCHED_FIFO)
            self.assertEqual(exp[1], batch)

    def test_protobuf_request_shape(self):
        self.curl()
        self.receiver.wait_for_spans(1)
        (req,) = self.receiver.requests()
        self.assertEqual(req['method'], 'POST')
        self.assertEqual(req['path'], '/v1/traces')
        self.assertEqual(req['content_type'], 'application/x-protobuf')
        self.assertTrue(req['user_agent'].startswith('otelshim/'), req['user_agent'])
        self.assertEqual(req['span_count'], 1)

    def test_gzip_and_custom_headers(self):
        self.curl(env={'OTEL_EXPORTER_OTLP_COMPRESSION': 'gzip',
                       'OTEL_EXPORTER_OTLP_HEADERS': 'authorization=Bearer%20abc123,x-tenant=t1'})
        (s,) = self.receiver.wait_for_spans(1)
        (req,) = self.receiver.requests()
        self.assertEqual(req['content_encoding'], 'gzip')
        self.assertEqual(req['headers']['authorization'], 'Bearer abc123')
        self.assertEqual(req['headers']['x-tenant'], 't1')
        self.assertEqual(attrs(s)['http.request.method'], 'GET')

    def test_settings_survive_the_program_clearing_its_environment(self):
        """A program may rewrite its environment before its first span (nginx
        keeps only TZ). The exporter uses the proxy the environment named at
        load, not what it reads later: here the collector's host does not
        resolve, and only the proxy (the receiver, standing in for it) can
        deliver the span."""
        prog = ('import os,sys,urllib.request\n'
                'os.environ.clear()\n'  # unsetenv each: the C environment is empty
                'urllib.request.urlopen(sys.argv[1]).read()\n')
        run_under_shim([PY, '-c', prog, self.server.url + '/c'], receiver=self.receiver,
                       check=True, env_extra={
                           'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://collector.invalid:4318',
                           'http_proxy': self.receiver.endpoint,
                           'no_proxy': None, 'NO_PROXY': None})
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(attrs(s)['url.path'], '/c')
        (req,) = self.receiver.requests()
        self.assertEqual(req['target'], 'http://collector.invalid:4318/v1/traces')

    # Makes one request; once told an export arrived (the exporter is then
    # connected), reports the fd numbers it gets and sees, closes every fd
    # above 2 as a daemon would, and makes a second request.
    FD_PROG = (
        'import json,os,sys,urllib.request\n'
        'def lowest():\n'
        '    fd = os.open("/dev/null", os.O_RDONLY)\n'
        '    os.close(fd)\n'
        '    return fd\n'
        'urllib.request.urlopen(sys.argv[1]).read()\n'
        'print("requested", flush=True)\n'
        'sys.stdin.readline()\n'
        'first = lowest()\n'
        'listing = sorted(int(x) for x in os.listdir("/proc/self/fd"))\n'
        'os.closerange(3, 4096)\n'
        'again = lowest()\n'
        'urllib.request.urlopen(sys.argv[1]).read()\n'
        'print(json.dumps([first, listing, again]), flush=True)\n')

    def fd_report(self, env, preload=True, wrapper=()):
        p = subprocess.Popen(list(wrapper) + [PY, '-c', self.FD_PROG, self.server.url + '/fd'],
                             env=shim_env(env, self.receiver if preload else None, preload),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            self.assertEqual(p.stdout.readline(), b'requested\n')
            if preload:  # the exporter has connected
                wait_until(lambda: self.receiver.requests(), timeout=10, message='an export')
            out, err = p.communicate(b'\n', timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0, err)
        return json.loads(out), err

    def test_exporter_fds_stay_out_of_the_programs_table(self):
        """The exporter's sockets live in an fd table of its own: the program
        gets the same numbers from open() as without the shim, does not see
        them in /proc/self/fd, and its close-everything loop neither touches
        them nor is refused."""
        expected, _ = self.fd_report({}, preload=False)
        got, err = self.fd_report({'OTEL_LOG_LEVEL': None})
        self.assertEqual(got, expected, err)
        self.receiver.wait_for_spans(2)

    def test_exporter_keeps_the_programs_table_where_it_must(self):
        """The exporter stays in the program's table, as before, when its
        diagnostics must reach the program's stderr (fd 2 of that table),
        where a policy refuses close_range (an older sandbox: a seccomp
        filter here), and when OTELSHIM_EXPORTER_SHARE_FDS=true asks: its
        fds take the program's numbers, the program's close loop leaves
        them alone, spans still arrive, and its diagnostics reach stderr."""
        deny = os.environ.get('OTELSHIM_SECCOMP_DENY')
        if not deny:
            self.fail('OTELSHIM_SECCOMP_DENY not set (run through meson test)')
        expected, _ = self.fd_report({}, preload=False)
        cases = (('diagnostics on', {'OTEL_LOG_LEVEL': 'warn'}, ()),
                 ('close_range refused', {'OTEL_LOG_LEVEL': None}, (deny, 'close_range', '--')),
                 ('asked', {'OTEL_LOG_LEVEL': None, 'OTELSHIM_EXPORTER_SHARE_FDS': 'true'}, ()))
        for name, env, wrapper in cases:
            with self.subTest(name):
                self.receiver.clear()
                # The first export is refused: the exporter thread reports it.
                self.receiver.script([(400, {})])
                got, err = self.fd_report(env, wrapper=wrapper)
                self.assertGreater(got[0], expected[0], err)
                self.assertGreater(got[2], expected[2], err)
                (s,) = self.receiver.wait_for_spans(1)
                self.assertEqual(attrs(s)['url.path'], '/fd')
                if env['OTEL_LOG_LEVEL']:
                    self.assertIn(b'400', err)

    def test_traces_endpoint_used_as_is(self):
        self.curl(env={'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9',
                       'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': self.receiver.endpoint + '/v1/traces'})
        self.assertEqual(len(self.receiver.wait_for_spans(1)), 1)

    def test_otlp_endpoint_http_variable(self):
        self.curl(env={'OTEL_EXPORTER_OTLP_ENDPOINT': None, 'OTLP_ENDPOINT_HTTP': self.receiver.endpoint})
        self.assertEqual(len(self.receiver.wait_for_spans(1)), 1)

    def test_retry_503_honours_retry_after(self):
        self.receiver.script([(503, {'Retry-After': '1'})])
        p = self.start_waiting({'OTELSHIM_RETRY_INITIAL_MS': '50'})
        try:
            self.receiver.wait_for_spans(1, timeout=15)
        finally:
            self.finish(p)
        reqs = self.receiver.requests()
        self.assertEqual([r['status'] for r in reqs], [503, 200])
        self.assertGreaterEqual(reqs[1]['time'] - reqs[0]['time'], 0.9)

    def test_retry_429_with_backoff(self):
        self.receiver.script([(429, {}), (502, {}), (504, {})])
        p = self.start_waiting({'OTELSHIM_RETRY_INITIAL_MS': '20'})
        try:
            self.receiver.wait_for_spans(1, timeout=15)
        finally:
            self.finish(p)
        self.assertEqual([r['status'] for r in self.receiver.requests()], [429, 502, 504, 200])

    def test_400_is_not_retried_and_reported_once(self):
        self.receiver.script([(400, {}), (400, {})])
        p = self.start_waiting({'OTELSHIM_RETRY_INITIAL_MS': '20'})
        wait_until(lambda: self.receiver.requests(), timeout=10, message='first export')
        err = self.finish(p)  # exit flush: nothing left to send
        self.assertEqual([r['status'] for r in self.receiver.requests()], [400])
        self.assertEqual(self.receiver.spans(), [])
        self.assertEqual(err.count(b'otelshim: '), 1, err)
        self.assertIn(b'400', err)

    def test_partial_success_is_accepted(self):
        self.receiver.partial_success(1, 'one span rejected')
        self.curl()
        self.assertEqual(len(self.receiver.wait_for_spans(1)), 1)
        self.assertEqual(len(self.receiver.requests()), 1)

    def test_hanging_collector_delays_exit_at_most_2s(self):
        # In the program's fd table (diagnostics on) and in one of the
        # exporter's own, where the exit's deadline reaches a wait by
        # polling in slices instead of through a wake fd.
        for level in ('warn', None):
            with self.subTest(log_level=level):
                self.receiver.hang()
                t0 = time.monotonic()
                res = self.curl(env={'OTEL_LOG_LEVEL': level})
                elapsed = time.monotonic() - t0
                self.receiver.release()
                self.assertEqual(res.returncode, 0)
                self.assertLess(elapsed, 3.5,
                                'exit took %.2fs with a hanging collector' % elapsed)

    def test_absent_collector_does_not_delay_exit(self):
        base_t0 = time.monotonic()
        run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + '/x'], preload=False, check=True)
        base = time.monotonic() - base_t0
        t0 = time.monotonic()
        res = run_under_shim(['curl', '-s', '-o', '/dev/null', self.server.url + '/x'],
                             env_extra={'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'}, check=True)
        elapsed = time.monotonic() - t0
        self.assertEqual(res.stderr.count(b'otelshim:'), res.stderr.count(b'otelshim:'))
        self.assertLess(elapsed - base, 1.0, 'absent collector added %.2fs at exit' % (elapsed - base))

    def test_exit_timeout_is_configurable(self):
        self.receiver.hang()
        t0 = time.monotonic()
        self.curl(env={'OTELSHIM_EXIT_TIMEOUT_MS': '300'})
        elapsed = time.monotonic() - t0
        self.receiver.release()
        self.assertLess(elapsed, 1.5)

    def test_queue_full_drops_and_counts(self):
        # A queue of one span, and an exporter held in its first export by the
        # receiver until the program has made all its requests: one span is in
        # flight, at most one fits the queue, the rest are dropped. (Not a race
        # with the exporter's speed, which the old version of this test was.)
        self.receiver.script(['hang'])
        script = ('import urllib.request,sys\n'
                  'for i in range(5): urllib.request.urlopen(sys.argv[1]+"/q%d"%i).read()\n'
                  'print("requested", flush=True)\n'
                  'sys.stdin.readline()\n')
        env = {'OTEL_BSP_MAX_QUEUE_SIZE': '1', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE': '1',
               'OTEL_BSP_SCHEDULE_DELAY': '60000', 'OTEL_LOG_LEVEL': 'warn'}
        p = subprocess.Popen([PY, '-c', script, self.server.url], env=shim_env(env, self.receiver),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b'requested\n')
        wait_until(lambda: self.receiver.requests())  # the first export is held
        self.receiver.release()
        err = self.finish(p)
        got = len(self.receiver.wait_for_spans(1))
        self.assertLess(got, 3)  # one in flight, at most one queued behind it
        self.assertIn(b'spans dropped', err)

    def test_steady_flow_spares_the_program_wakes(self):
        """While spans keep coming, the exporter thread wakes itself between
        drains: the program's thread does not make a futex call to wake it at
        every chunk of 64 spans (each such wake of a thread asleep on another
        core costs the program ~5 us here), only at the queue's half-way
        stride, when the flow starts and at exit. One curl fetching N URLs on
        one connection, its futex calls counted by strace; every span arrives."""
        n = 4000
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, 'strace.log')
            env = {'OTEL_BSP_SCHEDULE_DELAY': '5000', 'OTEL_BSP_MAX_QUEUE_SIZE': '2048'}
            url = self.server.url + '/s[1-%d]' % n
            res = run_under_shim(['strace', '-f', '-qq', '-e', 'trace=futex', '-o', log,
                                  'curl', '-s', '-o', '/dev/null', url],
                                 env_extra=env, receiver=self.receiver, timeout=120, check=True)
            self.assertEqual(res.returncode, 0)
            with open(log) as f:
                lines = f.read().splitlines()
        main = lines[0].split()[0] if lines else None
        wakes = [l for l in lines if l.split()[0] == main and 'FUTEX_WAKE_PRIVATE, 1)' in l]
        self.assertEqual(len(self.receiver.wait_for_spans(n, timeout=30)), n)
        # Waking at every chunk would make n / 64 = 62 of them. The flow
        # starting, the strides at 1024, 2048 and 3072 and the exit flush make
        # 5; naps that end empty are doubled, so only a pause of the program
        # longer than a second would add one.
        self.assertLessEqual(len(wakes), 20, '\n'.join(wakes))

    def yields_of(self, n, env, hold_first_post):
        """Run a Python program making @n requests under strace (only
        sched_yield traced, through seccomp: the program runs at full speed),
        the first export held until the program is done when
        @hold_first_post; returns the sched_yield calls made (the program's
        own thread makes none) once it exited and all n spans arrived."""
        script = ('import sys,urllib.request\n'
                  'for i in range(int(sys.argv[2])): urllib.request.urlopen(sys.argv[1]+"/y%d"%i).read()\n'
                  'print("requested", flush=True)\n'
                  'sys.stdin.readline()\n')
        env = dict(env, OTEL_EXPORTER_OTLP_TIMEOUT='60000', OTEL_BSP_EXPORT_TIMEOUT='60000',
                   OTEL_BSP_SCHEDULE_DELAY='60000', OTEL_BSP_MAX_QUEUE_SIZE='2048')
        self.receiver.clear()
        if hold_first_post:
            self.receiver.script(['hang'])
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, 'strace.log')
            p = subprocess.Popen(['strace', '--seccomp-bpf', '-f', '-qq', '-e', 'trace=sched_yield',
                                  '-o', log, PY, '-c', script, self.server.url, str(n)],
                                 env=shim_env(env, self.receiver), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.assertEqual(p.stdout.readline(), b'requested\n')
                if hold_first_post:
                    wait_until(lambda: self.receiver.requests(), message='the held export')
                    self.receiver.release()
            finally:
                # The exit flush sends the last batch (the schedule is a minute).
                self.finish(p)
            self.assertEqual(len(self.receiver.wait_for_spans(n, timeout=30)), n)
            with open(log) as f:
                return [l for l in f.read().splitlines() if 'sched_yield' in l]

    def test_exporter_steps_aside_between_chunks_only_while_keeping_up(self):
        """Between chunks of 64 spans the exporter thread gives up its CPU turn
        (sched_yield), so that a host thread woken on its CPU during a drain
        runs first instead of waiting ~90 us for all of it; but only while the
        queue is under a quarter full, so that on a host whose CPUs are all
        busy it never falls behind far enough to drop spans for it."""
        # Keeping up: drains of about four chunks (the naps), each followed by
        # a turn given up while spans are left.
        keeping_up = self.yields_of(1500, {}, hold_first_post=False)
        self.assertGreaterEqual(len(keeping_up), 5, keeping_up)
        # Behind: the first export (one chunk, the batch size) is held until
        # the program has queued all its spans, ~1,800 of the queue's 2,048.
        # The drain that follows gives up its turn only once fewer than 512
        # are left: after each of the last ~7 chunks, where stepping aside at
        # every chunk would make ~28.
        behind = self.yields_of(1900, {'OTEL_BSP_MAX_EXPORT_BATCH_SIZE': '64'},
                                hold_first_post=True)
        self.assertLessEqual(len(behind), 12, behind)

    def test_silent_by_default(self):
        res = self.curl(env={'OTEL_LOG_LEVEL': None, 'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})
        self.assertEqual(res.stderr, b'')


class ConsoleTest(unittest.TestCase):
    def setUp(self):
        self.server = RecordingHttpServer().start()

    def tearDown(self):
        self.server.stop()

    def test_console_text_line(self):
        res = run_under_shim(['curl', '-s', self.server.url + '/v1/chat/completions'],
                             env_extra={'OTEL_TRACES_EXPORTER': 'console'}, check=True)
        self.assertEqual(res.stdout, b'ok\n')
        lines = [l for l in res.stderr.decode().splitlines() if l.startswith('otelshim: span')]
        self.assertEqual(len(lines), 1, res.stderr)
        self.assertIn('"GET /v1/chat/completions"', lines[0])
        self.assertIn('kind=client', lines[0])
        self.assertIn('http.response.status_code=200', lines[0])

    def test_console_json_lines(self):
        res = run_under_shim(['curl', '-s', self.server.url + '/j/1234'],
                             env_extra={'OTEL_TRACES_EXPORTER': 'console', 'LOG_FORMAT': 'json'}, check=True)
        objs = [json.loads(l) for l in res.stderr.decode().splitlines() if l.startswith('{')]
        self.assertEqual(len(objs), 1, res.stderr)
        o = objs[0]
        self.assertEqual(o['name'], 'GET /j/{id}')
        self.assertEqual(o['kind'], 'client')
        self.assertEqual(o['attributes']['http.response.status_code'], 200)
        self.assertEqual(o['attributes']['url.path'], '/j/1234')
        self.assertEqual(len(o['trace_id']), 32)

    def test_exporter_none(self):
        res = run_under_shim(['curl', '-s', self.server.url + '/n'],
                             env_extra={'OTEL_TRACES_EXPORTER': 'none'}, check=True)
        self.assertEqual(res.stderr, b'')
        self.assertIn(b'traceparent: 00-', b''.join(self.server.connections()))


class LauncherTest(unittest.TestCase):
    RUN = os.path.join(repo_root(), 'scripts', 'otelshim-run')

    def setUp(self):
        self.server = RecordingHttpServer().start()

    def tearDown(self):
        self.server.stop()

    def launch(self, args, env=None, receiver=None):
        e = shim_env(env, receiver, preload=False)
        return subprocess.run([self.RUN] + args, env=e, capture_output=True, timeout=60)

    def test_defaults_to_console_without_endpoint(self):
        res = self.launch(['--', 'curl', '-s', self.server.url + '/l'])
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout, b'ok\n')
        self.assertIn(b'otelshim: span "GET /l"', res.stderr)
        self.assertIn(b'service=llm.curl', res.stderr)

    def test_endpoint_and_service(self):
        with OtlpReceiver() as receiver:
            res = self.launch(['--service', 'llm.launcher-test', '--endpoint', receiver.endpoint,
                               'curl', '-s', self.server.url + '/e'])
            self.assertEqual(res.returncode, 0, res.stderr)
            # The launcher's root span, curl's process span, its request.
            spans = receiver.wait_for_spans(3)
            self.assertEqual(len(spans), 3)
            for s in spans:
                self.assertEqual(s['resource']['service.name'], 'llm.launcher-test')
            self.assertNotIn(b'otelshim: span', res.stderr)

    def test_exit_status_is_the_programs(self):
        res = self.launch(['--console', 'sh', '-c', 'exit 7'])
        self.assertEqual(res.returncode, 7)
        # Nothing on stderr but the spans asked for: the launcher's root span
        # and sh's own process span.
        lines = res.stderr.decode().splitlines()
        self.assertEqual(len(lines), 2, res.stderr)
        for line in lines:
            self.assertTrue(line.startswith('otelshim: span "exec sh" kind=internal status=ERROR'),
                            line)
            self.assertTrue(line.endswith(' process.exit.code=7'), line)


if __name__ == '__main__':
    unittest.main()
