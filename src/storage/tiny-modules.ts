/**
 * Which kernel modules the tiny guest loads, and in what order. Pure: everything comes in as text
 * (modules.dep, modules.builtin), so the ordering is unit-tested without a kernel package.
 */
import { CorralError } from '../core/errors.js';

/**
 * Drivers for the devices Corral gives a guest and the root filesystem. Those the kernel builds in are
 * simply absent from modules.dep; those it lacks altogether (the cloud flavour has no e1000 or ahci) are reported.
 * The initramfs loads TINY_MODULES before it looks for the root filesystem: virtio (disk, SCSI, net,
 * balloon, console, rng), NICs, and evdev + button for the ACPI power button.
 */
export const TINY_MODULES = [
  'virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci',
  'virtio_blk', 'scsi_mod', 'scsi_common', 'virtio_scsi', 'sd_mod',
  'failover', 'net_failover', 'virtio_net', 'virtio_balloon', 'virtio_mem', 'virtio_console', 'virtio_rng',
  'pvpanic', 'pvpanic_pci',
  'mii', 'e1000', 'e1000e', '8139cp', '8139too',
  'evdev', 'button',
  'crc16', 'mbcache', 'jbd2', 'crc32c_generic', 'ext4',
] as const;

/**
 * The emulated IDE/SATA disks and CD-ROMs. Probing the PIIX IDE controller (present on every `pc` machine)
 * costs about 0.3 s under TCG, so the initramfs loads these only when no root filesystem shows up on
 * virtio, and /etc/rc loads them in the background after the guest is ready.
 */
export const TINY_LATE_MODULES = ['libata', 'ata_piix', 'ata_generic', 'libahci', 'ahci', 'cdrom', 'sr_mod'] as const;

/** The module name of a path: basename without .ko[.xz|.zst|.gz], '-' read as '_' (as the kernel does). */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

export interface ModuleDep {
  path: string;
  deps: string[];
}

/** Parse modules.dep ("path: dep-path dep-path ...") into name -> entry. */
export function parseModulesDep(text: string): Map<string, ModuleDep> {
  const map = new Map<string, ModuleDep>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    map.set(moduleName(path), { path, deps });
  }
  return map;
}

/** Names listed in modules.builtin (one path a line). */
export function builtinModules(text: string): Set<string> {
  return new Set(text.split('\n').map((l) => l.trim()).filter(Boolean).map(moduleName));
}

export interface ModuleOrder {
  /** module paths as modules.dep names them, every module after all of its dependencies */
  order: string[];
  /** wanted names that modules.dep does not list (built into the kernel, or not there at all) */
  missing: string[];
}

/**
 * The dependency closure of `wanted`, ordered so that each module comes after everything it depends on
 * (depth-first, post-order; ties keep the order of `wanted`). A dependency cycle cannot be loaded by insmod
 * in any order, so it is an error.
 */
export function orderModules(modulesDep: string, wanted: readonly string[]): ModuleOrder {
  const deps = parseModulesDep(modulesDep);
  const byPath = new Map<string, ModuleDep>();
  for (const d of deps.values()) byPath.set(d.path, d);
  const order: string[] = [];
  const missing: string[] = [];
  const done = new Set<string>();
  const onStack = new Set<string>();

  const visit = (entry: ModuleDep, chain: string[]): void => {
    if (done.has(entry.path)) return;
    if (onStack.has(entry.path)) throw new CorralError('INVALID_IMAGE', `module dependency cycle: ${[...chain, entry.path].map(moduleName).join(' -> ')}`);
    onStack.add(entry.path);
    for (const dp of entry.deps) {
      const dep = byPath.get(dp) ?? deps.get(moduleName(dp));
      if (!dep) throw new CorralError('INVALID_IMAGE', `${entry.path} depends on ${dp}, which modules.dep does not list`);
      visit(dep, [...chain, entry.path]);
    }
    onStack.delete(entry.path);
    done.add(entry.path);
    order.push(entry.path);
  };

  for (const w of wanted) {
    const entry = deps.get(moduleName(w));
    if (entry) visit(entry, []);
    else if (!missing.includes(w)) missing.push(w);
  }
  return { order, missing };
}
