/** What the API needs from the daemon: the services, nothing lower. */
import type { CopyService } from '../services/copies.js';
import type { CpuService } from '../services/cpu.js';
import type { ExportService } from '../services/export.js';
import type { ArchiveImporter } from '../services/import-archive.js';
import type { DiskService } from '../services/disks.js';
import type { EventBus } from '../services/events.js';
import type { GuestAgentService } from '../services/guest-agent.js';
import type { HostService } from '../services/host.js';
import type { ImageService } from '../services/images.js';
import type { InstanceService } from '../services/instances.js';
import type { InstanceConfigService } from '../services/instance-config.js';
import type { MigrationService } from '../services/migration.js';
import type { MigrationRecoveryService } from '../services/migration-recovery.js';
import type { MigrationDiskService } from '../services/migration-disks.js';
import type { MemoryService } from '../services/memory.js';
import type { MetricsService } from '../services/metrics.js';
import type { HistoryService } from '../services/history.js';
import type { NicService } from '../services/nics.js';
import type { NetworkService } from '../services/networks.js';
import type { PassthroughService } from '../services/passthrough.js';
import type { VhostUserService } from '../services/vhost-user.js';
import type { SnapshotService } from '../services/snapshots.js';
import type { TokenService } from '../services/tokens.js';
import type { VolumeService } from '../services/volumes.js';

export interface Services {
  instances: InstanceService;
  config: InstanceConfigService;
  images: ImageService;
  host: HostService;
  events: EventBus;
  cpu: CpuService;
  memory: MemoryService;
  volumes: VolumeService;
  disks: DiskService;
  nics: NicService;
  networks: NetworkService;
  passthrough: PassthroughService;
  vhostUser: VhostUserService;
  tokens: TokenService;
  /** a host's side of live migrations (a cluster controller drives them) */
  migration: MigrationService;
  /** each running guest's agent: exec, the guest's OS and addresses */
  guestAgent: GuestAgentService;
  /** instance snapshots: all disks at one instant, with the RAM when asked */
  snapshots: SnapshotService;
  /** what GET /metrics shows of each instance */
  metrics: MetricsService;
  /** the short history of each instance behind the web console's charts */
  history: HistoryService;
  /** a host's side of recovering live migrations that nobody drives any more */
  migrationRecovery: MigrationRecoveryService;
  /** the local disks (and base image) that move with a live migration; absent: this host moves none */
  migrationDisks?: MigrationDiskService;
  /** copies of instances and images made from them; absent: this daemon makes none (a simulated host) */
  copies?: CopyService;
  /** instance archives out (prepare, then download) */
  exports?: ExportService;
  /** instance archives in */
  archiveImport?: ArchiveImporter;
}
