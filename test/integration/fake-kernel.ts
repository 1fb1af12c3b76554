/**
 * Preloaded into the daemon of the passthrough integration test (NODE_OPTIONS=--import=...): when
 * CORRAL_FAKE_KERNEL_ROOT is set, writes under <root>/sys behave as the kernel's would on that fake tree
 * (test/unit/host/pci-fixture.ts: unbind/bind/drivers_probe move the `driver` symlink, vfio-pci makes
 * <root>/dev/vfio/<group>, sriov_numvfs makes VFs). The daemon itself runs unchanged, with its real FsOps: only
 * node:fs's writeFileSync is wrapped, and only for paths in the fake tree. Without the variable it does nothing.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { fakeKernel } from '../unit/host/pci-fixture.js';

const root = process.env.CORRAL_FAKE_KERNEL_ROOT;
if (root) {
  const sys = join(root, 'sys');
  const kernel = fakeKernel({ root, sys, dev: join(root, 'dev') });
  const real = fs.writeFileSync;
  let inKernel = false; // the fake kernel's own writes go to the real function
  const wrapped = (file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, options?: fs.WriteFileOptions): void => {
    if (!inKernel && typeof file === 'string' && file.startsWith(`${sys}/`)) {
      inKernel = true;
      try {
        kernel.write(file, typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString());
      } finally {
        inKernel = false;
      }
      return;
    }
    real(file, data, options);
  };
  fs.writeFileSync = wrapped;
  syncBuiltinESMExports();
}
