/**
 * The Debian 12 test image that the Debian integration files share (built once by scripts/build-debian-image.sh with
 * debootstrap): $CORRAL_DEBIAN_IMAGE or <repo>/.data/debian12.qcow2. It is used when it exists and was built by the
 * script's current IMAGE_VERSION (OUT.version says which); built (again) first when CORRAL_TEST_DEBIAN=1 (as root,
 * with the Debian mirror reachable); otherwise the files that need it are skipped.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './harness.js';

export const DEBIAN_IMAGE = process.env.CORRAL_DEBIAN_IMAGE ?? join(REPO, '.data/debian12.qcow2');
const SCRIPT = join(REPO, 'scripts/build-debian-image.sh');

/** The image version the build script makes now. */
function scriptVersion(): string {
  return /^IMAGE_VERSION=(\d+)/m.exec(readFileSync(SCRIPT, 'utf8'))?.[1] ?? '?';
}

/** An image that is there and current (one named by $CORRAL_DEBIAN_IMAGE is taken as it is). */
function current(): boolean {
  if (!existsSync(DEBIAN_IMAGE)) return false;
  if (process.env.CORRAL_DEBIAN_IMAGE) return true;
  const v = join(`${DEBIAN_IMAGE}.version`);
  return existsSync(v) && readFileSync(v, 'utf8').trim() === scriptVersion();
}

const BUILD = !current() && process.env.CORRAL_TEST_DEBIAN === '1';

/** Why the Debian tests cannot run here, or false. */
export function debianSkip(): string | false {
  if (current()) return false;
  if (!BUILD) {
    return `no current Debian image at ${DEBIAN_IMAGE} (version ${scriptVersion()}): set CORRAL_TEST_DEBIAN=1 to build a Debian 12 image ` +
      'with debootstrap (needs root and the Debian mirror, about 2-3 minutes, ~600 MB)';
  }
  if (process.getuid?.() !== 0) return 'building the Debian image needs root (loop devices, mount, chroot)';
  return false;
}

let building: Promise<void> | null = null;

/** Build the image when it is missing or of an older version (its progress to stderr); reject with the end of its output. */
export function ensureDebianImage(): Promise<void> {
  if (!BUILD || current()) return Promise.resolve();
  building ??= new Promise((resolve, reject) => {
    rmSync(DEBIAN_IMAGE, { force: true }); // an older version: the script keeps an image that is there
    const p = spawn('bash', [SCRIPT, DEBIAN_IMAGE], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (b: Buffer): void => {
      out += b.toString();
      process.stderr.write(b);
    };
    p.stdout.on('data', take);
    p.stderr.on('data', take);
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${SCRIPT} exited ${code}:\n${out.slice(-3000)}`))));
  });
  return building;
}
