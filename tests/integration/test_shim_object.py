"""Properties of the preloaded object itself: what it exports, what it pulls in
at load time, how it uses TLS, and that every header stands alone."""

import glob
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import repo_root, shim_path, build_dir, run_under_shim  # noqa: E402

# Libraries a preloaded object may depend on at load time: libc level only.
ALLOWED_NEEDED = {'libc.so.6', 'ld-linux-x86-64.so.2', 'libpthread.so.0', 'libdl.so.2'}


def exported_from_map(path):
    text = open(path).read()
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    glob_part = text.split('global:', 1)[1].split('local:', 1)[0]
    return sorted(s.strip() for s in glob_part.split(';') if s.strip())


class ShimObjectTest(unittest.TestCase):
    def test_exports_exactly_the_map(self):
        out = subprocess.run(['nm', '-D', '--defined-only', shim_path()], capture_output=True,
                             text=True, check=True).stdout
        syms = sorted(l.split()[-1] for l in out.splitlines() if l.strip())
        syms = [s for s in syms if not s.startswith(('_init', '_fini', '_edata', '_end', '__bss_start'))]
        self.assertEqual(syms, exported_from_map(os.path.join(repo_root(), 'hooks', 'otelshim.map')))

    def test_needed_is_libc_level_only(self):
        out = subprocess.run(['readelf', '-d', shim_path()], capture_output=True, text=True,
                             check=True).stdout
        needed = set(re.findall(r'\(NEEDED\).*\[(.+?)\]', out))
        self.assertTrue(needed)
        self.assertLessEqual(needed, ALLOWED_NEEDED, 'heavy libraries linked at load time: %s' % needed)

    def test_otlp_module_carries_the_heavy_libraries(self):
        mod = os.path.join(build_dir(), 'libotelshim-otlp.so')
        out = subprocess.run(['readelf', '-d', mod], capture_output=True, text=True, check=True).stdout
        # libcurl is dlopen()ed on the first https:// export only (src/export/otlp_http.c).
        self.assertNotIn('libcurl', out)
        self.assertIn('libprotobuf-c', out)
        dyn = subprocess.run(['nm', '-D', '--defined-only', mod], capture_output=True, text=True,
                             check=True).stdout
        self.assertEqual([l.split()[-1] for l in dyn.splitlines() if ' osh_' in l], ['osh_otlp_module_v1'])

    def test_no_dynamic_tls(self):
        # initial-exec TLS only: no __tls_get_addr, which can allocate (and is not
        # async-signal-safe) on a thread's first access.
        out = subprocess.run(['nm', '-D', '--undefined-only', shim_path()], capture_output=True,
                             text=True, check=True).stdout
        self.assertNotIn('__tls_get_addr', out)

    def test_heavy_libraries_not_loaded_by_an_idle_process(self):
        res = run_under_shim(['cat', '/proc/self/maps'], check=True)
        maps = res.stdout.decode()
        self.assertIn('libotelshim.so', maps)
        for lib in ('libcurl', 'libprotobuf-c', 'libotelshim-otlp', 'libz.so', 'libssl'):
            self.assertNotIn(lib, maps)

    def test_every_header_compiles_alone(self):
        headers = sorted(glob.glob(os.path.join(repo_root(), 'src', '**', '*.h'), recursive=True))
        self.assertTrue(headers)
        with tempfile.TemporaryDirectory() as tmp:
            for h in headers:
                c = os.path.join(tmp, 'one.c')
                with open(c, 'w') as f:
                    f.write('#include "%s"\n' % h)
                res = subprocess.run(['cc', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-fsyntax-only',
                                      '-I', os.path.join(repo_root(), 'src'), '-I', build_dir(), c],
                                     capture_output=True, text=True)
                self.assertEqual(res.returncode, 0, '%s does not compile alone:\n%s' % (h, res.stderr))


if __name__ == '__main__':
    unittest.main()
