"""Process spans and process trees: otelshim-run's root span, a span per
preloaded process (OTELSHIM_PROCESS_SPANS), context handed down through
TRACEPARENT across fork/exec, exit codes, signals, and what must not happen
(process spans without the switch, a fork child exporting its parent's)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpServer, run_under_shim, shim_env, repo_root, attrs, find_span,
    find_spans, format_span, TRACEPARENT, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL, STATUS_ERROR,
    STATUS_UNSET, wait_until)

PY = '/usr/bin/python3'
SCRIPT = os.path.join(repo_root(), 'scripts', 'otelshim-run')
CURL = shutil.which('curl') or '/usr/bin/curl'
PARENT_TP = TRACEPARENT.make()
PROCS = {'OTELSHIM_PROCESS_SPANS': 'true'}


def process_spans(spans):
    return [s for s in spans if s['kind'] == SPAN_KIND_INTERNAL]


def listing(spans):
    return '\n'.join('  ' + format_span(s) for s in spans)


class ProcessTreeTest(unittest.TestCase):
    def setUp(self):
        self.receiver = OtlpReceiver().start()
        self.server = RecordingHttpServer().start()

    def tearDown(self):
        self.server.stop()
        self.receiver.stop()

    def launch(self, argv, env_extra=None, timeout=30):
        """otelshim-run --endpoint <receiver> -- argv (the script sets LD_PRELOAD)."""
        return run_under_shim([SCRIPT, '--endpoint', self.receiver.endpoint, '--'] + argv,
                              receiver=self.receiver, preload=False, env_extra=env_extra,
                              timeout=timeout)

    def one_trace(self, n):
        spans = self.receiver.wait_for_spans(n)
        self.assertEqual(len(spans), n, listing(spans))
        self.assertEqual(len({s['trace_id'] for s in spans}), 1, listing(spans))
        self.assertEqual(len({s['span_id'] for s in spans}), n)
        return spans

    # -- the tree ----------------------------------------------------------------------

    def test_sh_with_two_curls_is_one_trace(self):
        cmd = ['sh', '-c', 'curl -s %s/one; curl -s %s/two' % (self.server.url, self.server.url)]
        base = run_under_shim(cmd, preload=False)
        unshimmed = len(self.server.requests())
        res = self.launch(cmd)
        self.assertEqual((res.returncode, res.stdout), (base.returncode, base.stdout))
        self.assertEqual(res.stdout, b'ok\nok\n')
        self.assertEqual(res.stderr, b'')

        spans = self.one_trace(6)
        procs = process_spans(spans)
        self.assertEqual(sorted(s['name'] for s in procs),
                         ['exec curl', 'exec curl', 'exec sh', 'exec sh'], listing(spans))
        roots = [s for s in spans if not s['parent_span_id']]
        self.assertEqual(len(roots), 1, listing(spans))
        root = roots[0]
        # The launcher's root span describes the command it ran.
        self.assertEqual(root['name'], 'exec sh')
        self.assertEqual(root['kind'], SPAN_KIND_INTERNAL)
        self.assertEqual(attrs(root)['process.exit.code'], 0)
        self.assertEqual(attrs(root)['process.command'], 'sh')
        self.assertEqual(root['status']['code'], STATUS_UNSET)

        (sh,) = [s for s in procs if s['name'] == 'exec sh' and s is not root]
        self.assertEqual(sh['parent_span_id'], root['span_id'])
        self.assertEqual(attrs(sh)['process.exit.code'], 0)
        self.assertEqual(attrs(sh)['process.pid'], attrs(root)['process.pid'])
        self.assertEqual(sh['resource']['process.pid'], attrs(sh)['process.pid'])

        curls = [s for s in procs if s['name'] == 'exec curl']
        for c in curls:
            self.assertEqual(c['parent_span_id'], sh['span_id'], listing(spans))
            self.assertEqual(attrs(c)['process.parent_pid'], attrs(sh)['process.pid'])
            self.assertEqual(attrs(c)['process.executable.name'], 'curl')
            self.assertEqual(attrs(c)['process.exit.code'], 0)
        self.assertNotEqual(attrs(curls[0])['process.pid'], attrs(curls[1])['process.pid'])

        # Each HTTP span sits under the process span of the curl that made it.
        by_pid = {attrs(c)['process.pid']: c for c in curls}
        for path in ('/one', '/two'):
            http = find_span(spans, 'GET ' + path, SPAN_KIND_CLIENT)
            owner = by_pid[http['resource']['process.pid']]
            self.assertEqual(http['parent_span_id'], owner['span_id'], listing(spans))
        # and continues downstream with its own id.
        got = sorted(TRACEPARENT.parse(r.headers['traceparent'][0]).span_id
                     for r in self.server.requests()[unshimmed:])
        want = sorted(s['span_id'] for s in find_spans(spans, kind=SPAN_KIND_CLIENT))
        self.assertEqual(got, want)

    def test_an_existing_traceparent_is_the_roots_parent(self):
        self.launch(['curl', '-s', self.server.url + '/x'], env_extra={'TRACEPARENT': PARENT_TP})
        spans = self.one_trace(3)
        self.assertEqual(spans[0]['trace_id'], TRACEPARENT.TRACE_ID)
        (root,) = [s for s in spans if s['parent_span_id'] == TRACEPARENT.SPAN_ID]
        self.assertEqual(root['name'], 'exec curl')
        (proc,) = [s for s in spans if s['parent_span_id'] == root['span_id']]
        self.assertEqual(proc['name'], 'exec curl')
        self.assertEqual(find_span(spans, 'GET /x')['parent_span_id'], proc['span_id'])

    def test_user_choice_of_process_spans_is_kept(self):
        # OTELSHIM_PROCESS_SPANS=false: the launcher's root span only, and the
        # HTTP span hangs under it through TRACEPARENT.
        self.launch(['curl', '-s', self.server.url + '/x'],
                    env_extra={'OTELSHIM_PROCESS_SPANS': 'false'})
        spans = self.one_trace(2)
        root = find_span(spans, 'exec curl', SPAN_KIND_INTERNAL)
        http = find_span(spans, 'GET /x', SPAN_KIND_CLIENT)
        self.assertEqual(http['parent_span_id'], root['span_id'])

    def test_python_subprocess_keeps_the_parents_span_open(self):
        # subprocess may vfork: the child's exec must not end the parent's span.
        script = ('import subprocess,sys\n'
                  'subprocess.run([sys.argv[1], "-s", sys.argv[2] + "/sub"], check=True)\n'
                  'print("done")\n')
        res = self.launch([PY, '-c', script, CURL, self.server.url])
        self.assertEqual((res.returncode, res.stdout), (0, b'ok\ndone\n'), res.stderr)
        spans = self.one_trace(4)
        (root,) = [s for s in spans if not s['parent_span_id']]
        (py,) = [s for s in process_spans(spans) if s['name'] == 'exec python3' and s is not root]
        curl = find_span(spans, 'exec curl', SPAN_KIND_INTERNAL)
        self.assertEqual(py['parent_span_id'], root['span_id'])
        self.assertEqual(attrs(py)['process.exit.code'], 0)
        self.assertEqual(curl['parent_span_id'], py['span_id'])
        self.assertGreaterEqual(py['end_time_unix_nano'], curl['end_time_unix_nano'])

    # -- exit codes and signals --------------------------------------------------------

    def test_non_zero_exit_code(self):
        res = self.launch(['sh', '-c', 'curl -s %s/x; echo out; exit 3' % self.server.url])
        self.assertEqual((res.returncode, res.stdout), (3, b'ok\nout\n'))
        spans = self.one_trace(4)
        for s in find_spans(spans, 'exec sh', SPAN_KIND_INTERNAL):
            self.assertEqual(attrs(s)['process.exit.code'], 3)
            self.assertEqual(s['status']['code'], STATUS_ERROR)
            self.assertEqual(s['status']['message'], 'exit code 3')

    def test_exit_codes_by_every_route(self):
        # exit() (Python's sys.exit), main's return (curl), _exit() (dash).
        # curl's failed transfer is a CLIENT span too (the libcurl level).
        cases = [
            ([PY, '-c', 'import sys; sys.exit(5)'], 5, 'exec python3', 0),
            ([CURL, '-s', 'http://127.0.0.1:1/'], 7, 'exec curl', 1),
            (['sh', '-c', 'exit 9'], 9, 'exec sh', 0),
            ([PY, '-c', 'import os; os._exit(6)'], 6, 'exec python3', 0),
        ]
        for argv, code, name, n_client in cases:
            with self.subTest(argv=argv):
                self.receiver.clear()
                res = self.launch(argv)
                self.assertEqual(res.returncode, code)
                spans = self.one_trace(2 + n_client)
                self.assertEqual(len(find_spans(spans, kind=SPAN_KIND_CLIENT)), n_client)
                for s in find_spans(spans, kind=SPAN_KIND_INTERNAL):
                    self.assertEqual(s['name'], name)
                    self.assertEqual(attrs(s)['process.exit.code'], code, listing(spans))

    def test_status_is_caught_before_the_exit_handlers_run(self):
        # main's return and exit() end the span before the program's exit
        # handlers (so it is flushed with everything else, before libraries
        # clean up); exit() called from inside libc (error()) is caught by
        # the on_exit fallback, after them.
        src = r'''
#include <error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static void handler(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}
int main(int argc, char **argv)
{
	atexit(handler);
	if (argc > 1 && strcmp(argv[1], "return") == 0)
		return 4;
	if (argc > 1 && strcmp(argv[1], "exit") == 0)
		exit(5);
	error(6, 0, "exit from inside libc");
	return 0;
}
'''
        cc = shutil.which('cc')
        if not cc:
            self.skipTest('no C compiler')
        with tempfile.TemporaryDirectory() as tmp:
            prog = os.path.join(tmp, 'exiter')
            with open(prog + '.c', 'w') as f:
                f.write(src)
            subprocess.run([cc, '-o', prog, prog + '.c'], check=True)
            for how, code, before in (('return', 4, True), ('exit', 5, True),
                                      ('error', 6, False)):
                with self.subTest(how=how):
                    self.receiver.clear()
                    res = run_under_shim([prog, how], receiver=self.receiver, env_extra=PROCS)
                    self.assertEqual(res.returncode, code, res.stderr)
                    handler_ns = int(res.stdout)
                    (s,) = self.receiver.wait_for_spans(1)
                    self.assertEqual(s['name'], 'exec exiter')
                    self.assertEqual(attrs(s)['process.exit.code'], code)
                    if before:
                        self.assertLessEqual(s['end_time_unix_nano'], handler_ns)
                    else:
                        self.assertGreaterEqual(s['end_time_unix_nano'], handler_ns)

    def test_child_killed_by_a_signal(self):
        res = self.launch(['sh', '-c', 'echo before; kill -TERM $$; echo after'])
        self.assertEqual(res.returncode, -signal.SIGTERM)
        self.assertEqual(res.stdout, b'before\n')
        spans = self.receiver.wait_for_spans(1)
        root = [s for s in spans if not s['parent_span_id']]
        self.assertEqual(len(root), 1, listing(spans))
        self.assertNotIn('process.exit.code', attrs(root[0]))
        self.assertEqual(root[0]['status']['code'], STATUS_ERROR)
        self.assertEqual(root[0]['status']['message'], 'terminated by SIGTERM')

    def test_signals_to_the_launcher_reach_the_command(self):
        env = shim_env({'OTEL_EXPORTER_OTLP_ENDPOINT': self.receiver.endpoint}, preload=False)
        proc = subprocess.Popen([SCRIPT, '--', 'sh', '-c', 'exec sleep 30'], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            # The launcher replaces the script (same pid); wait for sleep under it.
            def sleeping():
                try:
                    with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as f:
                        kids = f.read().split()
                    for k in kids:
                        with open('/proc/%s/comm' % k) as f:
                            if f.read().strip() == 'sleep':
                                return True
                    return False
                except OSError:
                    return False
            wait_until(sleeping, timeout=15, message='sleep running under the launcher')
            os.kill(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.assertEqual(proc.returncode, -signal.SIGTERM, err)
        # The root span, and sh's, which ended (and was flushed) at its exec.
        spans = self.receiver.wait_for_spans(2)
        (root,) = [s for s in spans if not s['parent_span_id']]
        self.assertEqual(root['status']['message'], 'terminated by SIGTERM')
        (sh,) = [s for s in spans if s is not root]
        self.assertEqual(sh['name'], 'exec sh')
        self.assertEqual(sh['parent_span_id'], root['span_id'])
        self.assertNotIn('process.exit.code', attrs(sh))

    def test_command_not_found(self):
        res = self.launch(['/nonexistent/otelshim-test-cmd'])
        self.assertEqual(res.returncode, 127)
        self.assertIn(b'/nonexistent/otelshim-test-cmd', res.stderr)
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(s['status']['code'], STATUS_ERROR)
        self.assertTrue(s['status']['message'].startswith('cannot start'))

    # -- bare LD_PRELOAD, fork, exec ---------------------------------------------------

    def test_bare_preload_records_no_process_span(self):
        res = run_under_shim(['sh', '-c', 'echo "$TRACEPARENT"; curl -s %s/x' % self.server.url],
                             receiver=self.receiver, env_extra={'TRACEPARENT': PARENT_TP})
        self.assertEqual(res.stdout, (PARENT_TP + '\nok\n').encode())
        # The receiver records spans before it answers, and the process waited
        # for the answer at exit: everything it sent is here.
        spans = self.receiver.spans()
        self.assertEqual([s['name'] for s in spans], ['GET /x'], listing(spans))
        self.assertEqual(spans[0]['parent_span_id'], TRACEPARENT.SPAN_ID)

    def test_process_spans_change_only_traceparent_in_the_environment(self):
        script = 'import os; print(sorted(os.environ.items()))'
        extra = dict(PROCS, TRACEPARENT=PARENT_TP, TRACESTATE='k=v', BAGGAGE='a=b')
        off = run_under_shim([PY, '-c', script], env_extra=dict(extra, OTELSHIM_PROCESS_SPANS=None))
        on = run_under_shim([PY, '-c', script], receiver=self.receiver, env_extra=extra)
        env_off = dict(eval(off.stdout))
        env_on = dict(eval(on.stdout))
        tp_on = env_on.pop('TRACEPARENT')
        self.assertEqual(env_off.pop('TRACEPARENT'), PARENT_TP)
        env_on.pop('OTELSHIM_PROCESS_SPANS')
        env_on.pop('OTEL_EXPORTER_OTLP_ENDPOINT')
        self.assertEqual(env_on, env_off)
        (s,) = self.receiver.wait_for_spans(1)
        self.assertEqual(tp_on, TRACEPARENT.for_span(s))
        self.assertEqual(s['parent_span_id'], TRACEPARENT.SPAN_ID)
        self.assertEqual(s['trace_state'], 'k=v')

    def test_fork_child_never_exports_the_parents_process_span(self):
        script = (
            'import os,sys,urllib.request\n'
            'u=sys.argv[1]\n'
            'urllib.request.urlopen(u+"/parent-before").read()\n'
            'pid=os.fork()\n'
            'if pid==0:\n'
            '    urllib.request.urlopen(u+"/child").read()\n'
            '    os._exit(0)\n'
            'os.waitpid(pid,0)\n'
            'urllib.request.urlopen(u+"/parent-after").read()\n'
            'print(os.getpid(), pid)\n')
        res = run_under_shim([PY, '-c', script, self.server.url], receiver=self.receiver,
                             env_extra=dict(PROCS, TRACEPARENT=PARENT_TP,
                                            OTEL_BSP_SCHEDULE_DELAY='30000'))
        self.assertEqual(res.returncode, 0, res.stderr)
        parent_pid, child_pid = map(int, res.stdout.split())
        spans = self.one_trace(4)
        (proc,) = process_spans(spans)
        self.assertEqual(proc['resource']['process.pid'], parent_pid)
        self.assertEqual(attrs(proc)['process.pid'], parent_pid)
        self.assertEqual(proc['parent_span_id'], TRACEPARENT.SPAN_ID)
        # The child's request (flushed by its _exit) stays under the parent's span.
        child = find_span(spans, 'GET /child')
        self.assertEqual(child['resource']['process.pid'], child_pid)
        for s in find_spans(spans, kind=SPAN_KIND_CLIENT):
            self.assertEqual(s['parent_span_id'], proc['span_id'])

    def test_exec_replaces_the_image_and_both_spans_arrive(self):
        script = ('import os,sys,urllib.request\n'
                  'urllib.request.urlopen(sys.argv[1]+"/before-exec").read()\n'
                  'os.execv(sys.argv[2], ["curl", "-s", sys.argv[1] + "/after-exec"])\n')
        res = run_under_shim([PY, '-c', script, self.server.url, CURL], receiver=self.receiver,
                             env_extra=dict(PROCS, TRACEPARENT=PARENT_TP,
                                            OTEL_BSP_SCHEDULE_DELAY='30000'))
        self.assertEqual((res.returncode, res.stdout), (0, b'ok\n'), res.stderr)
        spans = self.one_trace(4)
        py = find_span(spans, 'exec python3', SPAN_KIND_INTERNAL)
        curl = find_span(spans, 'exec curl', SPAN_KIND_INTERNAL)
        self.assertEqual(py['parent_span_id'], TRACEPARENT.SPAN_ID)
        self.assertNotIn('process.exit.code', attrs(py))
        self.assertEqual(curl['parent_span_id'], py['span_id'])
        self.assertEqual(attrs(curl)['process.pid'], attrs(py)['process.pid'])
        self.assertEqual(attrs(curl)['process.exit.code'], 0)
        self.assertEqual(find_span(spans, 'GET /before-exec')['parent_span_id'], py['span_id'])
        self.assertEqual(find_span(spans, 'GET /after-exec')['parent_span_id'], curl['span_id'])
        self.assertLessEqual(py['end_time_unix_nano'], curl['start_time_unix_nano'])

    def test_failed_exec_goes_on_and_still_exports(self):
        script = ('import os,sys,urllib.request\n'
                  'try:\n'
                  '    os.execv("/nonexistent/prog", ["prog"])\n'
                  'except OSError as e:\n'
                  '    print(e.errno)\n'
                  'urllib.request.urlopen(sys.argv[1]+"/after").read()\n'
                  'sys.exit(2)\n')
        res = run_under_shim([PY, '-c', script, self.server.url], receiver=self.receiver,
                             env_extra=dict(PROCS, OTEL_BSP_SCHEDULE_DELAY='30000'))
        self.assertEqual((res.returncode, res.stdout), (2, b'2\n'), res.stderr)
        spans = self.one_trace(2)
        py = find_span(spans, 'exec python3', SPAN_KIND_INTERNAL)
        # Ended by the exec attempt: no exit code; the program went on.
        self.assertNotIn('process.exit.code', attrs(py))
        self.assertEqual(find_span(spans, 'GET /after')['parent_span_id'], py['span_id'])


    def test_after_a_failed_exec_export_runs_as_before(self):
        # The exec flush runs in exit mode: one attempt, and a collector that
        # cannot be reached is given up on for good. A program whose exec
        # failed goes on, so that mode must end with it: here the collector
        # is down during the exec flush and up afterwards, and a span made
        # after the failed exec must reach it while the program still runs.
        probe = socket.socket()
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
        probe.close()
        script = ('import os,sys,urllib.request\n'
                  'try:\n'
                  '    os.execv("/nonexistent/prog", ["prog"])\n'
                  'except OSError:\n'
                  '    print("exec failed", flush=True)\n'
                  'sys.stdin.readline()\n'
                  'urllib.request.urlopen(sys.argv[1]+"/after").read()\n'
                  'sys.stdin.read()\n')
        env = shim_env(dict(PROCS, OTEL_BSP_SCHEDULE_DELAY='50',
                            OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % port))
        proc = subprocess.Popen([PY, '-c', script, self.server.url], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            self.assertEqual(proc.stdout.readline(), b'exec failed\n')
            with OtlpReceiver(port=port) as late:
                proc.stdin.write(b'go\n')
                proc.stdin.flush()
                (s,) = late.wait_for_spans(1, timeout=15)
                self.assertEqual(s['name'], 'GET /after')
                self.assertIsNone(proc.poll())
                _, err = proc.communicate(timeout=15)  # closes stdin: the script ends
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertEqual(proc.returncode, 0, err)

if __name__ == '__main__':
    unittest.main()
