/**
 * vhost-user back ends as an admin registers them (`corral vhost-user add|list|remove`). A vhost-user-net NIC
 * names one of these, never a path: the process behind the socket reads and writes the guest's memory. The
 * socket need not exist when it is registered (the DPDK/OVS back end may start later); a NIC attach and every
 * start check that something listens there. A back end a NIC names cannot be removed (DEVICE_IN_USE).
 */
import { statSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { validateName } from '../core/names.js';
import { validateBackend, type VhostUserBackend, type VhostUserRequest } from '../core/vhost-user.js';
import type { VhostUserStore } from '../network/vhost-user-store.js';
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';

export interface VhostUserDeps {
  store: VhostUserStore;
  dataDir: string;
  events: Pick<EventBus, 'publish'>;
  now?: () => Date;
}

/** Where a back end is used: "instance/nic" for each NIC that names it. */
export type BackendUsers = (backend: VhostUserBackend) => string[];

/** A back end as the API shows it: whether something listens now, and the NICs on it. */
export interface VhostUserView extends VhostUserBackend {
  listening: boolean;
  usedBy: string[];
}

/** Is there a unix socket at `path` (a back end listening)? */
export function listensAt(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

export class VhostUserService {
  private lock = new KeyedLock();
  private users: BackendUsers = () => [];

  constructor(private d: VhostUserDeps) {}

  /** The NIC service, built later, says which NICs use a back end. */
  setUsers(fn: BackendUsers): void {
    this.users = fn;
  }

  list(): VhostUserBackend[] {
    return this.d.store.list();
  }

  view(b: VhostUserBackend): VhostUserView {
    return { ...b, listening: listensAt(b.socket), usedBy: this.users(b) };
  }

  /** The back end registered as `name`; NOT_FOUND otherwise (field names the request field that asked). */
  get(name: string, field = 'name'): VhostUserBackend {
    validateName(field, name);
    const b = this.d.store.find(name);
    if (!b) {
      throw new CorralError('NOT_FOUND', `${field}: no vhost-user back end "${name}" is registered (corral vhost-user list; an admin adds one with corral vhost-user add NAME SOCKET)`, { field, name });
    }
    return b;
  }

  add(req: VhostUserRequest): Promise<VhostUserBackend> {
    return this.lock.run('registry', async () => {
      const b = validateBackend(req, this.d.dataDir, (this.d.now?.() ?? new Date()).toISOString());
      const all = this.d.store.list();
      if (all.some((o) => o.name === b.name)) throw new CorralError('ALREADY_EXISTS', `vhost-user back end "${b.name}" is already registered`, { field: 'name', name: b.name });
      const same = all.find((o) => o.socket === b.socket);
      if (same) throw new CorralError('ALREADY_EXISTS', `socket ${b.socket} is already registered as vhost-user back end "${same.name}"`, { field: 'socket', name: same.name });
      this.d.store.write([...all, b]);
      this.d.events.publish('vhost-user.added', null, { name: b.name, socket: b.socket });
      return b;
    });
  }

  remove(name: string): Promise<void> {
    return this.lock.run('registry', async () => {
      const b = this.get(name);
      const users = this.users(b);
      if (users.length > 0) {
        throw new CorralError('DEVICE_IN_USE', `vhost-user back end "${name}" is used by NICs ${users.join(', ')}: detach them first`, { name, nics: users });
      }
      this.d.store.write(this.d.store.list().filter((o) => o.name !== name));
      this.d.events.publish('vhost-user.removed', null, { name, socket: b.socket });
    });
  }
}
