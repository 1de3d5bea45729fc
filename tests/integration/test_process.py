"""Process life under the shim: fork (the child exports its own spans and never
re-sends the parent's), threads, exit status, and a preloaded library whose
constructor makes a request before the shim's own constructor may have run."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    OtlpReceiver, RecordingHttpServer, run_under_shim, shim_path, attrs, find_span,
    strip_injected)

PY = '/usr/bin/python3'


class ForkTest(unittest.TestCase):
    def setUp(self):
        self.receiver = OtlpReceiver().start()
        self.server = RecordingHttpServer().start()

    def tearDown(self):
        self.server.stop()
        self.receiver.stop()

    def test_child_exports_own_spans_never_the_parents(self):
        # The parent's span is still queued when it forks (long schedule delay);
        # the child must not send it, and each process sends its own.
        script = (
            'import os,sys,urllib.request\n'
            'u=sys.argv[1]\n'
            'urllib.request.urlopen(u+"/parent-before").read()\n'
            'pid=os.fork()\n'
            'if pid==0:\n'
            '    urllib.request.urlopen(u+"/child").read()\n'
            '    sys.exit(0)\n'
            'os.waitpid(pid,0)\n'
            'urllib.request.urlopen(u+"/parent-after").read()\n'
            'print(os.getpid(), pid)\n')
        res = run_under_shim([PY, '-c', script, self.server.url], receiver=self.receiver, check=True,
                             env_extra={'OTEL_BSP_SCHEDULE_DELAY': '30000'})
        parent_pid, child_pid = map(int, res.stdout.split())
        spans = self.receiver.spans()  # both processes have exited and flushed
        self.assertEqual(sorted(s['name'] for s in spans),
                         ['GET /child', 'GET /parent-after', 'GET /parent-before'])
        self.assertEqual(len({s['span_id'] for s in spans}), 3)
        by_name = {s['name']: s for s in spans}
        self.assertEqual(by_name['GET /parent-before']['resource']['process.pid'], parent_pid)
        self.assertEqual(by_name['GET /parent-after']['resource']['process.pid'], parent_pid)
        self.assertEqual(by_name['GET /child']['resource']['process.pid'], child_pid)
        self.assertNotEqual(by_name['GET /child']['resource']['service.instance.id'],
                            by_name['GET /parent-after']['resource']['service.instance.id'])

    def test_threads(self):
        script = (
            'import sys,threading,urllib.request\n'
            'u=sys.argv[1]\n'
            'def work(i):\n'
            '    for j in range(5): urllib.request.urlopen(u+"/t/%d/%d"%(i,j)).read()\n'
            'ts=[threading.Thread(target=work,args=(i,)) for i in range(8)]\n'
            '[t.start() for t in ts]; [t.join() for t in ts]\n')
        run_under_shim([PY, '-c', script, self.server.url], receiver=self.receiver, check=True)
        spans = self.receiver.spans()
        self.assertEqual(len(spans), 40)
        self.assertEqual(len({s['span_id'] for s in spans}), 40)
        self.assertTrue(all(s['name'] == 'GET /t/{id}/{id}' for s in spans))
        for req in self.server.requests():
            self.assertEqual(len(req.headers['traceparent']), 1)

    def test_exit_status_and_outputs_unchanged(self):
        script = ('import sys,urllib.request\n'
                  'urllib.request.urlopen(sys.argv[1]+"/z").read()\n'
                  'print("out"); print("err", file=sys.stderr); sys.exit(3)\n')
        base = run_under_shim([PY, '-c', script, self.server.url], preload=False)
        res = run_under_shim([PY, '-c', script, self.server.url], receiver=self.receiver,
                             env_extra={'OTEL_LOG_LEVEL': None})
        self.assertEqual((res.returncode, res.stdout, res.stderr), (base.returncode, base.stdout, base.stderr))
        self.assertEqual(len(self.receiver.spans()), 1)


class ConstructorTest(unittest.TestCase):
    """Another preloaded library's constructor calls connect/write/read."""

    def run_order(self, libs):
        with OtlpReceiver() as receiver, RecordingHttpServer() as server:
            res = run_under_shim(['true'], receiver=receiver, check=True,
                                 env_extra={'LD_PRELOAD': ':'.join(libs),
                                            'OTELSHIM_CTOR_PORT': str(server.port)})
            self.assertEqual(res.stderr, b'')
            server.wait_for_closed()
            wire = b''.join(server.connections())
            self.assertIn(b'\r\ntraceparent: 00-', wire)
            self.assertTrue(strip_injected(wire).startswith(b'GET /from-constructor HTTP/1.1\r\n'))
            (s,) = receiver.wait_for_spans(1)
            self.assertEqual(s['name'], 'GET /from-constructor')
            self.assertEqual(attrs(s)['http.response.status_code'], 200)

    def test_constructor_before_shim(self):
        self.run_order([shim_path(), os.environ['OTELSHIM_CTOR_LIB']])

    def test_constructor_after_shim(self):
        self.run_order([os.environ['OTELSHIM_CTOR_LIB'], shim_path()])


