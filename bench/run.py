#!/usr/bin/python3
"""otelshim benchmarks. Every figure is a ratio or a difference against a
baseline measured in the same run, interleaved, because these machines are
noisy (2 shared cores). Results go to stdout as Markdown rows for
docs/BENCHMARKS.md.

    bench/run.py [startup] [requests] [curve] [encode] [callgrind] [server] [server_pair] [tls]
                 [llm] [server_floor] [server_records] [server_lines] [server_offload]
                 (default: all but the server_* side-by-side runs, which need root for
                 their cgroups, server_lines, which needs valgrind, and server_offload)

Needs a built tree (scripts/setup --bench) and, for `startup`, hyperfine
(used when present; a spawn loop otherwise), and for `server` nginx and wrk.
OSH_BENCH_ROUNDS sets the server rounds (15 by default, ~6 minutes; 12 for server_offload:
a round's ratio moves by ~6 % with the VM's speed, so 7 rounds were good to only ~±3 %),
OSH_BENCH_PAIR_ROUNDS the side-by-side rounds (8 by default, per series).

The server bench runs wrk and the receiver on vCPU 0 (OSH_BENCH_WRK_CPU; empty
leaves them free) and lets nginx and its exporter thread go where the
scheduler puts them, which is then the other vCPU for the worker. The two
vCPUs of these VMs are not alike: nginx serves about a third more on vCPU 1
than on vCPU 0, so a run that leaves all of them free lets the scheduler
choose, run by run, which side gets the faster one. OSH_BENCH_PIN=1 pins
instead nginx, and so the shim's exporter thread, to vCPU 0 and wrk and the
receiver to vCPU 1: every cycle the shim spends, on the worker or on the
exporter, then comes out of nginx's own (slower) core.
"""

import bisect
import collections
import os
import re
import socket
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get('OTELSHIM_BUILD_DIR', os.path.join(ROOT, 'build'))
SHIM = os.path.join(BUILD, 'libotelshim.so')
BENCH = os.path.join(BUILD, 'bench')


# A proxy named by the bench host's environment would carry the shim's exports.
PROXY_NAMES = ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy',
               'ALL_PROXY', 'no_proxy', 'NO_PROXY')


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('OTEL_', 'OTELSHIM_')) and k != 'LD_PRELOAD'
           and k not in PROXY_NAMES}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def child_cpu(argv, env):
    """Run argv; return (user+sys CPU seconds of that child, all its threads, from
    wait4's rusage at microsecond resolution; wall seconds; stdout; stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        o, e = out.read(), err.read()
    if p.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (argv, p.returncode, e.decode(errors='replace')[-2000:]))
    return ru.ru_utime + ru.ru_stime, wall, o, e


# ---------------------------------------------------------------------------------------

def bench_startup():
    """/bin/true with and without the shim preloaded."""
    rows = []
    if shutil.which('hyperfine'):
        with tempfile.TemporaryDirectory() as tmp:
            js = os.path.join(tmp, 'h.json')
            subprocess.run(['hyperfine', '-N', '--warmup', '50', '--runs', '1000', '--export-json', js,
                            '-n', 'baseline', 'env LD_PRELOAD= /bin/true',
                            '-n', 'shim', 'env LD_PRELOAD=%s /bin/true' % SHIM],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=clean_env())
            import json
            res = {r['command']: r for r in json.load(open(js))['results']}
            b, s = res['baseline'], res['shim']
            rows.append(('startup: `/bin/true` mean (hyperfine -N, 1000 runs)',
                         '%.3f ms' % (b['mean'] * 1e3), '%.3f ms' % (s['mean'] * 1e3),
                         '+%.3f ms' % ((s['mean'] - b['mean']) * 1e3)))
            rows.append(('startup: `/bin/true` median',
                         '%.3f ms' % (b['median'] * 1e3), '%.3f ms' % (s['median'] * 1e3),
                         '+%.3f ms' % ((s['median'] - b['median']) * 1e3)))
    # Our own interleaved loop, as a cross-check.
    base, shim = [], []
    for i in range(600):
        for lst, pre in ((base, ''), (shim, SHIM)) if i % 2 == 0 else ((shim, SHIM), (base, '')):
            env = clean_env(LD_PRELOAD=pre)
            t0 = time.perf_counter()
            pid = os.posix_spawn('/bin/true', ['/bin/true'], env)
            os.waitpid(pid, 0)
            lst.append(time.perf_counter() - t0)
    b, s = statistics.median(base), statistics.median(shim)
    rows.append(('startup: `/bin/true` median (posix_spawn loop, 600 interleaved pairs)',
                 '%.3f ms' % (b * 1e3), '%.3f ms' % (s * 1e3), '+%.3f ms' % ((s - b) * 1e3)))
    return rows


def start_sink(pinned=False, loader=False):
    """The receiver, on vCPU 1 when OSH_BENCH_PIN=1 or @pinned; beside wrk when
    @loader (the server bench)."""
    tmp = tempfile.mkdtemp()
    pf = os.path.join(tmp, 'port')
    p = subprocess.Popen([os.path.join(BENCH, 'http_sink'), pf], stdout=subprocess.PIPE,
                         preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if pinned
                         else loader_pin() if loader else pin_to(1))
    for _ in range(200):
        if os.path.exists(pf) and open(pf).read().strip():
            break
        time.sleep(0.01)
    port = int(open(pf).read())
    shutil.rmtree(tmp, ignore_errors=True)  # the port is read; the sink keeps no file open
    return p, port


def stop_sink(p):
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    return dict(kv.split('=') for kv in out.decode().split())


def bench_requests(n=20000, rounds=9):
    """CPU time of a keep-alive client making n requests, with and without the shim
    (always_on, OTLP export to a local sink), interleaved rounds, medians."""
    sink, port = start_sink()
    client = [os.path.join(BENCH, 'keepalive_client'), str(port), str(n)]
    base, shim, shim_unsampled = [], [], []
    dropped = []
    try:
        for r in range(rounds):
            cpu, wall, out, err = child_cpu(client, clean_env())
            base.append(cpu)
            cpu, wall, out, err = child_cpu(client, clean_env(
                LD_PRELOAD=SHIM, OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % port,
                OTEL_TRACES_SAMPLER='always_on', OTEL_LOG_LEVEL='warn'))
            shim.append(cpu)
            m = re.search(rb'(\d+) spans dropped', err)
            dropped.append(int(m.group(1)) if m else 0)
            cpu, wall, out, err = child_cpu(client, clean_env(
                LD_PRELOAD=SHIM, OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % port,
                OTEL_TRACES_SAMPLER='always_off'))
            shim_unsampled.append(cpu)
    finally:
        counts = stop_sink(sink)
    b, s, u = statistics.median(base), statistics.median(shim), statistics.median(shim_unsampled)
    # The baseline drifts between rounds on a shared VM: the median of the
    # per-round differences (each shim run against the baseline run beside
    # it) is steadier than the difference of the medians.
    ds = statistics.median(x - y for x, y in zip(shim, base))
    du = statistics.median(x - y for x, y in zip(shim_unsampled, base))
    return [
        ('client: %d keep-alive requests, CPU per request (medians of %d rounds; difference = median of paired differences)' % (n, rounds),
         '%.2f us' % (b / n * 1e6), '%.2f us' % (s / n * 1e6), '+%.2f us' % (ds / n * 1e6)),
        ('client: same, sampler always_off (inject only, no span)',
         '%.2f us' % (b / n * 1e6), '%.2f us' % (u / n * 1e6), '+%.2f us' % (du / n * 1e6)),
        ('client: spans dropped (queue full) per run, max', '-', '%d' % max(dropped),
         'sink got %s OTLP posts, %s bytes' % (counts.get('otlp_requests'), counts.get('otlp_bytes'))),
    ]


def bench_curve(ns=(1, 512, 5000, 20000), rounds=9):
    """Extra CPU of a process making N keep-alive requests under the shim (always_on,
    OTLP to the local sink) for several N: the fixed cost, the warm-up of the first
    requests, and the marginal cost per request past them."""
    sink, port = start_sink()
    env_shim = clean_env(LD_PRELOAD=SHIM, OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % port)
    extra = {n: [] for n in ns}
    try:
        for r in range(rounds):
            for n in ns:
                client = [os.path.join(BENCH, 'keepalive_client'), str(port), str(n)]
                b = child_cpu(client, clean_env())[0]
                s = child_cpu(client, env_shim)[0]
                extra[n].append(s - b)
    finally:
        stop_sink(sink)
    med = {n: statistics.median(extra[n]) for n in ns}
    rows = [('curve: extra CPU of a process making N requests (median of %d paired rounds)' % rounds,
             '-', ' / '.join('N=%d: %.2f ms' % (n, med[n] * 1e3) for n in ns), '')]
    for a, b in zip(ns, ns[1:]):
        rows.append(('curve: marginal CPU per request from N=%d to N=%d' % (a, b), '-', '-',
                     '%.2f us' % ((med[b] - med[a]) / (b - a) * 1e6)))
    return rows


NGINX_TLS_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        default_type application/json;
        location / {{ return 200 '{{"object":"model","id":"bench"}}'; }}
    }}
}}
"""


