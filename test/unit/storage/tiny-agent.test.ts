import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { findQemuGa, parseLdd } from '../../../src/storage/tiny-agent.js';

const LDD = `	linux-vdso.so.1 (0x00007ffd6a5f2000)
	libudev.so.1 => /lib/x86_64-linux-gnu/libudev.so.1 (0x00007f6d4d424000)
	libglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x00007f6d4d2d8000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f6d4d00e000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f6d4d55d000)
	libpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x00007f6d4cf74000)
`;

test('ldd: each library at the path it resolved to, and the dynamic loader; the vDSO has no file', () => {
  assert.deepEqual(parseLdd(LDD), [
    '/lib/x86_64-linux-gnu/libudev.so.1', '/lib/x86_64-linux-gnu/libglib-2.0.so.0', '/lib/x86_64-linux-gnu/libc.so.6',
    '/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/libpcre2-8.so.0',
  ]);
});

test('ldd: a library the host lacks, or no library at all, fails the build rather than shipping an agent that cannot start', () => {
  assert.throws(() => parseLdd(`${LDD}\tlibnuma.so.1 => not found\n`), (e) => e instanceof CorralError && /libnuma\.so\.1 => not found/.test(e.message));
  assert.throws(() => parseLdd('\tnot a dynamic executable\n'), (e) => e instanceof CorralError && /ldd named no library/.test(e.message));
});

test('no qemu-ga on the host: MISSING_TOOL naming the Debian package', () => {
  assert.throws(() => findQemuGa({ CORRAL_QEMU_GA: '/nonexistent/qemu-ga' }), (e) => e instanceof CorralError && e.code === 'MISSING_TOOL' && e.details.package === 'qemu-guest-agent');
});
