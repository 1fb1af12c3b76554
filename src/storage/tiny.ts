/**
 * The tiny guest image: Debian's generic kernel, a busybox initramfs that loads the virtio (and emulated
 * disk/NIC) drivers and switches to an ext4 root disk labelled corral-root, where busybox init brings up
 * the network, acpid (ACPI power button -> clean poweroff), the guest agent (the host's qemu-ga, tiny-agent.ts)
 * and a root shell on ttyS0 and on tty1 (the screen, for the graphical console). The guest scripts are readable files under assets/tiny/, with the VERSION of what
 * they make (bumped when the guest changes; copied into the image, where `make test-base` compares it). Downloads
 * are cached in $DATA/cache/tiny; the image is assembled in a staging folder and committed with image.json like an
 * import.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { CorralError } from '../core/errors.js';
import { runBuffer } from '../host/exec.js';
import { dataPaths } from '../core/paths.js';
import { convert, imgInfo } from '../qemu/img.js';
import { gzipInitramfs } from './cpio.js';
import { ImageStore, type ImageRecord, type Progress } from './images.js';
import { ensureAptLists, fetchDebs, pruneCache, resolveKernelPackage, tool, unpackDeb } from './tiny-debs.js';
import { builtinModules, moduleName, orderModules, TINY_LATE_MODULES, TINY_MODULES } from './tiny-modules.js';
import { installGuestAgent } from './tiny-agent.js';

export const TINY_NAME = 'tiny';
/**
 * Base kernel command line; the daemon appends corral.hostname=NAME. The kernel's console is the screen (tty0, for
 * an instance with a display: the graphical console) and the serial port, ttyS0 last so that /dev/console, where
 * init and its scripts write, stays the serial console. `quiet` keeps the serial console (slow under TCG) for
 * userspace; `cryptomgr.notests` skips the crypto self-tests (~0.3-0.5 s under TCG).
 */
export const TINY_CMDLINE = 'console=tty0 console=ttyS0 quiet panic=-1 cryptomgr.notests memhp_default_state=online_movable';
export const TINY_DISK_SIZE = 128 * 1024 * 1024;
export const ROOT_LABEL = 'corral-root';

/** assets/tiny of this checkout: the compiled file is dist/src/storage/tiny.js. */
export const TINY_ASSETS = fileURLToPath(new URL('../../../assets/tiny/', import.meta.url));

function asset(name: string): Buffer {
  const p = join(TINY_ASSETS, name);
  if (!existsSync(p)) throw new CorralError('INTERNAL', `guest asset ${p} is missing`);
  return readFileSync(p);
}

function put(root: string, path: string, data: Buffer | string, mode = 0o644): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, data);
  chmodSync(full, mode);
}

function dirs(root: string, paths: string[]): void {
  for (const p of paths) mkdirSync(join(root, p), { recursive: true });
}

/** busybox plus one symlink an applet (from `busybox --list-full`), as `busybox --install -s` would. */
async function installBusybox(root: string, busybox: string): Promise<void> {
  put(root, 'bin/busybox', readFileSync(busybox), 0o755);
  const applets = (await tool(busybox, ['--list-full'])).split('\n').map((l) => l.trim()).filter((l) => l.includes('/'));
  for (const a of applets) {
    if (a === 'bin/busybox') continue;
    mkdirSync(join(root, dirname(a)), { recursive: true });
    if (!existsSync(join(root, a))) symlinkSync('/bin/busybox', join(root, a));
  }
}

/** A module file's bytes, decompressed when the package ships .ko.xz / .ko.zst / .ko.gz. */
async function moduleBytes(path: string): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.gz')) return gunzipSync(readFileSync(path));
  const cmd = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : null;
  if (!cmd) throw new CorralError('INTERNAL', `unknown module compression: ${path}`);
  return (await runBuffer(cmd, ['-dc', path], { maxBuffer: 256 * 1024 * 1024, timeoutMs: 60_000 })).stdout;
}

export interface KernelTree {
  kver: string;
  vmlinuz: string;
  /** absolute path of lib/modules/<kver> */
  moduleDir: string;
  config: string;
}

function kernelTree(unpacked: string): KernelTree {
  const base = ['lib/modules', 'usr/lib/modules'].map((p) => join(unpacked, p)).find((p) => existsSync(p));
  const kver = base ? readdirSync(base).find((v) => existsSync(join(unpacked, 'boot', `vmlinuz-${v}`))) : undefined;
  if (!base || !kver) throw new CorralError('INTERNAL', `no kernel found in ${unpacked}`);
  return { kver, vmlinuz: join(unpacked, 'boot', `vmlinuz-${kver}`), moduleDir: join(base, kver), config: join(unpacked, 'boot', `config-${kver}`) };
}