def bench_tls(n=10000, rounds=9):
    """CPU time of an HTTPS keep-alive client (OpenSSL, bench/tls_client.c) making n
    requests to nginx over TLS, with and without the shim (always_on, OTLP export to
    the local sink), interleaved rounds, median of paired differences. The server is
    never preloaded: only the client's CPU is measured."""
    if not shutil.which('nginx') or not shutil.which('openssl'):
        raise RuntimeError('tls bench needs nginx and openssl (scripts/setup --bench)')
    client_bin = os.path.join(BENCH, 'tls_client')
    if not os.path.exists(client_bin):
        raise RuntimeError('bench/tls_client was not built (libssl-dev missing?)')
    with tempfile.TemporaryDirectory() as tmp:
        for d in ('body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'):
            os.mkdir(os.path.join(tmp, d))
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=localhost', '-keyout', os.path.join(tmp, 'key.pem'),
                        '-out', os.path.join(tmp, 'cert.pem')],
                       check=True, capture_output=True)
        port = free_port()
        with open(os.path.join(tmp, 'nginx.conf'), 'w') as f:
            f.write(NGINX_TLS_CONF.format(tmp=tmp, port=port))
        ng = subprocess.Popen(['nginx', '-p', tmp, '-c', os.path.join(tmp, 'nginx.conf'),
                               '-e', os.path.join(tmp, 'error.log')], env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sink, sink_port = start_sink()
        client = [client_bin, str(port), str(n)]
        base, shim, shim_unsampled, dropped = [], [], [], []
        try:
            wait_port(port)
            for r in range(rounds):
                base.append(child_cpu(client, clean_env())[0])
                cpu, _, _, err = child_cpu(client, clean_env(
                    LD_PRELOAD=SHIM, OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                    OTEL_TRACES_SAMPLER='always_on', OTEL_LOG_LEVEL='warn'))
                shim.append(cpu)
                m = re.search(rb'(\d+) spans dropped', err)
                dropped.append(int(m.group(1)) if m else 0)
                shim_unsampled.append(child_cpu(client, clean_env(
                    LD_PRELOAD=SHIM, OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                    OTEL_TRACES_SAMPLER='always_off'))[0])
        finally:
            counts = stop_sink(sink)
            stop_nginx(ng)
    b = statistics.median(base)
    s = statistics.median(shim)
    u = statistics.median(shim_unsampled)
    ds = statistics.median(x - y for x, y in zip(shim, base))
    du = statistics.median(x - y for x, y in zip(shim_unsampled, base))
    spans = int(counts.get('otlp_spans', 0))
    return [
        ('https client: %d keep-alive requests (OpenSSL), CPU per request (medians of %d rounds; difference = median of paired differences)' % (n, rounds),
         '%.2f us' % (b / n * 1e6), '%.2f us' % (s / n * 1e6), '+%.2f us' % (ds / n * 1e6)),
        ('https client: same, sampler always_off (inject only, no span)',
         '%.2f us' % (b / n * 1e6), '%.2f us' % (u / n * 1e6), '+%.2f us' % (du / n * 1e6)),
        ('https client: spans the sink received / sampled requests made; dropped per run, max',
         '-', '%d / %d' % (spans, n * rounds), '%d' % max(dropped)),
    ]


def bench_encode():
    out = subprocess.run([os.path.join(BENCH, 'encode_bench'), '3'], capture_output=True, text=True,
                         check=True).stdout
    kv = dict(x.split('=') for x in out.split())
    return [('OTLP encode, 15-attribute client spans, batches of 512, one core', '-',
             '%s spans/s' % f"{float(kv['spans_per_s']):,.0f}",
             '%s ns/span, %s bytes/span' % (kv['ns_per_span'], kv['bytes_per_span']))]


def bench_wake(n=20000, rounds=5):
    """What one wake-up of a thread whose vCPU is idle costs the thread that sends it
    (bench/wake_cost.c), against the same write nobody waits for: the price nginx's
    worker pays each time wrk had run dry in the server bench."""
    remote, none = [], []
    for _ in range(rounds):
        out = subprocess.run([os.path.join(BENCH, 'wake_cost'), str(n), '1', '0'],
                             capture_output=True, text=True, check=True).stdout
        kv = dict(x.split('=') for x in out.split())
        remote.append(float(kv['remote_us']))
        none.append(float(kv['none_us']))
    return [('wake: the waker\'s CPU for one eventfd write that wakes a thread on the other, '
             'idle vCPU, against the same write with no waiter (median of %d runs of %d)'
             % (rounds, n), '%.2f us' % statistics.median(none), '%.2f us' % statistics.median(remote),
             '%+.2f us a wake-up' % (statistics.median(remote) - statistics.median(none)))]


def bench_llm():
    """The LLM tracker's CPU per call on top of the HTTP span (bench/llm_bench.c): each
    round of LLM calls is followed by the plain HTTP engine's walk of the same response
    body (what any response costs the engine); on top = the median of the rounds'
    differences."""
    out = subprocess.run([os.path.join(BENCH, 'llm_bench'), '2000'], capture_output=True,
                         text=True, check=True).stdout
    kv = dict(x.split('=') for x in out.split())
    # Each call's request different from the last: the request memo never answers.
    out = subprocess.run([os.path.join(BENCH, 'llm_bench'), '2000'], capture_output=True,
                         text=True, check=True, env=dict(os.environ, OSH_BENCH_VARY='1')).stdout
    vary = dict(x.split('=') for x in out.split())
    us = lambda k: '%.1f us' % (float(kv[k]) / 1e3)
    return [
        ('LLM call: OpenAI chat, ~300 B request + %s B JSON response, CPU per call on top of the '
         'plain HTTP span (median of 7 rounds)' % kv['json_bytes'], '-', us('json_on_top_ns'),
         'target < 20 us'),
        ('LLM call: same request, %s-event SSE stream (%s B, chunked, 1 KiB reads): CPU per call '
         'on top of the plain HTTP span (the call %s, the engine\'s walk of the same body alone %s)'
         % (kv['stream_events'], kv['stream_bytes'], us('stream_ns_per_call'),
            us('stream_plain_ns')), '-', us('stream_on_top_ns'),
         'target < 20 us; %.0f ns per event' % (float(kv['stream_on_top_ns']) / int(kv['stream_events']))),
        ('LLM call: the JSON and stream calls again, each call\'s request different from the last '
         '(max_tokens 800 / 801: parsed every time, the request memo never answers)', '-',
         'JSON %.1f us, stream %.1f us' % (float(vary['json_on_top_ns']) / 1e3,
                                           float(vary['stream_on_top_ns']) / 1e3),
         'target < 20 us'),
        ('LLM call: an agent\'s request (%s B: 40 messages, 5 tool schemas) + the same JSON response'
         % kv['agent_request_bytes'], '-', us('agent_on_top_ns'), 'target < 20 us'),
        ('LLM call: most heap the tracker held at once (stream or JSON)', '-',
         '%s bytes' % kv['peak_heap_bytes'], 'bound: body limit + 2 x 256 KiB event buffers'),
    ]


def callgrind_ir(argv, env):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'cg.out')
        res = subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out] + argv,
                             env=env, capture_output=True, text=True, timeout=600)
        m = re.search(r'Collected : (\d+)', res.stderr)
        if not m:
            raise RuntimeError(res.stderr[-2000:])
        return int(m.group(1))


