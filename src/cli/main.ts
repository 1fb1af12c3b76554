#!/usr/bin/env node
/**
 * The `corral` command: a thin client of the daemon's HTTP API (unix socket by default, CORRAL_URL for TCP).
 * It never touches QEMU, files or the database itself; `corral daemon` runs the daemon in this process.
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ApiClient, CliError } from './client.js';
import { errorLine, installCliGuards, jsonErrors, releaseCliGuards, reportError, setJsonErrors } from './errors.js';
import { withSuggestion } from './suggest.js';
import { registerConsoleCommands } from './console.js';
import { registerEventCommands } from './events.js';
import { registerHostCommands } from './host.js';
import { registerImageCommands } from './images.js';
import { registerCopyCommands } from './copies.js';
import { registerInstanceCommands } from './instances.js';
import { registerMigrateCommand } from './migrate.js';
import { registerExecCommand } from './exec.js';
import { registerPoolCommands } from './pool.js';
import { registerStatsCommands } from './stats.js';
import { registerInstanceDeviceCommands } from './instance-devices.js';
import { registerCpuCommands } from './cpu.js';
import { registerMemoryCommands } from './memory.js';
import { registerVolumeCommands } from './volumes.js';
import { registerDiskCommands } from './disks.js';
import { registerSnapshotCommands } from './snapshots.js';
import { registerNicCommands } from './nics.js';
import { registerNetworkCommands } from './networks.js';
import { registerPassthroughCommands } from './passthrough.js';
import { registerVhostUserCommands } from './vhost-user.js';
import { registerTlsCommands } from './tls.js';
import { registerSetCommand } from './set.js';
import { registerTokenCommands } from './tokens.js';
import { daemonOptionsFrom, registerAgentCommand, registerClusterCommands } from './cluster.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export { errorLine };

/** Whether the command line asks for JSON (before commander has parsed it: for its own usage errors). */
function argvWantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).slice(2).includes('--json');
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('corral')
    .description('Corral: run isolated QEMU/KVM virtual machines (talks to the corral daemon)')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showSuggestionAfterError()
    // before any subcommand exists: they share this output configuration
    .configureOutput({
      outputError: (str, write) => write(jsonErrors() ? `${JSON.stringify({ error: { code: 'USAGE', message: str.replace(/^error: /, '').trim() } })}\n` : str),
    })
    .addHelpText('after', '\nEnvironment:\n  CORRAL_DATA_DIR  data dir holding corral.sock and token (default /var/lib/corral)\n  CORRAL_URL       talk to the daemon over TCP (TLS) instead, e.g. https://127.0.0.1:8443\n  CORRAL_TOKEN     bearer token for CORRAL_URL: the token file in the data dir (the default; admin) or one from `corral token create`\n  CORRAL_TLS_FINGERPRINT  the daemon certificate\'s SHA-256 fingerprint to pin (corral tls fingerprint on its host)\n  CORRAL_TLS_CA    a CA file to verify the daemon\'s certificate with instead (default: the system\'s CAs)\n  CORRAL_TARGET    the cluster host to use when --target is not given (against a controller)');
  program.option('--target <host>', 'against a cluster controller: the host whose own images, volumes, networks, vhost-user back ends or facts (host show) a command is about, or that an import goes to (env CORRAL_TARGET)');

  // One client per run, created lazily so `--help` and `daemon` never need the environment to be right.
  let api: ApiClient | undefined;
  const client = (): ApiClient => (api ??= new ApiClient(undefined, targetOption(program)));

  const daemonOptions = (c: Command): Command => c
    .option('--listen <host:port>', 'also serve the API on TCP, over TLS (bearer token from $CORRAL_DATA_DIR/token)')
    .option('--tls-cert <file>', 'the TCP listener\'s certificate (PEM; default: a self-signed one made in $CORRAL_DATA_DIR/tls)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM, no passphrase)')
    .addOption(new Option('--accel <kind>', 'force the accelerator instead of probing').choices(['kvm', 'tcg']))
    .option('--cpu-ratio <ratio>', 'vCPUs per host CPU thread in the pool (default 4.0; env CORRAL_CPU_RATIO)', Number)
    .option('--memory-ratio <ratio>', 'guest memory per byte of host memory (default 1.0; env CORRAL_MEMORY_RATIO)', Number)
    .option('--reserved-memory <size>', 'host memory kept out of the pool (default 512M; env CORRAL_RESERVED_MEMORY)')
    .option('--shared-pool <dir>', 'shared storage mounted at the same path on every host of a cluster: root disks of instances made with --pool shared (env CORRAL_SHARED_POOL)')
    .option('--metrics-public', 'serve GET /metrics (Prometheus) on the TCP listener without a token (everything else still needs one)');
  daemonOptions(program
    .command('daemon')
    .description('run the corral daemon in this process (API on $CORRAL_DATA_DIR/corral.sock)'))
    .action(async (o: Record<string, unknown>) => {
      releaseCliGuards(); // the daemon's own errors keep their stack traces, in its log
      const { runDaemon } = await import('../daemon/main.js');
      await runDaemon(daemonOptionsFrom(o));
      // Stopped: exit even if an operation cut short still holds a timer (QEMUs live on without the daemon).
      setTimeout(() => process.exit(), 1000).unref();
    });
  registerAgentCommand(program, daemonOptions);
  registerClusterCommands(program, client);

  registerInstanceCommands(program, client);
  registerMigrateCommand(program, client);
  registerExecCommand(program, client);
  registerSetCommand(program, client);
  registerConsoleCommands(program, client);
  registerImageCommands(program, client);
  registerCopyCommands(program, client);
  registerHostCommands(program, client);
  registerPoolCommands(program, client);
  registerStatsCommands(program, client);
  registerInstanceDeviceCommands(program, client);
  registerEventCommands(program, client);
  registerCpuCommands(program, client);
  registerMemoryCommands(program, client);
  registerVolumeCommands(program, client);
  registerDiskCommands(program, client);
  registerSnapshotCommands(program, client);
  registerNicCommands(program, client);
  registerNetworkCommands(program, client);
  registerPassthroughCommands(program, client);
  registerVhostUserCommands(program, client);
  registerTokenCommands(program, client);
  registerTlsCommands(program);
  return program;
}

/** The target host `--target` names (before or after the command), or undefined for CORRAL_TARGET's. */
function targetOption(program: Command): string | undefined {
  return (program.opts() as { target?: string }).target;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  installCliGuards();
  setJsonErrors(argvWantsJson(argv)); // for commander's usage errors, before any command runs
  const program = buildProgram();
  // The command that runs decides: an error prints as JSON when it was given --json.
  program.hook('preAction', (_program, command) => setJsonErrors(command.opts().json === true));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    let err = e;
    if (e instanceof CliError && e.code?.endsWith('_NOT_FOUND')) {
      try {
        err = await withSuggestion(e, new ApiClient(undefined, targetOption(program)));
      } catch {
        err = e;
      }
    }
    reportError(err);
    process.exitCode = 1;
  }
}

await main();