export interface ModulePlan {
  /** loaded by the initramfs, in this order (paths relative to lib/modules/<kver>) */
  early: string[];
  /** IDE/SATA/CD-ROM drivers: loaded when root is not on virtio, and in the background after boot */
  late: string[];
  builtin: string[];
  missing: string[];
}

/** Resolve the modules to load; busybox depmod makes modules.dep when the package ships none (Debian's doesn't). */
async function pickModules(k: KernelTree, unpacked: string, busybox: string): Promise<ModulePlan> {
  const depFile = join(k.moduleDir, 'modules.dep');
  const done = join(k.moduleDir, '.corral-depmod-done'); // an interrupted depmod is run again
  if (!existsSync(done)) {
    await tool(busybox, ['depmod', '-b', unpacked, k.kver]);
    writeFileSync(done, '');
  }
  const depText = readFileSync(depFile, 'utf8');
  const early = orderModules(depText, TINY_MODULES);
  const late = orderModules(depText, TINY_LATE_MODULES);
  const builtinFile = join(k.moduleDir, 'modules.builtin');
  const builtin = existsSync(builtinFile) ? builtinModules(readFileSync(builtinFile, 'utf8')) : new Set<string>();
  const missing = [...early.missing, ...late.missing];
  return {
    early: early.order,
    late: late.order.filter((m) => !early.order.includes(m)),
    builtin: missing.filter((m) => builtin.has(moduleName(m))),
    missing: missing.filter((m) => !builtin.has(moduleName(m))),
  };
}

/** Copy the ordered modules into root/lib/modules/<kver>/, uncompressed; returns their guest paths in order. */
async function copyModules(root: string, k: KernelTree, order: string[]): Promise<string[]> {
  const guest: string[] = [];
  for (const rel of order) {
    const plain = rel.replace(/\.ko\.(xz|zst|gz)$/, '.ko');
    put(root, `lib/modules/${k.kver}/${plain}`, await moduleBytes(join(k.moduleDir, rel)));
    guest.push(`/lib/modules/${k.kver}/${plain}`);
  }
  return guest;
}

/** Modules plus the two ordered lists the guest scripts read: lib/modules/corral.order and corral.late. */
async function installModules(root: string, k: KernelTree, plan: ModulePlan): Promise<void> {
  put(root, 'lib/modules/corral.order', `${(await copyModules(root, k, plan.early)).join('\n')}\n`);
  put(root, 'lib/modules/corral.late', `${(await copyModules(root, k, plan.late)).join('\n')}\n`);
}

async function buildInitramfs(work: string, k: KernelTree, busybox: string, plan: ModulePlan): Promise<Buffer> {
  const root = join(work, 'initramfs');
  dirs(root, ['dev', 'proc', 'sys', 'newroot', 'etc', 'tmp']);
  await installBusybox(root, busybox);
  await installModules(root, k, plan);
  put(root, 'init', asset('init'), 0o755);
  return gzipInitramfs(root, [{ type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 }]);
}