def bench_callgrind():
    """Instruction counts (repeatable): the hooks' fast path on untracked fds, by the
    slope between two loop lengths so that load-time costs cancel out."""
    loop = os.path.join(BENCH, 'syscall_loop')
    n1, n2 = 50000, 100000
    ir = {}
    for pre in ('', SHIM):
        for n in (n1, n2):
            ir[(pre, n)] = callgrind_ir([loop, str(n)], clean_env(LD_PRELOAD=pre))
    base = (ir[('', n2)] - ir[('', n1)]) / (2 * (n2 - n1))
    shim = (ir[(SHIM, n2)] - ir[(SHIM, n1)]) / (2 * (n2 - n1))
    load = ir[(SHIM, n1)] - ir[('', n1)] - (shim - base) * 2 * n1
    return [
        ('callgrind: instructions per read/write call on an untracked fd', '%.1f' % base, '%.1f' % shim,
         '+%.1f' % (shim - base)),
        ('callgrind: instructions at load (constructor + relocation), `syscall_loop`', '-', '-',
         '+%d' % load),
    ]


# ---------------------------------------------------------------------------------------
# server: nginx + wrk

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ text/html html; }}
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location / {{ }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def nginx_site(tmp):
    """nginx's configuration for the server benches in @tmp: a free loopback port and
    a small static file (~400 bytes) under tmp/www. The port."""
    port = free_port()
    os.makedirs(os.path.join(tmp, 'www'))
    with open(os.path.join(tmp, 'www', 'index.html'), 'w') as f:
        f.write('<html><body>otelshim bench</body></html>\n' * 10)
    with open(os.path.join(tmp, 'nginx.conf'), 'w') as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port))
    return port


def wait_port(port, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError('nothing listens on port %d' % port)


def parse_wrk(out):
    """requests made, requests/s, p99 latency in ms, from `wrk --latency` output."""
    unit = {'us': 1e-3, 'ms': 1.0, 's': 1e3}
    n = int(re.search(r'(\d+) requests in', out).group(1))
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    m = re.search(r'^\s+99%\s+([\d.]+)(us|ms|s)\s*$', out, re.M)
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)', out)
    if errors:
        raise RuntimeError('wrk saw errors: ' + errors.group(0))
    return n, rps, float(m.group(1)) * unit[m.group(2)]


PIN = os.environ.get('OSH_BENCH_PIN') == '1'


def pin_to(cpu):
    """A preexec_fn that pins the child to @cpu when OSH_BENCH_PIN=1."""
    return (lambda: os.sched_setaffinity(0, {cpu})) if PIN else None


WRK_CPU = os.environ.get('OSH_BENCH_WRK_CPU', '0')


def loader_pin():
    """A preexec_fn for wrk and the receiver in the server bench: vCPU 1 when
    OSH_BENCH_PIN=1, else the vCPU OSH_BENCH_WRK_CPU names (0), so that nginx's
    worker runs on the same vCPU on both sides of a round."""
    if PIN:
        return pin_to(1)
    if WRK_CPU == '':
        return None
    cpu = int(WRK_CPU)
    return lambda: os.sched_setaffinity(0, {cpu})


def placement_text():
    """Where the server bench put its processes, for the report."""
    if PIN:
        return 'pinned: nginx and the exporter on vCPU 0, wrk and the receiver on vCPU 1'
    if WRK_CPU == '':
        return 'nothing pinned'
    return 'wrk and the receiver on vCPU %s, nginx and its exporter free' % WRK_CPU


