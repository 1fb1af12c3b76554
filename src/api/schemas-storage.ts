/** Schemas of images, volumes (with snapshots and clones) and the disks of an instance. */
import { Type, type Static } from '@sinclair/typebox';
import { Size } from '../core/request-schema.js';
import { DiskBusSchema } from '../core/spec-schema.js';
import { ErrorBody, nullable } from './schemas-common.js';

export const ImgFormat = Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]);

// ---- images ----

export const ImportImageBody = Type.Object(
  {
    name: Type.String(),
    file: Type.String({ description: 'absolute path of the image file on the daemon host' }),
    format: ImgFormat,
  },
  { additionalProperties: false },
);

export const BuildTinyBody = Type.Union([Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()]);

export const Image = Type.Object(
  {
    name: Type.String(),
    kind: Type.Union([Type.Literal('kernel'), Type.Literal('disk')]),
    format: ImgFormat,
    disk: Type.String({ description: 'absolute path of the root disk' }),
    kernel: Type.Optional(Type.String()),
    initrd: Type.Optional(Type.String()),
    cmdline: Type.Optional(Type.String({ description: 'base kernel command line for direct kernel boot (kind kernel only)' })),
    virtualSize: Type.Integer(),
    createdAt: Type.String(),
    source: Type.Union([Type.Literal('tiny'), Type.Literal('import'), Type.Literal('publish')], { description: 'built (tiny), imported from a file, or published from an instance' }),
    sha256: Type.Optional(Type.String({ description: 'sha256 of the disk file, recorded when the image was made (published images); checked when an archive import uses the image' })),
  },
  { title: 'Image' },
);
export type Image = Static<typeof Image>;
export const ImageList = Type.Object({ images: Type.Array(Image) });

/** One line of an image job's stream (application/x-ndjson): progress lines, then a result or an error. */
export const ImageJobLine = Type.Union([
  Type.Object({ type: Type.Literal('progress'), step: Type.String(), message: Type.String(), percent: Type.Optional(Type.Number()) }),
  Type.Object({ type: Type.Literal('result'), image: Image }),
  Type.Object({ type: Type.Literal('error'), error: ErrorBody.properties.error }),
], { title: 'ImageJobLine' });
export type ImageJobLine = Static<typeof ImageJobLine>;

// ---- volumes ----

export const CreateVolumeBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    size: Size,
    format: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')], { description: 'default qcow2' })),
  },
  { additionalProperties: false },
);
export const ResizeVolumeBody = Type.Object(
  { size: Size, shrink: Type.Optional(Type.Boolean({ description: 'allow making the volume smaller (loses data past the new end)' })) },
  { additionalProperties: false },
);
export const CloneVolumeBody = Type.Object({ name: Type.String({ description: 'name of the new volume' }) }, { additionalProperties: false });
export const SnapshotBody = Type.Object({ name: Type.String({ description: 'snapshot name (DNS label)' }) }, { additionalProperties: false });
export const SnapParams = Type.Object({ name: Type.String(), snap: Type.String() }, { additionalProperties: false });

export const Snapshot = Type.Object(
  { name: Type.String(), id: Type.String(), createdAt: nullable(Type.String()), vmStateSize: Type.Integer() },
  { title: 'Snapshot' },
);
export type Snapshot = Static<typeof Snapshot>;
export const SnapshotList = Type.Object({ snapshots: Type.Array(Snapshot) });

const volumeFields = {
  name: Type.String(),
  pool: Type.String(),
  format: ImgFormat,
  virtualSize: Type.Integer({ description: 'bytes' }),
  path: Type.String({ description: 'absolute path of the image file' }),
  createdAt: Type.String(),
  backing: nullable(Type.String(), 'for a clone: the source volume it is an overlay on'),
  attachedTo: nullable(Type.String(), 'the instance the volume is attached to'),
  allocated: Type.Integer({ description: 'bytes allocated on disk now' }),
};

export const Volume = Type.Object(volumeFields, { title: 'Volume' });
export type Volume = Static<typeof Volume>;
export const VolumeList = Type.Object({ volumes: Type.Array(Volume) });

/** GET /v1/volumes/{name}: the volume with its snapshots and clones. */
export const VolumeDetails = Type.Object(
  { ...volumeFields, snapshots: Type.Array(Snapshot), clones: Type.Array(Type.String(), { description: 'the volumes that are clones of this one' }) },
  { title: 'VolumeDetails' },
);
export type VolumeDetails = Static<typeof VolumeDetails>;

export const Reverted = Type.Object({ reverted: Type.String(), snapshot: Type.String() });
export const SnapshotDeleted = Type.Object({ deleted: Type.String(), volume: Type.String() });

// ---- disks of an instance ----

export const AttachDiskBody = Type.Object(
  {
    volume: Type.String({ description: 'name of a volume in the default pool' }),
    bus: Type.Optional(Type.String({ description: 'virtio-blk (default, paravirtual), virtio-scsi (paravirtual), ide or sata (emulated; no hotplug), vhost-user-blk (served by a qemu-storage-daemon; the guest memory becomes a shared memfd)' })),
  },
  { additionalProperties: false },
);
export const DiskParams = Type.Object({ name: Type.String(), volume: Type.String() }, { additionalProperties: false });

export const Disk = Type.Object(
  {
    volume: Type.String(),
    bus: DiskBusSchema,
    id: Type.String({ description: 'the QEMU device id' }),
    path: Type.String(),
    format: ImgFormat,
    serial: Type.String({ description: 'what the guest reads as the disk\'s serial' }),
  },
  { title: 'Disk' },
);
export type Disk = Static<typeof Disk>;
export const DiskList = Type.Object({ disks: Type.Array(Disk) });