if __name__ == '__main__':
    unittest.main()


class FdReuseTest(unittest.TestCase):
    """An fd closed behind the shim's back (dup2 over it, fclose of an fdopen'd
    socket, close_range) and reused for a file: the shim must never treat the
    file as the old connection (no header spliced into it)."""

    SCRIPT = r'''
import ctypes, os, socket, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
libc.fdopen.restype = ctypes.c_void_p
libc.fclose.argtypes = [ctypes.c_void_p]
port, how = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while not got.endswith(b"ok\n"):
    got += s.recv(4096)
fd = s.detach()
# The first span started the exporter thread, whose set-up opens files: let
# it finish (module mapped, thread asleep) so it cannot take the fd numbers
# this script frees and reuses below.
import glob, time
deadline = time.monotonic() + 15
def exporter_idle():
    if "libotelshim-otlp" not in open("/proc/self/maps").read():
        return False
    for t in glob.glob("/proc/self/task/*"):
        if open(t + "/comm").read().strip() == "otelshim-exp":
            return open(t + "/stat").read().rsplit(")", 1)[1].split()[0] == "S"
    return False
while not exporter_idle():
    assert time.monotonic() < deadline, "exporter never went idle"
    time.sleep(0.01)
tmp = tempfile.NamedTemporaryFile(delete=False)
tmp.close()
f = os.open(tmp.name, os.O_RDWR)
if how == "dup2":
    os.dup2(f, fd)
elif how == "fclose":
    assert libc.fclose(libc.fdopen(fd, b"r+")) == 0
    assert os.dup2(f, fd) == fd   # untracked now: plain dup2
elif how == "close_range":
    os.closerange(fd, fd + 1)     # close_range(2) under the hood
    assert os.dup2(f, fd) == fd
os.close(f)
req = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
os.write(fd, req)
os.close(fd)
print(open(tmp.name, "rb").read() == req)
os.unlink(tmp.name)
'''

    def check(self, how):
        with OtlpReceiver() as receiver, RecordingHttpServer() as server:
            # The exporter stays idle until exit: its socket would otherwise
            # race the script for the fd number just freed.
            res = run_under_shim([PY, '-c', self.SCRIPT, str(server.port), how], receiver=receiver,
                                 check=True, env_extra={'OTEL_BSP_SCHEDULE_DELAY': '60000'})
            self.assertEqual(res.stdout, b'True\n', res.stderr)
            self.assertEqual([s['name'] for s in receiver.wait_for_spans(1)], ['GET /first'])

    def test_dup2_over_tracked_fd(self):
        self.check('dup2')

    def test_fclose_of_fdopened_socket(self):
        self.check('fclose')

    def test_close_range(self):
        self.check('close_range')