def nginx_run(tmp, port, env, seconds, wrk_args=('-t1', '-c8')):
    """Start nginx with @env, run wrk against it, stop nginx gracefully (so the shim
    flushes at exit); returns (requests, rps, p99_ms, nginx stderr and error log: nginx
    sends its stderr, and so the shim's messages, to the error log)."""
    open(os.path.join(tmp, 'error.log'), 'w').close()
    with open(os.path.join(tmp, 'nginx.err'), 'w+b') as err:
        p = subprocess.Popen(['nginx', '-p', tmp, '-c', os.path.join(tmp, 'nginx.conf'),
                              '-e', os.path.join(tmp, 'error.log')],
                             env=env, stdout=subprocess.DEVNULL, stderr=err,
                             preexec_fn=pin_to(0))
        try:
            wait_port(port)
            out, wrk_ru = run_with_rusage(['wrk'] + list(wrk_args) + ['-d%ds' % seconds, '--latency',
                                           'http://127.0.0.1:%d/index.html' % port],
                                          seconds + 30, loader_pin())
            cpu = proc_cpu(p.pid)
            worker = thread_cpu(p.pid, p.pid)
            nginx_run.worker_vcpu = last_vcpu(p.pid, p.pid)
        finally:
            stop_nginx(p)
        err.seek(0)
        n, rps, p99 = parse_wrk(out)
        nginx_run.cpu_per_request = cpu / n if n else 0.0
        nginx_run.worker_per_request = sum(worker) / n if n else 0.0
        nginx_run.worker_split = (worker[0] / n, worker[1] / n) if n else (0.0, 0.0)
        # wrk's sleeps: each is a wake-up nginx's worker later sends to an idle vCPU
        # (bench/run.py wake: what one costs the waker here).
        nginx_run.wrk_sleeps = wrk_ru.ru_nvcsw / n if n else 0.0
        with open(os.path.join(tmp, 'error.log'), 'rb') as log:
            text = err.read() + log.read()
        return n, rps, p99, text.decode(errors='replace')


