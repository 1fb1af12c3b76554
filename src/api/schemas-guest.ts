/** Schemas of what the guest agent gives: the guest's OS and addresses (in an instance's view), exec's request and reply. */
import { Type, type Static } from '@sinclair/typebox';
import { EXEC_MAX_TIMEOUT_S } from '../core/exec-limits.js';
import { ErrorBody, nullable } from './schemas-common.js';

export const GuestAddress = Type.Object({
  family: Type.Union([Type.Literal('ipv4'), Type.Literal('ipv6')]),
  address: Type.String(),
  prefix: Type.Integer(),
}, { title: 'GuestAddress' });

export const GuestInterface = Type.Object({
  name: Type.String({ description: 'the interface\'s name in the guest (eth0, enp0s2, lo ...)' }),
  mac: Type.Optional(Type.String()),
  addresses: Type.Array(GuestAddress),
}, { title: 'GuestInterface' });

export const GuestOs = Type.Object({
  id: Type.Optional(Type.String({ description: 'os-release ID (debian, corral-tiny ...)' })),
  name: Type.Optional(Type.String()),
  prettyName: Type.Optional(Type.String()),
  version: Type.Optional(Type.String()),
  versionId: Type.Optional(Type.String()),
  kernelRelease: Type.Optional(Type.String()),
  machine: Type.Optional(Type.String()),
}, { title: 'GuestOs' });

/** What the guest's agent says of the guest: absent from a view when the agent did not answer (or the instance has none). */
export const GuestInfo = Type.Object({
  os: GuestOs,
  interfaces: Type.Array(GuestInterface),
}, { title: 'GuestInfo', description: 'from the guest agent (guest-get-osinfo, guest-network-get-interfaces), asked with a 2 s timeout and kept 5 s' });
export type GuestInfo = Static<typeof GuestInfo>;

const Encoding = Type.Union([Type.Literal('utf8'), Type.Literal('base64')], {
  description: 'how stdin, stdout and stderr are written: utf8 text (the default; bytes that are not UTF-8 are replaced) or base64',
});

/** POST /v1/instances/{name}/exec */
export const ExecBody = Type.Object({
  command: Type.Array(Type.String(), { minItems: 1, description: 'the program (looked up in the guest agent\'s PATH) and its arguments; no shell: use ["sh", "-c", "..."] for one' }),
  stdin: Type.Optional(Type.String({ description: 'what the command reads on stdin (in `encoding`; at most 512 KiB); without it, stdin is empty' })),
  timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: EXEC_MAX_TIMEOUT_S, description: 'seconds to wait for the command to end (default 300); after that TIMEOUT, and the command may still run in the guest' })),
  encoding: Type.Optional(Encoding),
}, { additionalProperties: false, title: 'ExecRequest' });
export type ExecBody = Static<typeof ExecBody>;

export const ExecReply = Type.Object({
  exitCode: Type.Integer({ description: 'the command\'s exit code; 128 + the signal\'s number when a signal ended it' }),
  signal: nullable(Type.Integer(), 'the signal that ended the command, or null'),
  stdout: Type.String(),
  stderr: Type.String(),
  encoding: Encoding,
  stdoutTruncated: Type.Boolean({ description: 'the guest agent kept only the first 16 MiB' }),
  stderrTruncated: Type.Boolean(),
}, { title: 'ExecResult' });
export type ExecReply = Static<typeof ExecReply>;

const err = (description: string) => Type.Object({ error: ErrorBody.properties.error }, { title: 'Error', description });
export const agentErrors = {
  502: err('AGENT_FAILED: the guest agent answered with an error (a program it could not start ...)'),
  504: err('TIMEOUT: the command did not end within the timeout (it may still run in the guest)'),
} as const;
