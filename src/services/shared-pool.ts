/**
 * The shared storage pool of a host (`--shared-pool DIR`): a directory that every host of a cluster mounts at the
 * same path (NFS in production; one local directory in tests). The root disk of an instance made with
 * `pool: shared` lies there, under the instance's name (names are unique in a cluster), so that another host can
 * start the same disk: overlays whose base is a copy of their image in the pool (images/NAME/, copied once,
 * atomically), since a host's own image path means nothing on another host.
 *
 *   DIR/images/IMAGE/disk.qcow2      the base, 0644
 *   DIR/instances/NAME/root.qcow2    the instance's root disk (its dir 0711: QEMU's user opens the file by name)
 */
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CorralError } from '../core/errors.js';
import type { ImageRecord } from '../storage/images.js';

export class SharedPool {
  constructor(readonly dir: string) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new CorralError('INVALID_CONFIG', `the shared pool ${dir} is not a directory: mount the shared storage there (the same path on every host), or leave --shared-pool out`, { file: dir });
    }
    for (const d of [dir, join(dir, 'images'), join(dir, 'instances')]) {
      mkdirSync(d, { recursive: true, mode: 0o711 });
      chmodSync(d, d === join(dir, 'images') ? 0o755 : 0o711);
    }
  }

  instanceDir(name: string): string {
    return join(this.dir, 'instances', name);
  }

  diskOf(name: string): string {
    return join(this.instanceDir(name), 'root.qcow2');
  }

  /** The pool's copy of an image's disk, made now if it has none; a copy of another size is another image: refused. */
  async base(image: ImageRecord): Promise<string> {
    const dir = join(this.dir, 'images', image.name);
    const path = join(dir, basename(image.disk));
    const size = statSync(image.disk).size;
    if (existsSync(path)) {
      const have = statSync(path).size;
      if (have !== size) {
        throw new CorralError('INVALID_IMAGE', `the shared pool's copy of image "${image.name}" (${path}, ${have} bytes) is not this host's image (${size} bytes): give the image another name, or remove the pool's copy once no instance uses it`, { name: image.name });
      }
      return path;
    }
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    const tmp = `${path}.tmp${process.pid}`;
    try {
      await copyFile(image.disk, tmp);
      chmodSync(tmp, 0o644);
      renameSync(tmp, path);
    } finally {
      rmSync(tmp, { force: true });
    }
    return path;
  }

  /** Make an instance's dir for its root disk (0711: QEMU's user opens the disk by name, and cannot list the dir). */
  makeInstanceDir(name: string): string {
    const dir = this.instanceDir(name);
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    chmodSync(dir, 0o711);
    return dir;
  }

  /** Remove an instance's root disk (its delete, or a create that failed before anything used it). */
  remove(name: string): void {
    rmSync(this.instanceDir(name), { recursive: true, force: true });
  }
}