def run_with_rusage(argv, timeout, preexec_fn):
    """Run @argv to its end (killed after @timeout s); its stdout and its own rusage
    (wait4), which subprocess.run does not give. Fails as check=True would."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         preexec_fn=preexec_fn)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, argv, out)
    return out, ru


def stop_nginx(p):
    """Stop nginx gracefully (SIGQUIT: the shim flushes at exit), or kill it after 15 s."""
    p.send_signal(signal.SIGQUIT)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def task_stat(pid, tid):
    """The fields of /proc/<pid>/task/<tid>/stat after the command name (the
    first is the state, field 3 of proc(5))."""
    with open('/proc/%d/task/%d/stat' % (pid, tid)) as f:
        return f.read().rsplit(')', 1)[1].split()


def thread_cpu(pid, tid):
    """(user, system) CPU seconds of one thread (nginx's worker is its main thread with
    master_process off; the exporter is another)."""
    fields = task_stat(pid, tid)
    tick = os.sysconf('SC_CLK_TCK')
    return int(fields[11]) / tick, int(fields[12]) / tick


def last_vcpu(pid, tid):
    """The vCPU a thread last ran on (proc(5)'s field 39, processor)."""
    return int(task_stat(pid, tid)[36])


def proc_cpu(pid):
    """User + system CPU seconds of a running process, all its threads."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def lost_text(runs):
    """Spans lost over (requests wrk counted, spans the sink received) runs. The
    sink also gets the spans of the requests wrk had in flight when it stopped
    (up to one a connection), which wrk does not count."""
    extra = sum(max(0, got - n) for n, got in runs)
    return 'lost: %d%s' % (sum(max(0, n - got) for n, got in runs),
                           ' (and %d more spans than counted requests: those in flight when wrk stopped)'
                           % extra if extra else '')


def bench_server(seconds=10, rounds=int(os.environ.get('OSH_BENCH_ROUNDS', '15'))):
    """nginx serving a small static file on loopback, wrk -t1 -c8, with and without the
    shim (always_on, OTLP export to the local sink), interleaved rounds: throughput ratio,
    p99 latency difference, spans the sink received against requests wrk made."""
    if not shutil.which('nginx') or not shutil.which('wrk'):
        raise RuntimeError('server bench needs nginx and wrk (scripts/setup --bench)')
    base, shim = [], []
    base_cpu, shim_cpu = [], []
    base_worker, shim_worker = [], []
    base_split, shim_split = [], []     # the worker's (user, system) per request
    vcpus = []                          # where the worker ran at the end of each run
    base_sleeps, shim_sleeps = [], []   # wrk's sleeps a request
    with tempfile.TemporaryDirectory() as tmp:
        port = nginx_site(tmp)
        def run_base():
            n, rps, p99, _ = nginx_run(tmp, port, clean_env(), seconds)
            base.append((n, rps, p99))
            vcpus.append(nginx_run.worker_vcpu)
            base_cpu.append(nginx_run.cpu_per_request)
            base_worker.append(nginx_run.worker_per_request)
            base_split.append(nginx_run.worker_split)
            base_sleeps.append(nginx_run.wrk_sleeps)

        def run_shim():
            sink, sink_port = start_sink(loader=True)
            try:
                n, rps, p99, err = nginx_run(tmp, port, clean_env(
                    LD_PRELOAD=SHIM, OTEL_SERVICE_NAME='bench-nginx', OTEL_TRACES_SAMPLER='always_on',
                    OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                    OTEL_LOG_LEVEL='warn'), seconds)
            finally:
                counts = stop_sink(sink)
            shim_cpu.append(nginx_run.cpu_per_request)
            shim_worker.append(nginx_run.worker_per_request)
            shim_split.append(nginx_run.worker_split)
            shim_sleeps.append(nginx_run.wrk_sleeps)
            vcpus.append(nginx_run.worker_vcpu)
            m = re.search(r'(\d+) spans dropped', err)
            shim.append((n, rps, p99, int(counts.get('otlp_spans', 0)), int(m.group(1)) if m else 0))

        # ABBA order: a machine that speeds up or slows down during the run
        # does not favour either side.
        for r in range(rounds):
            for run in ((run_base, run_shim) if r % 2 == 0 else (run_shim, run_base)):
                run()
        # Paced: each of 24 connections waits 1 ms between requests (wrk's delay()
        # hook; about 2.3 ms a cycle here), near 10,000 requests/s: no span may be lost.
        paced = os.path.join(tmp, 'paced.lua')
        with open(paced, 'w') as f:
            f.write('function delay()\n  return 1\nend\n')
        sink, sink_port = start_sink(loader=True)
        try:
            pn, prps, _, perr = nginx_run(tmp, port, clean_env(
                LD_PRELOAD=SHIM, OTEL_SERVICE_NAME='bench-nginx', OTEL_TRACES_SAMPLER='always_on',
                OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                OTEL_LOG_LEVEL='warn'), seconds, ('-t1', '-c24', '-s', paced))
        finally:
            pcounts = stop_sink(sink)
        m = re.search(r'(\d+) spans dropped', perr)
        paced_row = (pn, prps, int(pcounts.get('otlp_spans', 0)), int(m.group(1)) if m else 0)
    b_rps = statistics.median(x[1] for x in base)
    s_rps = statistics.median(x[1] for x in shim)
    ratio = statistics.median(s[1] / b[1] for s, b in zip(shim, base))
    p99d = statistics.median(s[2] - b[2] for s, b in zip(shim, base))
    spans = ', '.join('%d of %d (%d dropped)' % (s[3], s[0], s[4]) for s in shim)
    return [
        ('server: nginx static file, wrk -t1 -c8 -d%ds, requests/s (median of %d interleaved rounds, ABBA%s); ratio = median of paired ratios (each round: %s)'
         % (seconds, rounds, '; %s; runs whose worker ended on vCPU %s' % (
             placement_text(), ', '.join('%d: %d' % (c, vcpus.count(c)) for c in sorted(set(vcpus)))),
            ', '.join('%.3f' % (s[1] / b[1]) for s, b in zip(shim, base))),
         '%.0f' % b_rps, '%.0f' % s_rps, 'ratio %.3f' % ratio),
        ('server: nginx CPU per request (its own threads, the exporter included; 10 ms clock ticks), median of rounds',
         '%.2f us' % (statistics.median(base_cpu) * 1e6), '%.2f us' % (statistics.median(shim_cpu) * 1e6),
         '+%.2f us (median of paired differences); CPU ratio %.3f' % (
             statistics.median(s - b for s, b in zip(shim_cpu, base_cpu)) * 1e6,
             statistics.median(b / s for s, b in zip(shim_cpu, base_cpu)))),
        ('server: the worker thread alone, CPU per request (what the throughput follows when '
         'the other vCPU has room for the exporter)',
         '%.2f us' % (statistics.median(base_worker) * 1e6),
         '%.2f us' % (statistics.median(shim_worker) * 1e6),
         '+%.2f us; ratio %.3f' % (
             statistics.median(s - b for s, b in zip(shim_worker, base_worker)) * 1e6,
             statistics.median(b / s for s, b in zip(shim_worker, base_worker)))),
        ('server: the worker thread\'s busy share (its CPU a request times requests/s; '
         'steadier than the throughput: below the baseline\'s, the worker waited for wrk)',
         '%.3f' % statistics.median(w * b[1] for w, b in zip(base_worker, base)),
         '%.3f' % statistics.median(w * s[1] for w, s in zip(shim_worker, shim)),
         '%+.3f (median of paired differences)' % statistics.median(
             ws * s[1] - wb * b[1] for ws, s, wb, b in zip(shim_worker, shim, base_worker, base))),
        ('server: the worker thread, user and system CPU per request apart (medians; the '
         'user part follows the shim\'s instructions, the system part moves with the VM)',
         '%.2f + %.2f us' % tuple(statistics.median(x[i] for x in base_split) * 1e6 for i in (0, 1)),
         '%.2f + %.2f us' % tuple(statistics.median(x[i] for x in shim_split) * 1e6 for i in (0, 1)),
         'user %+.2f us, system %+.2f us (paired medians)' % tuple(
             statistics.median(s[i] - b[i] for s, b in zip(shim_split, base_split)) * 1e6
             for i in (0, 1))),
        ('server: wrk\'s sleeps a request (its voluntary context switches): each is a wake-up '
         'of an idle vCPU that nginx\'s worker sends and pays for in system time (bench/run.py '
         'wake), so a slower worker, which lets wrk run dry more often, also pays more of them',
         '%.3f' % statistics.median(base_sleeps), '%.3f' % statistics.median(shim_sleeps),
         '%+.3f (median of paired differences)' % statistics.median(
             s - b for s, b in zip(shim_sleeps, base_sleeps))),
        ('server: p99 latency', '%.3f ms' % statistics.median(x[2] for x in base),
         '%.3f ms' % statistics.median(x[2] for x in shim), '%+.3f ms' % p99d),
        ('server: spans the sink received / requests wrk made, per round', '-', spans,
         lost_text([(s[0], s[3]) for s in shim])),
        ('server: paced, wrk -c24 with 1 ms between requests (%.0f requests/s): spans received / requests'
         % paced_row[1], '-', '%d of %d (%d dropped)' % (paced_row[2], paced_row[0], paced_row[3]),
         lost_text([(paced_row[0], paced_row[2])])),
    ]


# ---------------------------------------------------------------------------------------
# server_pair: the same nginx and wrk, two at once, side by side

class CpuGroups:
    """Two cgroups with equal CPU weight and their CPU time, on cgroup v1 (cpu and
    cpuacct hierarchies) or v2 (the cpu controller). Needs root."""

    def __init__(self, names=('osh_pair_a', 'osh_pair_b')):
        self.v1 = os.path.isdir('/sys/fs/cgroup/cpu') and os.path.isdir('/sys/fs/cgroup/cpuacct')
        if self.v1:
            self.dirs = [[os.path.join('/sys/fs/cgroup', h, n) for h in ('cpu', 'cpuacct')]
                         for n in names]
        elif os.path.exists('/sys/fs/cgroup/cgroup.controllers'):
            with open('/sys/fs/cgroup/cgroup.subtree_control', 'w') as f:
                f.write('+cpu')
            self.dirs = [[os.path.join('/sys/fs/cgroup', n)] for n in names]
        else:
            raise RuntimeError('server_pair needs the cpu cgroup controller (run as root)')
        for ds in self.dirs:
            for d in ds:
                os.makedirs(d, exist_ok=True)
            if self.v1:
                with open(os.path.join(ds[0], 'cpu.shares'), 'w') as f:
                    f.write('1024')
            else:
                with open(os.path.join(ds[0], 'cpu.weight'), 'w') as f:
                    f.write('100')

    def enter(self, i):
        """A preexec_fn: the child joins group @i and vCPU 0."""
        def join():
            os.sched_setaffinity(0, {0})
            for d in self.dirs[i]:
                with open(os.path.join(d, 'cgroup.procs'), 'w') as f:
                    f.write(str(os.getpid()))
        return join

    def remove(self):
        """Remove the groups (empty once their nginx have exited)."""
        for ds in self.dirs:
            for d in ds:
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def usage(self, i):
        """CPU seconds group @i has used."""
        if self.v1:
            with open(os.path.join(self.dirs[i][1], 'cpuacct.usage')) as f:
                return int(f.read()) / 1e9
        with open(os.path.join(self.dirs[i][0], 'cpu.stat')) as f:
            return int(re.search(r'usage_usec (\d+)', f.read()).group(1)) / 1e6


def bench_server_pair(seconds=10, rounds=int(os.environ.get('OSH_BENCH_PAIR_ROUNDS', '8'))):
    """The server bench with both sides at once: two nginx on vCPU 0, each in a cgroup
    of equal CPU weight, two wrk -t1 -c8 (and the receiver) on vCPU 1, for the same
    10 s. When both nginx are CPU-bound each gets half of vCPU 0, so the ratio of
    requests served is the inverse ratio of their CPU cost per request (the exporter
    thread, in the shim's group, included), and the VM's changes of speed, which move
    sequential rounds by +-20 %, hit both sides alike. Four pairs: nginx against
    itself (the method's own spread), against nginx with an idle thread preloaded
    (what any exporter thread costs by existing), with the shim parsing but recording
    nothing (OTEL_TRACES_EXPORTER=none), and with the shim exporting (always_on).
    Sides alternate between the two groups and ports from round to round."""
    if not shutil.which('nginx') or not shutil.which('wrk'):
        raise RuntimeError('server bench needs nginx and wrk (scripts/setup --bench)')
    groups = CpuGroups()
    idle = os.path.join(BENCH, 'idle_thread_preload.so')
    sink_p, sink_port = start_sink(pinned=True)
    shim_env = dict(LD_PRELOAD=SHIM, OTEL_SERVICE_NAME='bench-nginx', OTEL_TRACES_SAMPLER='always_on',
                    OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port, OTEL_LOG_LEVEL='warn')
    pairs = [('itself', clean_env()),
             ('an idle thread preloaded', clean_env(LD_PRELOAD=idle)),
             ('the shim parsing, recording nothing (OTEL_TRACES_EXPORTER=none)',
              clean_env(LD_PRELOAD=SHIM, OTEL_TRACES_EXPORTER='none')),
             ('the shim, always_on, exporting', clean_env(**shim_env))]
    rows = []
    try:
        for label, env in pairs:
            cost, served = pair_series(groups, env, seconds, rounds)
            rows.append(('server_pair: nginx against %s, both at once on vCPU 0 in equal cgroups, '
                         'wrk -t1 %s -d%ds each; %d rounds, cost ratio per round: %s'
                         % (label, pair_load_text(), seconds, rounds, ', '.join('%.3f' % c for c in cost)),
                         '-', '-', 'cost ratio %.3f (requests ratio %.3f), medians'
                         % (statistics.median(cost), statistics.median(served))))
    finally:
        counts = stop_sink(sink_p)
        groups.remove()
    rows.append(('server_pair: spans the sink received (the exporting pair)', '-',
                 counts.get('otlp_spans', '0'), '-'))
    return rows


def side_row(bench, against, cost):
    """A report row for one side-by-side series of cost ratios."""
    return ('%s: nginx against %s, side by side as in server_pair, wrk -t1 %s; %d rounds: %s'
            % (bench, against, pair_load_text(), len(cost), ', '.join('%.3f' % c for c in cost)),
            '-', '-', 'cost ratio %.3f (mean %.3f)' % (statistics.median(cost), statistics.mean(cost)))


def bench_server_floor(seconds=10, rounds=int(os.environ.get('OSH_BENCH_PAIR_ROUNDS', '8'))):
    """What kinds of work cost nginx on this machine, side by side as in server_pair:
    nginx against nginx with bench/floor_preload.so doing one fixed, made-up piece of
    work after each of its recv, writev and sendfile64 calls (OSH_FLOOR: pass through;
    copy the bytes and read the clock, the least any tracer does; 64 data lines; 64
    code lines; 64 branches). It prices the shim's work per request in the terms that
    matter here (lines and branches touched after a system call), and it bounds what
    any design that tracks requests in process can reach."""
    if not shutil.which('nginx') or not shutil.which('wrk'):
        raise RuntimeError('server bench needs nginx and wrk (scripts/setup --bench)')
    floor = os.path.join(BENCH, 'floor_preload.so')
    groups = CpuGroups()
    rows = []
    try:
        for mode in ('forward', 'log', 'log-noclock', 'log-nothread', 'data64', 'code64',
                     'branch64'):
            cost, _ = pair_series(groups, clean_env(LD_PRELOAD=floor, OSH_FLOOR=mode), seconds,
                                  rounds)
            rows.append(side_row('server_floor', 'nginx with OSH_FLOOR=' + mode, cost))
    finally:
        groups.remove()
    return rows


def build_patched(tmp, patch):
    """This tree's sources (git archive HEAD) with bench/@patch applied, built into
    @tmp (the shim and its OTLP module, no tests). The library's path."""
    src = os.path.join(tmp, 'src')
    os.makedirs(src)
    archive = subprocess.run(['git', '-C', ROOT, 'archive', 'HEAD'], capture_output=True,
                             check=True).stdout
    subprocess.run(['tar', '-x', '-C', src], input=archive, check=True)
    with open(os.path.join(ROOT, 'bench', patch), 'rb') as f:
        subprocess.run(['git', 'apply', '-'], stdin=f, cwd=src, check=True)
    build = os.path.join(tmp, 'build')
    subprocess.run(['meson', 'setup', '-Dtests=disabled', build, src], capture_output=True,
                   check=True)
    subprocess.run(['ninja', '-C', build, 'libotelshim.so', 'libotelshim-otlp.so'],
                   capture_output=True, check=True)
    return os.path.join(build, 'libotelshim.so')


def build_record_split(tmp):
    """bench/record_split.patch built (build_patched): a libotelshim.so that can drop
    records on the worker (OSH_BENCH_SELFDROP, OSH_BENCH_SELFDROP_RING) or in the
    exporter thread (OSH_BENCH_DISCARD), switches it reads at load. Its path."""
    return build_patched(tmp, 'record_split.patch')


def bench_server_records(seconds=10, rounds=int(os.environ.get('OSH_BENCH_PAIR_ROUNDS', '8'))):
    """Where the export path's cost lies, side by side as in server_pair (needs root for
    the cgroups, and git, meson and ninja: it builds a patched copy of this tree). nginx
    alone against: the shim parsing without records (OTEL_TRACES_EXPORTER=none); records
    built and dropped on the worker (OSH_BENCH_SELFDROP: the same record every time), or
    dropped 256 records later (OSH_BENCH_SELFDROP_RING=256: many records, no thread);
    records handed to the exporter thread, which drops them (OSH_BENCH_DISCARD); the shim
    exporting. The steps between them price building a record, going through many of
    them, handing them over, and deriving, encoding and posting."""
    if not shutil.which('nginx') or not shutil.which('wrk'):
        raise RuntimeError('server bench needs nginx and wrk (scripts/setup --bench)')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        split = build_record_split(tmp)
        groups = CpuGroups()
        # (label, environment, library, whether spans must reach the receiver): the
        # switches' arms must send none, or the switch did not take (nginx clears its
        # environment before the first request; the patch reads them at load).
        arms = [('the shim parsing, no records (OTEL_TRACES_EXPORTER=none)',
                 dict(OTEL_TRACES_EXPORTER='none'), SHIM, False),
                ('records built and dropped on the worker (OSH_BENCH_SELFDROP)',
                 dict(OSH_BENCH_SELFDROP='1'), split, False),
                ('records built and dropped on the worker 256 records later '
                 '(OSH_BENCH_SELFDROP_RING=256: as many distinct records as the exporter '
                 'keeps in flight)',
                 dict(OSH_BENCH_SELFDROP_RING='256'), split, False),
                ('records handed to the exporter thread, dropped there (OSH_BENCH_DISCARD)',
                 dict(OSH_BENCH_DISCARD='1'), split, False),
                ('the shim exporting', {}, SHIM, True)]
        try:
            for label, extra, lib, sends in arms:
                sink_p, sink_port = start_sink(pinned=True)
                try:
                    env = clean_env(LD_PRELOAD=lib, OTEL_SERVICE_NAME='bench-nginx',
                                    OTEL_TRACES_SAMPLER='always_on', OTEL_LOG_LEVEL='warn',
                                    OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                                    **extra)
                    cost, _ = pair_series(groups, env, seconds, rounds)
                finally:
                    got = int(stop_sink(sink_p).get('otlp_spans', 0))
                if (got > 0) != sends:
                    raise RuntimeError('server_records: %s: the receiver got %d spans' % (label, got))
                rows.append(side_row('server_records', label, cost))
        finally:
            groups.remove()
    return rows


def bench_server_offload(seconds=10, rounds=int(os.environ.get('OSH_BENCH_ROUNDS', '12'))):
    """What deferred observation gives, in the issue's own sequential setting (wrk and
    the receiver on vCPU 0): the program's thread only logs each call on a server
    connection, and the exporter thread parses (docs/ARCHITECTURE.md, "Deferred
    observation"). Rounds rotate nginx alone, the shim parsing on nginx's thread
    (OTELSHIM_SERVER_DEFER=false), and the shim as it is; the report gives each shim
    arm's spans lost (requests the receiver got no span for)."""
    if not shutil.which('nginx') or not shutil.which('wrk'):
        raise RuntimeError('server bench needs nginx and wrk (scripts/setup --bench)')
    arms = [('nginx alone', None), ('the shim, parsing on the worker', 'false'),
            ('the shim, deferred', None)]
    res = {label: [] for label, _ in arms}
    lost = {label: 0 for label, _ in arms}
    with tempfile.TemporaryDirectory() as tmp:
        port = nginx_site(tmp)
        for r in range(rounds):
            order = arms[r % 3:] + arms[:r % 3]
            for label, defer in (order if r % 2 == 0 else order[::-1]):
                if label == 'nginx alone':
                    n, rps, _, _ = nginx_run(tmp, port, clean_env(), seconds)
                else:
                    sink, sink_port = start_sink(loader=True)
                    extra = dict(OTELSHIM_SERVER_DEFER=defer) if defer else {}
                    try:
                        n, rps, _, _ = nginx_run(tmp, port, clean_env(
                            LD_PRELOAD=SHIM, OTEL_SERVICE_NAME='bench-nginx',
                            OTEL_TRACES_SAMPLER='always_on', OTEL_LOG_LEVEL='warn',
                            OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:%d' % sink_port,
                            **extra), seconds)
                    finally:
                        got = int(stop_sink(sink).get('otlp_spans', 0))
                    lost[label] += max(0, n - got)
                res[label].append((rps, nginx_run.wrk_sleeps))
    base = res['nginx alone']
    rows = []
    for label, _ in arms[1:]:
        x = res[label]
        ratios = [a[0] / b[0] for a, b in zip(x, base)]
        rows.append(('server_offload: %s against nginx alone, sequential, %s; %d rounds of %d s: %s'
                     % (label, placement_text(), rounds, seconds,
                        ', '.join('%.3f' % v for v in ratios)),
                     '%.0f' % statistics.median(b[0] for b in base),
                     '%.0f' % statistics.median(a[0] for a in x),
                     'ratio %.3f (mean %.3f); wrk sleeps a request %+.3f; spans lost %d' % (
                         statistics.median(ratios), statistics.mean(ratios),
                         statistics.median(a[1] - b[1] for a, b in zip(x, base)), lost[label])))
    return rows


def bench_server_lines(requests=300, skip=50):
    """The server path's footprint, which is what it pays for on machines where a
    system call leaves the caches cold (server_floor): nginx under valgrind's lackey,
    @requests keep-alive GETs on one connection. The trace is cut at each entry into
    the shim's recv hook; a request's lines are the distinct 64-byte lines of the
    shim's code it ran and of the data that code touched, averaged over the requests
    after the first @skip. Two configurations: parsing and recording nothing
    (OTEL_TRACES_EXPORTER=none: no exporter thread, so every line of shim code run
    is the worker's), and always_on with records built and queued, the exporter
    thread kept asleep through the run (a batch and a schedule longer than it; the
    console fallback turns off the OTLP path's early wakes), so that the lines are
    still the worker's alone: their difference is what building and handing over a
    record costs the worker. Repeatable, unlike timings: a change to the path can
    be judged by it before the side-by-side runs."""
    if not shutil.which('nginx') or not shutil.which('valgrind'):
        raise RuntimeError('server_lines needs nginx and valgrind (scripts/setup --bench)')
    configs = [('OTEL_TRACES_EXPORTER=none', clean_env(LD_PRELOAD=SHIM, OTEL_TRACES_EXPORTER='none')),
               ('always_on, records queued, exporter asleep',
                clean_env(LD_PRELOAD=SHIM, OTEL_TRACES_SAMPLER='always_on',
                          OTEL_EXPORTER_OTLP_ENDPOINT='http://127.0.0.1:9',
                          OTEL_FALLBACK_EXPORTER='console', OTEL_BSP_MAX_QUEUE_SIZE='4096',
                          OTEL_BSP_MAX_EXPORT_BATCH_SIZE='4096', OTEL_BSP_SCHEDULE_DELAY='600000',
                          OTEL_LOG_LEVEL='error'))]
    rows, totals = [], []
    for label, env in configs:
        code_lines, data_lines, by_fn = lackey_run(env, requests, skip)
        totals.append((code_lines, data_lines))
        top = ', '.join('%s %.0f' % kv for kv in by_fn[:6])
        rows.append(('server_lines: nginx under lackey, the shim with %s, %d keep-alive requests '
                     '(the first %d not counted); distinct 64-byte lines a request touched by the '
                     'shim\'s code' % (label, requests, skip),
                     '-', '%.1f code + %.1f data' % (code_lines, data_lines), 'most code lines: ' + top))
    rows.append(('server_lines: what records add on the worker (the second against the first)', '-',
                 '%+.1f code, %+.1f data' % (totals[1][0] - totals[0][0], totals[1][1] - totals[0][1]),
                 '-'))
    return rows


def lackey_run(env, requests, skip):
    """nginx with @env under lackey, @requests keep-alive GETs: lackey_lines() of the
    shim's part of the trace."""
    with tempfile.TemporaryDirectory() as tmp:
        port = nginx_site(tmp)
        log = os.path.join(tmp, 'lackey.log')
        p = subprocess.Popen(['valgrind', '--tool=lackey', '--trace-mem=yes', '--log-file=' + log,
                              'nginx', '-p', tmp, '-c', os.path.join(tmp, 'nginx.conf'),
                              '-e', os.path.join(tmp, 'error.log')],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, deadline_s=120.0)
            with open('/proc/%d/maps' % p.pid) as f:
                text = [l.split() for l in f if 'libotelshim.so' in l and ' r-xp ' in l][0]
            lo, hi = (int(x, 16) for x in text[0].split('-'))
            base = lo - int(text[2], 16)
            keepalive_gets(port, requests)
        finally:
            stop_nginx(p)
        syms = []
        nm = subprocess.run(['nm', '-n', '--defined-only', SHIM], capture_output=True, text=True).stdout
        for line in nm.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in 'tTwW':
                syms.append((int(f[0], 16) + base, f[2]))
        recv_at = [a for a, name in syms if name == 'recv'][0]
        return lackey_lines(log, lo, hi, recv_at, syms, skip)


def keepalive_gets(port, n):
    """@n GETs of /index.html on one keep-alive connection, each response read whole."""
    with socket.create_connection(('127.0.0.1', port), timeout=60) as s:
        req = b'GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
        buf = b''
        for _ in range(n):
            s.sendall(req)
            while True:
                end = buf.find(b'\r\n\r\n')
                if end >= 0:
                    m = re.search(rb'(?i)content-length:\s*(\d+)', buf[:end])
                    total = end + 4 + (int(m.group(1)) if m else 0)
                    if len(buf) >= total:
                        buf = buf[total:]
                        break
                data = s.recv(65536)
                if not data:
                    raise RuntimeError('nginx closed the connection')
                buf += data


def lackey_lines(log, lo, hi, recv_at, syms, skip=0):
    """Lines per request in a lackey trace: code lines in [lo, hi) and the data lines
    their instructions touched, per stretch between two entries at @recv_at; returns
    the averages over the whole stretches after the first @skip and the code lines
    by function."""
    addrs = [a for a, _ in syms]
    per_fn = collections.Counter()
    code, data = set(), set()
    stretches, code_total, data_total = 0, 0, 0
    in_shim = False
    with open(log) as f:
        for line in f:
            if line[0] == 'I':
                a = int(line[3:line.index(',')], 16)
                in_shim = lo <= a < hi
                if not in_shim:
                    continue
                if a == recv_at:
                    if stretches > skip:
                        code_total += len(code)
                        data_total += len(data)
                        for c in code:
                            per_fn[syms[bisect.bisect_right(addrs, c << 6) - 1][1]] += 1
                    stretches += 1
                    code.clear()
                    data.clear()
                code.add(a >> 6)
            elif in_shim and line[0] == ' ' and line[1] in 'LSM':
                a = int(line[3:line.index(',')], 16)
                size = int(line.rstrip().rsplit(',', 1)[1])
                data.add(a >> 6)
                data.add((a + size - 1) >> 6)
    n = max(stretches - 1 - skip, 1)
    return code_total / n, data_total / n, [(k, v / n) for k, v in per_fn.most_common()]


def pair_series(groups, env, seconds, rounds):
    """@rounds side-by-side rounds of nginx alone against nginx with @env, sides
    swapping groups every round: the cost ratios (nginx alone's CPU per request over
    the other's) and the requests ratios (the other's over nginx alone's)."""
    cost, served = [], []
    for r in range(rounds):
        n, cpu = pair_round(groups, [clean_env(), env], seconds, swap=r % 2)
        served.append(n[1] / n[0])
        cost.append((cpu[0] / n[0]) / (cpu[1] / n[1]))
    return cost, served


def pair_load_text():
    """How the side-by-side rounds load nginx, for the report."""
    pace = os.environ.get('OSH_BENCH_PAIR_PACE')
    return 'paced (%s connections, %s ms between requests)' % tuple(pace.split(':')) if pace else '-c8'


def pair_wrk_args(tmp):
    """wrk's load for the side-by-side runs: -c8 as fast as it goes, or, with
    OSH_BENCH_PAIR_PACE=C:MS, C connections each waiting MS ms between requests
    (wrk's delay() hook). Paced near 15,000 requests/s a side (24:1) both nginx stay
    just short of saturating vCPU 0, neither batches more events per epoll_wait than
    the other, and a round's cost ratio spreads about half as much (standard
    deviation 0.011-0.017 against 0.025-0.03 for nginx against itself)."""
    pace = os.environ.get('OSH_BENCH_PAIR_PACE')
    if not pace:
        return ['-c8']
    conns, ms = pace.split(':')
    script = os.path.join(tmp, 'paced.lua')
    with open(script, 'w') as f:
        f.write('function delay()\n  return %d\nend\n' % int(ms))
    return ['-c%d' % int(conns), '-s', script]


def pair_round(groups, envs, seconds, swap):
    """One side-by-side round: nginx i with envs[i] in group i ^ swap; returns the
    requests each served and the CPU seconds each group used meanwhile."""
    tmps, ports, procs = [], [], []
    try:
        for i, env in enumerate(envs):
            tmp = tempfile.mkdtemp()
            port = nginx_site(tmp)
            procs.append(subprocess.Popen(['nginx', '-p', tmp, '-c', os.path.join(tmp, 'nginx.conf'),
                                           '-e', os.path.join(tmp, 'error.log')],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          preexec_fn=groups.enter(i ^ swap)))
            tmps.append(tmp)
            ports.append(port)
        for port in ports:
            wait_port(port)
        before = [groups.usage(i ^ swap) for i in range(2)]
        load = pair_wrk_args(tmps[0])
        wrks = [subprocess.Popen(['wrk', '-t1'] + load + ['-d%ds' % seconds, '--latency',
                                  'http://127.0.0.1:%d/index.html' % port],
                                 stdout=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: os.sched_setaffinity(0, {1}))
                for port in ports]
        outs = [w.communicate(timeout=seconds + 30)[0] for w in wrks]
        cpu = [groups.usage(i ^ swap) - before[i] for i in range(2)]
    finally:
        for p in procs:
            stop_nginx(p)
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    return [parse_wrk(o)[0] for o in outs], cpu


def main():
    which = sys.argv[1:] or ['startup', 'requests', 'curve', 'encode', 'callgrind', 'server', 'tls',
                             'llm']
    print('| measurement | baseline | with otelshim | difference |')
    print('|---|---|---|---|')
    for name in which:
        for row in globals()['bench_' + name]():
            print('| %s | %s | %s | %s |' % row, flush=True)


if __name__ == '__main__':
    main()
