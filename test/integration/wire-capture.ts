/**
 * What crosses the wire of a test host: a packet capture on a network namespace's eth0 (an AF_PACKET socket, by a
 * small python3 program run with `ip netns exec`), each TCP flow's payload put back in sequence order. The tests of
 * migration TLS read it: a plain QEMU migration stream starts with QEMU's magic "QEVM" and carries the guest's
 * memory as it is; a TLS one starts with a TLS handshake record and carries neither.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/** One TCP flow seen (one direction), its payload in order. */
export interface Flow {
  src: string; sport: number; dst: string; dport: number;
  bytes: number;
  /** its first 16 bytes, hex */
  head: string;
  /** whether `needle` (the capture's argument) is in its payload */
  needle: boolean;
  /** bytes of its sequence space never seen (lost to the capture): a flow with holes proves nothing by what it lacks */
  holes: number;
}

/** What a capture saw: its flows, the largest first, and the packets the kernel dropped before it read them. */
export interface Capture {
  flows: Flow[];
  drops: number;
}

const PROGRAM = String.raw`
import json, signal, socket, struct, sys
needle = sys.argv[1].encode()
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
s.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE: room for a burst while this reads
s.bind(('eth0', 0))
s.settimeout(0.2)
flows = {}
print('ready', flush=True)
while not stop:
    try:
        pkt = s.recv(262144)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    if pkt[12:14] != b'\x08\x00':
        continue
    ip = pkt[14:]
    if ip[9] != 6:
        continue
    ihl = (ip[0] & 15) * 4
    total = struct.unpack('!H', ip[2:4])[0]
    tcp = ip[ihl:total] if total else ip[ihl:]
    sport, dport, seq = struct.unpack('!HHI', tcp[:8])
    payload = tcp[(tcp[12] >> 4) * 4:]
    if not payload:
        continue
    key = (socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport)
    flows.setdefault(key, []).append((seq, payload))
packets, drops = struct.unpack('II', s.getsockopt(263, 6, 8))  # SOL_PACKET, PACKET_STATISTICS
out = []
for (src, sport, dst, dport), segs in flows.items():
    base = segs[0][0]
    parts = sorted(((seq - base) & 0xffffffff, p) for seq, p in segs)
    data = bytearray()
    holes = 0
    for rel, p in parts:
        if rel >= 0x80000000:
            continue
        end = rel + len(p)
        if end <= len(data):
            continue
        if rel > len(data):
            holes += rel - len(data)
            data += bytes(rel - len(data))
        data += p[len(data) - rel:]
    out.append({'src': src, 'sport': sport, 'dst': dst, 'dport': dport, 'bytes': len(data), 'head': bytes(data[:16]).hex(), 'needle': needle in data, 'holes': holes})
print(json.dumps({'flows': out, 'drops': drops}), flush=True)
`;

/** Why no capture can be made here (no python3), or null. */
export function captureUnavailable(): string | null {
  return spawnSync('python3', ['-c', 'import socket; socket.AF_PACKET'], { stdio: 'ignore' }).status === 0 ? null : 'no python3 with AF_PACKET sockets to capture packets with';
}

export class WireCapture {
  private out = '';
  private err = '';

  private constructor(private readonly p: ChildProcess) {
    p.stdout!.on('data', (d: Buffer) => { this.out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { this.err += d.toString(); });
  }

  /** Capture on eth0 of namespace `netns`, looking for `needle` in each flow; resolves once it listens. */
  static async start(netns: string, needle: string): Promise<WireCapture> {
    const p = spawn('ip', ['netns', 'exec', netns, 'python3', '-c', PROGRAM, needle], { stdio: ['ignore', 'pipe', 'pipe'] });
    const c = new WireCapture(p);
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (c.out.startsWith('ready')) { clearInterval(t); resolve(); }
        if (p.exitCode !== null) { clearInterval(t); reject(new Error(`the capture ended: ${c.err}`)); }
      }, 20);
    });
    return c;
  }

  /** Stop it: the flows it saw, the largest first, and the drops. */
  async stop(): Promise<Capture> {
    const ended = new Promise<void>((resolve) => this.p.once('exit', () => resolve()));
    this.p.kill('SIGTERM');
    await ended;
    const json = this.out.split('\n').find((l) => l.startsWith('{'));
    if (!json) throw new Error(`the capture gave nothing: ${this.err}`);
    const c = JSON.parse(json) as Capture;
    return { ...c, flows: c.flows.sort((a, b) => b.bytes - a.bytes) };
  }
}

/** QEMU's migration stream magic, "QEVM", as hex. */
export const QEVM_HEX = Buffer.from('QEVM').toString('hex');