async function buildRootfs(work: string, k: KernelTree, busybox: string, plan: ModulePlan): Promise<{ raw: string; agent: string }> {
  const root = join(work, 'rootfs');
  dirs(root, ['dev', 'proc', 'sys', 'tmp', 'run', 'root', 'mnt', 'var/log', 'etc/acpi/PWRF', 'usr/share/udhcpc']);
  chmodSync(join(root, 'tmp'), 0o1777);
  chmodSync(join(root, 'root'), 0o700);
  await installBusybox(root, busybox);
  await installModules(root, k, plan);
  for (const f of ['modules.builtin', 'modules.order']) if (existsSync(join(k.moduleDir, f))) copyFileSync(join(k.moduleDir, f), join(root, 'lib/modules', k.kver, f));
  await tool(busybox, ['depmod', '-b', root, k.kver]); // modules.dep for busybox modprobe in the guest
  put(root, 'etc/inittab', asset('inittab'));
  put(root, 'etc/rc', asset('rc'), 0o755);
  put(root, 'etc/rc.shutdown', asset('rc.shutdown'), 0o755);
  put(root, 'etc/udhcpc.script', asset('udhcpc.script'), 0o755);
  symlinkSync('/etc/udhcpc.script', join(root, 'usr/share/udhcpc/default.script'));
  put(root, 'etc/acpi/PWRF/00000080', asset('power-button'), 0o755);
  const agent = await installGuestAgent(root);
  put(root, 'sbin/shutdown', asset('shutdown'), 0o755); // what qemu-ga runs for guest-shutdown (busybox has none)
  put(root, 'etc/profile', asset('profile'));
  put(root, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  put(root, 'etc/group', 'root:x:0:\ntty:x:5:\n');
  put(root, 'etc/hostname', 'corral\n');
  put(root, 'etc/fstab', `LABEL=${ROOT_LABEL} / ext4 rw 0 1\n`);
  put(root, 'etc/corral-release', `corral-tiny kernel=${k.kver}\n`);
  // what guest-get-osinfo reports
  put(root, 'etc/os-release', `ID=corral-tiny\nNAME="Corral tiny"\nVERSION_ID=1\nVERSION="1 (busybox, Debian kernel ${k.kver})"\nPRETTY_NAME="Corral tiny 1"\n`);
  const raw = join(work, 'root.ext4');
  await tool('mkfs.ext4', ['-q', '-F', '-b', '4096', '-L', ROOT_LABEL, '-d', root, '-E', 'root_owner=0:0', raw, `${TINY_DISK_SIZE / 1024}k`]);
  return { raw, agent: `${agent.binary} with ${agent.libraries.length} libraries` };
}

/**
 * Build (or return the already built) image `tiny`. Same inputs reuse the cached .debs and unpacked trees;
 * `force` rebuilds the image files and replaces the image.
 */
export async function buildTiny(dataDir: string, progress: Progress, opts: { force?: boolean } = {}): Promise<ImageRecord> {
  const store = new ImageStore(dataDir);
  const existing = store.tryGet(TINY_NAME);
  if (existing && !opts.force) {
    progress({ step: 'done', message: 'the tiny image is already built', percent: 100 });
    return existing;
  }
  const cache = join(dataPaths(dataDir).cache, 'tiny');
  progress({ step: 'resolve', message: 'finding the current kernel package', percent: 0 });
  if (await ensureAptLists()) progress({ step: 'resolve', message: 'apt package lists were empty: ran apt-get update' });
  const kpkg = await resolveKernelPackage();
  progress({ step: 'download', message: `kernel package ${kpkg}`, percent: 5 });
  const debs = await fetchDebs(join(cache, 'debs'), [kpkg, 'busybox-static'], (m) => progress({ step: 'download', message: m }));
  const pruned = pruneCache(cache, [...debs.values()]);
  if (pruned.length > 0) progress({ step: 'download', message: `removed older packages from the cache: ${pruned.join(' ')}` });
  progress({ step: 'unpack', message: 'unpacking the packages', percent: 30 });
  const kdir = await unpackDeb(debs.get(kpkg)!, join(cache, 'unpack'));
  const bbdir = await unpackDeb(debs.get('busybox-static')!, join(cache, 'unpack'));
  const busybox = join(bbdir, 'bin/busybox');
  const k = kernelTree(kdir);

  const mods = await pickModules(k, kdir, busybox);
  progress({
    step: 'modules', percent: 40,
    message: `${mods.early.length} modules loaded at boot, ${mods.late.length} later (IDE/SATA/CD-ROM); built into the kernel: ${mods.builtin.join(' ') || 'none'}; not in this kernel: ${mods.missing.join(' ') || 'none'}`,
  });

  const work = mkdtempSync(join(cache, 'work-'));
  const staging = store.stage(TINY_NAME);
  try {
    progress({ step: 'initramfs', message: 'building the initramfs', percent: 50 });
    writeFileSync(join(staging, 'initrd.img'), await buildInitramfs(work, k, busybox, mods));
    writeFileSync(join(staging, 'VERSION'), asset('VERSION'));
    copyFileSync(k.vmlinuz, join(staging, 'vmlinuz'));
    chmodSync(join(staging, 'vmlinuz'), 0o644);
    progress({ step: 'rootfs', message: `making the ${ROOT_LABEL} ext4 root filesystem`, percent: 70 });
    const { raw, agent } = await buildRootfs(work, k, busybox, mods);
    progress({ step: 'rootfs', message: `guest agent: ${agent}` });
    progress({ step: 'disk', message: 'converting the root disk to qcow2', percent: 85 });
    const disk = join(staging, 'disk.qcow2');
    await convert(raw, 'raw', disk, 'qcow2');
    const info = await imgInfo(disk, 'qcow2');
    const final = store.pathOf(TINY_NAME);
    const record: ImageRecord = {
      name: TINY_NAME, kind: 'kernel', format: 'qcow2', disk: join(final, 'disk.qcow2'),
      kernel: join(final, 'vmlinuz'), initrd: join(final, 'initrd.img'), cmdline: TINY_CMDLINE,
      virtualSize: info['virtual-size'], createdAt: new Date().toISOString(), source: 'tiny',
    };
    store.commit(staging, record, { replace: true });
    progress({ step: 'done', message: `tiny image built (kernel ${k.kver})`, percent: 100 });
    return record;
  } catch (e) {
    store.discard(staging);
    throw e;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
