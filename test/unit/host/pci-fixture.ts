/** Copies a fake sysfs tree from test/fixtures/pci/<name> into a temp dir (so tests may write) and simulates the kernel. */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { FIXTURES } from '../fixtures.js';
import { realFs, type FsOps } from '../../../src/host/vfio.js';
import assert from 'node:assert/strict';
import type { CorralError } from '../../../src/core/errors.js';

export interface FakeHost {
  root: string;
  sys: string;
  dev: string;
}

/** The copies made by this test process: removed when it exits, so runs leave no fake sysfs trees in /tmp. */
const copies: string[] = [];
process.once('exit', () => {
  for (const root of copies) rmSync(root, { recursive: true, force: true });
});

/** A writable copy of test/fixtures/pci/<name>: <root>/sys and <root>/dev, symlinks made from its `links` file. */
export function copyPciFixture(name = 'host1'): FakeHost {
  const root = mkdtempSync(join(tmpdir(), 'corral-pci-'));
  copies.push(root);
  const src = join(FIXTURES, 'pci', name);
  cpSync(src, root, { recursive: true });
  for (const line of readFileSync(join(src, 'links'), 'utf8').split('\n')) {
    const [path, target] = line.trim().split(/\s+/);
    if (!path || !target) continue;
    mkdirSync(dirname(join(root, path)), { recursive: true });
    symlinkSync(target, join(root, path));
  }
  return { root, sys: join(root, 'sys'), dev: join(root, 'dev') };
}

const linkTo = (sys: string, addr: string, driver: string): void => {
  symlinkSync(`../../../bus/pci/drivers/${driver}`, join(sys, 'bus/pci/devices', addr, 'driver'));
};
const readLink = (p: string): string | null => {
  try {
    return basename(readlinkSync(p));
  } catch {
    return null;
  }
};

export interface FakeKernel extends FsOps {
  /** Every write, as [path relative to sys, value]. */
  writes: Array<[string, string]>;
}

/**
 * FsOps that behave like the kernel on the fake tree: unbind removes the driver link, bind and drivers_probe make
 * it (the probe honours driver_override, else the device's original driver), vfio-pci creates <dev>/vfio/<group>,
 * sriov_numvfs creates/destroys VFs, each in its own IOMMU group (EBUSY on non-zero -> non-zero). `fail(path, value)` returning true makes
 * that write throw EBUSY.
 */
export function fakeKernel(host: FakeHost, fail: (rel: string, value: string) => boolean = () => false): FakeKernel {
  const { sys, dev } = host;
  const devices = join(sys, 'bus/pci/devices');
  const defaults = new Map<string, string>();
  for (const a of readdirSync(devices)) {
    const d = readLink(join(devices, a, 'driver'));
    if (d) defaults.set(a, d);
  }
  const writes: Array<[string, string]> = [];
  const busy = (): Error => Object.assign(new Error('EBUSY: device or resource busy'), { code: 'EBUSY' });
  return {
    writes,
    readlink: realFs.readlink,
    exists: realFs.exists,
    write(path: string, value: string) {
      const rel = relative(sys, path);
      writes.push([rel, value]);
      if (fail(rel, value)) throw busy();
      const v = value.trim();
      let m: RegExpExecArray | null;
      if ((m = /^bus\/pci\/drivers\/([^/]+)\/unbind$/.exec(rel))) {
        const link = join(devices, v, 'driver');
        if (readLink(link) !== m[1]) throw Object.assign(new Error('ENODEV'), { code: 'ENODEV' });
        unlinkSync(link);
      } else if ((m = /^bus\/pci\/drivers\/([^/]+)\/bind$/.exec(rel))) {
        if (readLink(join(devices, v, 'driver'))) throw busy();
        linkTo(sys, v, m[1]!);
      } else if (rel === 'bus/pci/drivers_probe') {
        if (readLink(join(devices, v, 'driver'))) return;
        const override = readFileSync(join(devices, v, 'driver_override'), 'utf8').trim();
        const drv = override && override !== '(null)' ? override : defaults.get(v);
        if (!drv) return;
        linkTo(sys, v, drv);
        const group = readLink(join(devices, v, 'iommu_group'));
        if (drv === 'vfio-pci' && group) writeFileSync(join(dev, 'vfio', group), '');
      } else if ((m = /^bus\/pci\/devices\/([^/]+)\/sriov_numvfs$/.exec(rel))) {
        const pf = m[1]!;
        const pfDir = join(devices, pf);
        const cur = Number(readFileSync(join(pfDir, 'sriov_numvfs'), 'utf8').trim());
        const n = Number(v);
        if (cur !== 0 && n !== 0) throw busy();
        for (const e of readdirSync(pfDir).filter((x) => /^virtfn\d+$/.test(x))) {
          const vf = readLink(join(pfDir, e))!;
          const group = readLink(join(devices, vf, 'iommu_group'));
          unlinkSync(join(pfDir, e));
          rmSync(join(devices, vf), { recursive: true, force: true });
          if (group) rmSync(join(sys, 'kernel/iommu_groups', group), { recursive: true, force: true });
        }
        const [dom, bus, df] = pf.split(':') as [string, string, string];
        const [d, f] = df.split('.') as [string, string];
        const rid = (parseInt(bus, 16) << 8) | (parseInt(d, 16) << 3) | Number(f);
        const offset = Number(readFileSync(join(pfDir, 'sriov_offset'), 'utf8'));
        const stride = Number(readFileSync(join(pfDir, 'sriov_stride'), 'utf8'));
        const hex = (x: number, w: number): string => x.toString(16).padStart(w, '0');
        for (let i = 0; i < n; i++) {
          const r = rid + offset + i * stride;
          const addr = `${dom}:${hex(r >> 8, 2)}:${hex((r >> 3) & 0x1f, 2)}.${r & 7}`;
          const vd = join(devices, addr);
          mkdirSync(vd, { recursive: true });
          writeFileSync(join(vd, 'vendor'), readFileSync(join(pfDir, 'vendor')));
          writeFileSync(join(vd, 'device'), `0x${readFileSync(join(pfDir, 'sriov_vf_device'), 'utf8').trim()}\n`);
          writeFileSync(join(vd, 'class'), readFileSync(join(pfDir, 'class')));
          writeFileSync(join(vd, 'driver_override'), '(null)\n');
          symlinkSync(`../${addr}`, join(pfDir, `virtfn${i}`));
          symlinkSync(`../${pf}`, join(vd, 'physfn'));
          // With ACS, as on the hosts SR-IOV is used on, each VF is alone in its IOMMU group (numbered here by routing id).
          const group = String(r);
          mkdirSync(join(sys, 'kernel/iommu_groups', group, 'devices'), { recursive: true });
          symlinkSync(`../../../kernel/iommu_groups/${group}`, join(vd, 'iommu_group'));
          symlinkSync(`../../../../bus/pci/devices/${addr}`, join(sys, 'kernel/iommu_groups', group, 'devices', addr));
          linkTo(sys, addr, 'ixgbevf');
          defaults.set(addr, 'ixgbevf');
        }
        writeFileSync(path, `${n}\n`);
      } else {
        if (!existsSync(dirname(path))) throw Object.assign(new Error(`ENOENT: ${rel}`), { code: 'ENOENT' });
        writeFileSync(path, value);
      }
    },
  };
}

/** The coded error a call throws (fails the test when it throws nothing). */
export function thrown(f: () => unknown): CorralError {
  try {
    f();
  } catch (e) {
    return e as CorralError;
  }
  assert.fail('no error');
}
