/** Volume commands: create, list, show, resize, clone, snapshot, delete (the `default` pool). */
import { Option, type Command } from 'commander';
import type { Snapshot, Volume, VolumeDetails } from '../api/schemas-storage.js';
import { CliError, type ApiClient } from './client.js';
import { fields, hostTable, keyValues, orDash, printJson, printLines, size, table, warnUnreachable, type Unreachable } from './format.js';

/** A volume as the API sends it: from show (and only there) with its snapshots and clones. */
export type VolumeJson = Volume & Partial<Pick<VolumeDetails, 'snapshots' | 'clones'>>;
export type SnapshotJson = Snapshot;

const enc = encodeURIComponent;

/** The volumes, one a row; a HOST column when they come from a cluster controller's union (rows carry `host`). */
export function volumeTable(list: Array<VolumeJson & { host?: string }>): string {
  return hostTable(
    ['NAME', 'FORMAT', 'SIZE', 'ALLOCATED', 'BACKING', 'ATTACHED', 'CREATED'],
    list, (v) => [v.name, orDash(v.format), size(v.virtualSize), size(v.allocated), orDash(v.backing), orDash(v.attachedTo), orDash(v.createdAt)],
  );
}

export function snapshotTable(list: SnapshotJson[]): string {
  return table(['NAME', 'ID', 'CREATED'], list.map((s) => [s.name, s.id, orDash(s.createdAt)]));
}

function volumeDetails(v: VolumeJson): string {
  const { snapshots, ...rest } = v;
  const text = keyValues(fields(rest, { virtualSize: size, allocated: size }));
  return snapshots && snapshots.length > 0 ? `${text}\nsnapshots:\n${snapshotTable(snapshots).replace(/^/gm, '  ')}` : text;
}

function printVolume(v: VolumeJson, json: boolean | undefined): void {
  if (json) printJson(v);
  else printLines(volumeDetails(v));
}

export function registerVolumeCommands(program: Command, client: () => ApiClient): void {
  const volume = program.command('volume').alias('volumes').description('manage volumes (storage pool "default")');

  volume
    .command('create')
    .description('create a volume')
    .argument('<name>', 'volume name')
    .requiredOption('--size <size>', 'virtual size with a unit, e.g. 10G')
    .addOption(new Option('--format <format>', 'image format').choices(['qcow2', 'raw']).default('qcow2'))
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { size: string; format: string; json?: boolean }) => {
      printVolume(await client().call<VolumeJson>('POST', '/v1/volumes', { name, size: o.size, format: o.format }), o.json);
    });

  volume
    .command('list')
    .alias('ls')
    .description('list volumes')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ volumes: VolumeJson[]; unreachable?: Unreachable }>('GET', '/v1/volumes');
      if (o.json) printJson(res);
      else {
        warnUnreachable(res, 'volumes');
        printLines(volumeTable(res.volumes ?? []));
      }
    });

  volume
    .command('show')
    .description('show a volume with its snapshots')
    .argument('<name>', 'volume name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      printVolume(await client().call<VolumeJson>('GET', `/v1/volumes/${enc(name)}`), o.json);
    });

  volume
    .command('resize')
    .description('grow a volume (or shrink it with --shrink); attached to a running instance it grows live (virtio-blk, virtio-scsi) and never shrinks')
    .argument('<name>', 'volume name')
    .requiredOption('--size <size>', 'new virtual size with a unit, e.g. 20G')
    .option('--shrink', 'allow making it smaller (data past the new end is lost)')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { size: string; shrink?: boolean; json?: boolean }) => {
      const body = o.shrink ? { size: o.size, shrink: true } : { size: o.size };
      printVolume(await client().call<VolumeJson>('POST', `/v1/volumes/${enc(name)}/resize`, body), o.json);
    });

  volume
    .command('clone')
    .description('clone a volume: a qcow2 overlay on it, a point-in-time copy (the source must not be attached; while the clone exists it cannot be attached, deleted or reverted)')
    .argument('<source>', 'source volume')
    .argument('<name>', 'new volume name')
    .option('--json', 'print the API JSON')
    .action(async (source: string, name: string, o: { json?: boolean }) => {
      printVolume(await client().call<VolumeJson>('POST', `/v1/volumes/${enc(source)}/clone`, { name }), o.json);
    });

  volume
    .command('snapshot')
    .description('take (default), --list, --revert to or --delete an internal snapshot of a qcow2 volume')
    .argument('<name>', 'volume name')
    .argument('[snapshot]', 'snapshot name')
    .option('--list', 'list the snapshots')
    .option('--revert', 'revert the volume to the snapshot')
    .option('--delete', 'delete the snapshot')
    .option('--json', 'print the API JSON')
    .action(async (name: string, snap: string | undefined, o: { list?: boolean; revert?: boolean; delete?: boolean; json?: boolean }) => {
      const modes = [o.list, o.revert, o.delete].filter(Boolean).length;
      if (modes > 1) throw new CliError('use only one of --list, --revert, --delete');
      if (o.list) {
        const res = await client().call<{ snapshots: SnapshotJson[] }>('GET', `/v1/volumes/${enc(name)}/snapshots`);
        if (o.json) printJson(res);
        else printLines(snapshotTable(res.snapshots ?? []));
        return;
      }
      if (!snap) throw new CliError('a snapshot name is required (or --list)');
      const base = `/v1/volumes/${enc(name)}/snapshots`;
      if (o.revert) {
        const res = await client().call('POST', `${base}/${enc(snap)}/revert`);
        if (o.json) printJson(res);
        else printLines(`volume ${name}: reverted to snapshot ${snap}`);
      } else if (o.delete) {
        const res = await client().call('DELETE', `${base}/${enc(snap)}`);
        if (o.json) printJson(res);
        else printLines(`volume ${name}: snapshot ${snap} deleted`);
      } else {
        const res = await client().call<SnapshotJson>('POST', base, { name: snap });
        if (o.json) printJson(res);
        else printLines(`volume ${name}: snapshot ${res.name} taken`);
      }
    });

  volume
    .command('delete')
    .alias('rm')
    .description('delete a volume')
    .argument('<name>', 'volume name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ deleted?: string }>('DELETE', `/v1/volumes/${enc(name)}`);
      if (o.json) printJson(res);
      else printLines(`volume ${res?.deleted ?? name}: deleted`);
    });
}
