/** Schemas of instance snapshots (/v1/instances/{name}/snapshots). */
import { Type, type Static } from '@sinclair/typebox';

export const InstanceSnapshot = Type.Object({
  name: Type.String(),
  createdAt: Type.String(),
  memory: Type.Boolean({ description: 'the RAM and device state were saved too: a restore resumes the guest where it was' }),
  frozen: Type.Boolean({ description: 'the guest agent froze the guest\'s filesystems for it (filesystem-consistent); false: crash-consistent, or a memory snapshot, or taken stopped' }),
  instanceState: Type.Union([Type.Literal('running'), Type.Literal('paused'), Type.Literal('stopped')], { description: 'what the instance was when it was taken' }),
  vmStateSize: Type.Integer({ description: 'bytes of RAM and device state saved (0 without memory)' }),
  disks: Type.Array(Type.String(), { description: 'the disks it covers: root, then the attached volumes by name' }),
}, { title: 'InstanceSnapshot' });
export type InstanceSnapshot = Static<typeof InstanceSnapshot>;

export const InstanceSnapshotList = Type.Object({ snapshots: Type.Array(InstanceSnapshot) });

export const CreateSnapshotBody = Type.Object({
  name: Type.String({ description: 'the snapshot\'s name (DNS label)' }),
  memory: Type.Optional(Type.Boolean({ description: 'save the running guest\'s RAM and device state too (QEMU snapshot-save)' })),
}, { additionalProperties: false });

export const RestoreSnapshotBody = Type.Object({
  force: Type.Optional(Type.Boolean({ description: 'restore even though the instance runs: its present state is discarded' })),
}, { additionalProperties: false });

export const SnapshotRestored = Type.Object({
  snapshot: InstanceSnapshot,
  state: Type.String({ description: 'the instance\'s state now: running after a memory snapshot, stopped after a disk-only one' }),
});

export const InstanceSnapParams = Type.Object({ name: Type.String(), snap: Type.String() }, { additionalProperties: false });

export const InstanceSnapshotDeleted = Type.Object({ deleted: Type.String(), instance: Type.String() });
