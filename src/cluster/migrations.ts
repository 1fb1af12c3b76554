/**
 * The cluster database's schema, as an ordered list of versioned migrations, and migrate(), which every controller
 * runs at start. Several controllers may start together over one PostgreSQL: migrate() runs in one transaction
 * that first takes a transaction-scoped advisory lock (SCHEMA_LOCK_KEY), so they apply each migration once, one
 * after the other; the later ones find the work done. A database migrated by a newer controller (a version this
 * code does not know) is refused with SCHEMA_TOO_NEW rather than used. A migration is never edited once
 * released: a change to the schema is a new migration at the end of the list.
 */
import type pg from 'pg';
import { CorralError } from '../core/errors.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The advisory lock key of schema migrations (pg_advisory_xact_lock takes a bigint; this is "corral" in
 * ASCII, 0x636f7272616c). Other cluster-wide locks use other keys.
 */
export const SCHEMA_LOCK_KEY = '109330312618348';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'cluster, join tokens, hosts, revoked certificates',
    sql: `
      -- the cluster's own CA (one row): it signs each agent's certificate when the agent joins
      CREATE TABLE cluster (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        ca_cert text NOT NULL,
        ca_key text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      -- one-use tokens a new host joins with; only the SHA-256 of the secret is kept
      CREATE TABLE join_tokens (
        id text PRIMARY KEY,
        secret_hash text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        used_by text
      );
      -- the hosts in the cluster: where each agent's API is, its certificate, and what it last reported
      CREATE TABLE hosts (
        name text PRIMARY KEY,
        uuid uuid NOT NULL UNIQUE,
        address text NOT NULL,
        cert_serial text NOT NULL,
        cert_fingerprint text NOT NULL,
        labels jsonb NOT NULL DEFAULT '{}',
        maintenance boolean NOT NULL DEFAULT false,
        fenced_at timestamptz,
        fence_reason text,
        capacity jsonb,
        allocation jsonb,
        agent_version text,
        joined_at timestamptz NOT NULL DEFAULT now(),
        last_heartbeat timestamptz
      );
      -- serials of agent certificates that must no longer be accepted (their host was removed)
      CREATE TABLE revoked_certs (
        serial text PRIMARY KEY,
        host text NOT NULL,
        revoked_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 2,
    name: 'controller API tokens',
    sql: `
      -- the bearer tokens people use on any controller: each controller's token file, registered at its start
      -- (only the SHA-256 of the token is kept)
      CREATE TABLE api_tokens (
        name text PRIMARY KEY,
        hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX api_tokens_hash ON api_tokens (hash);
    `,
  },
  {
    version: 3,
    name: 'instances and where they are placed',
    sql: `
      -- every instance of the cluster and the host it is placed on (the agent there holds its spec and state);
      -- cpus and memory are what placement reserved on that host, whether the instance runs or not.
      -- A host that holds instances cannot be removed (RESTRICT).
      CREATE TABLE instances (
        name text PRIMARY KEY,
        host text NOT NULL REFERENCES hosts (name) ON DELETE RESTRICT,
        uuid uuid,
        cpus integer NOT NULL CHECK (cpus > 0),
        memory bigint NOT NULL CHECK (memory > 0),
        grp text,
        anti_affinity boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX instances_host ON instances (host);
      CREATE INDEX instances_grp ON instances (grp) WHERE grp IS NOT NULL;
    `,
  },
  {
    version: 4,
    name: 'shared storage and high availability',
    sql: `
      -- where a host mounts the cluster's shared storage (null: none); HA instances go only to hosts that have it
      ALTER TABLE hosts ADD COLUMN shared_pool text;
      -- an HA instance (root disk on the shared pool) is started on another host when its host is fenced; spec is
      -- the create request it was made with, less what only the controller reads, to make it again there
      ALTER TABLE instances ADD COLUMN pool text NOT NULL DEFAULT 'local' CHECK (pool IN ('local', 'shared'));
      ALTER TABLE instances ADD COLUMN ha boolean NOT NULL DEFAULT false;
      ALTER TABLE instances ADD COLUMN spec jsonb;
    `,
  },
  {
    version: 5,
    name: 'what each host has reserved, kept by a trigger',
    sql: `
      -- the sums of the instances placed on each host, kept up to date by the trigger below in the same
      -- transaction as the change: placement reads the hosts only, whatever the number of instances
      ALTER TABLE hosts ADD COLUMN reserved_cpus bigint NOT NULL DEFAULT 0;
      ALTER TABLE hosts ADD COLUMN reserved_memory bigint NOT NULL DEFAULT 0;
      ALTER TABLE hosts ADD COLUMN reserved_count integer NOT NULL DEFAULT 0;
      UPDATE hosts h SET reserved_cpus = s.c, reserved_memory = s.m, reserved_count = s.n
        FROM (SELECT host, sum(cpus) AS c, sum(memory) AS m, count(*) AS n FROM instances GROUP BY host) s WHERE s.host = h.name;
      CREATE FUNCTION corral_reserve() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
          UPDATE hosts SET reserved_cpus = reserved_cpus - OLD.cpus, reserved_memory = reserved_memory - OLD.memory,
            reserved_count = reserved_count - 1 WHERE name = OLD.host;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          UPDATE hosts SET reserved_cpus = reserved_cpus + NEW.cpus, reserved_memory = reserved_memory + NEW.memory,
            reserved_count = reserved_count + 1 WHERE name = NEW.host;
        END IF;
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER instances_reserve AFTER INSERT OR DELETE OR UPDATE OF host, cpus, memory ON instances
        FOR EACH ROW EXECUTE FUNCTION corral_reserve();
    `,
  },
  {
    version: 6,
    name: 'instances as their hosts report them',
    sql: `
      -- the instance as its host last reported it (a heartbeat's summary, or an agent's reply to the controller's own
      -- call), with the reporting host in it: the cluster's list is read from here, never from the hosts
      ALTER TABLE instances ADD COLUMN view jsonb;
      ALTER TABLE instances ADD COLUMN reported_at timestamptz;
    `,
  },
  {
    version: 7,
    name: 'the host labels an instance asks for',
    sql: `
      -- the labels (key: value) a host must carry to hold the instance, as its create asked (hostLabels; null: none):
      -- kept so that an HA restart on another host asks for them again
      ALTER TABLE instances ADD COLUMN host_labels jsonb;
    `,
  },
  {
    version: 8,
    name: 'instance changes notified',
    sql: `
      -- every change to an instance's row sends its name on corral_instances once the change commits: each
      -- controller keeps its list between requests and reads again only the rows named (src/cluster/instance-list.ts)
      CREATE FUNCTION corral_instances_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('corral_instances', OLD.name); END IF;
        IF TG_OP <> 'DELETE' THEN PERFORM pg_notify('corral_instances', NEW.name); END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER instances_notify AFTER INSERT OR UPDATE OR DELETE ON instances
        FOR EACH ROW EXECUTE FUNCTION corral_instances_notify();
    `,
  },
  {
    version: 9,
    name: 'named API tokens with roles, and the audit log',
    sql: `
      -- people's bearer tokens (corral token create), as a single daemon has them: a role, an optional expiry, who
      -- made it, and a revoked token's row kept (its holder is told why it is refused) until its name is reused.
      -- Only the SHA-256 of the secret is kept. A table of their own, not api_tokens (the controllers' own token
      -- files, all admin): a controller of a version before this one, still running during an upgrade, takes any
      -- hash in api_tokens for an admin's, and so must never find a viewer's there.
      CREATE TABLE named_tokens (
        name text PRIMARY KEY,
        role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        hash text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz
      );
      -- every state-changing request to a controller and every refused one (401, 403), as a daemon's audit.log
      -- has them: who (a token's name, "token-file" for a controller's token file, "agent HOST"), the client's
      -- address, the method, path and the resource it names, the status and error code, when, how long
      CREATE TABLE audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        who text,
        role text CHECK (role IN ('viewer', 'operator', 'admin')),
        peer text,
        method text NOT NULL,
        path text NOT NULL,
        resource text,
        status integer NOT NULL,
        code text,
        ms double precision NOT NULL
      );
    `,
  },
  {
    version: 10,
    name: 'cluster events',
    sql: `
      -- what happened in the cluster and why (hosts joining, fenced, back; instances placed, restarted elsewhere),
      -- written in the same transaction as the change; each controller's /v1/events replays these after an id,
      -- and the trigger's NOTIFY (sent at commit) tells every controller's listener of a new one.
      -- Kept bounded by the controllers (cluster-events.ts: the newest 10,000, none older than 30 days).
      CREATE TABLE events (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        type text NOT NULL,
        host text,
        instance text,
        data jsonb NOT NULL DEFAULT '{}'
      );
      CREATE INDEX events_host ON events (host, id) WHERE host IS NOT NULL;
      CREATE INDEX events_at ON events (at);
      CREATE FUNCTION corral_event_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify('corral_events', NEW.id::text);
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION corral_event_notify();
    `,
  },
  {
    version: 11,
    name: 'hosts\' own events',
    sql: `
      -- what happens on each host (instances started, stopped, crashed...) comes to the cluster's events with the
      -- heartbeats: source_id is the event's id on its host (each kept once), events_acked the newest a host has
      -- delivered, which the heartbeat's reply tells the agent so that it sends what follows, across restarts of either
      ALTER TABLE events ADD COLUMN source_id bigint;
      CREATE UNIQUE INDEX events_source ON events (host, source_id) WHERE source_id IS NOT NULL;
      ALTER TABLE hosts ADD COLUMN events_acked bigint NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 12,
    name: 'live migrations reserve on their destination',
    sql: `
      -- the host a live migration moves the instance to: what it reserves counts there too until the row moves
      -- (host = migrating_to) or the migration is given up (migrating_to NULL); one migration at a time
      ALTER TABLE instances ADD COLUMN migrating_to text REFERENCES hosts(name);
      CREATE OR REPLACE FUNCTION corral_reserve() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
          UPDATE hosts SET reserved_cpus = reserved_cpus - OLD.cpus, reserved_memory = reserved_memory - OLD.memory,
            reserved_count = reserved_count - 1 WHERE name = OLD.host;
          IF OLD.migrating_to IS NOT NULL THEN
            UPDATE hosts SET reserved_cpus = reserved_cpus - OLD.cpus, reserved_memory = reserved_memory - OLD.memory WHERE name = OLD.migrating_to;
          END IF;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          UPDATE hosts SET reserved_cpus = reserved_cpus + NEW.cpus, reserved_memory = reserved_memory + NEW.memory,
            reserved_count = reserved_count + 1 WHERE name = NEW.host;
          IF NEW.migrating_to IS NOT NULL THEN
            UPDATE hosts SET reserved_cpus = reserved_cpus + NEW.cpus, reserved_memory = reserved_memory + NEW.memory WHERE name = NEW.migrating_to;
          END IF;
        END IF;
        RETURN NULL;
      END
      $fn$;
      DROP TRIGGER instances_reserve ON instances;
      CREATE TRIGGER instances_reserve AFTER INSERT OR DELETE OR UPDATE OF host, cpus, memory, migrating_to ON instances
        FOR EACH ROW EXECUTE FUNCTION corral_reserve();
    `,
  },
  {
    version: 13,
    name: 'hosts report their CPU models and memory',
    sql: `
      -- what each host's QEMU can run (accelerator, QEMU version, runnable named CPU models, the host CPU), sent by
      -- its agent when it changes; its available memory and hugepage pools, with each heartbeat
      ALTER TABLE hosts ADD COLUMN cpu_report jsonb, ADD COLUMN memory_report jsonb;
    `,
  },
  {
    version: 14,
    name: 'cluster settings: migration TLS',
    sql: `
      -- whether live migrations encrypt their stream (and their disks' NBD traffic) with TLS from the cluster CA:
      -- on unless the network between the hosts is trusted (corral cluster set migration-tls off)
      ALTER TABLE cluster ADD COLUMN migration_tls boolean NOT NULL DEFAULT true;
    `,
  },
  {
    version: 15,
    name: 'web console sessions',
    sql: `
      -- the web console's browser sessions (cluster-sessions.ts): any controller takes a session another made, and a
      -- logout on one ends it on all. Only the SHA-256 of the session's id (the cookie) is kept, and of the token it
      -- was opened with (api_tokens or named_tokens: each use reads whether that token may still be used); the CSRF
      -- token is kept as is (the session's own browser reads it back). expires_at: the idle limit from last_seen,
      -- capped by the whole life; an ended session (logout, its token revoked) keeps its row and why for a while,
      -- to tell its cookie. The controllers' sweeps delete rows an hour after they ended or expired.
      CREATE TABLE web_sessions (
        id_hash text PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{64}$'),
        token_hash text NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
        who text NOT NULL,
        role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        csrf text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        ended_at timestamptz,
        end_reason text
      );
      CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen) WHERE ended_at IS NULL;
    `,
  },
];

export interface MigrateResult {
  /** the schema's version before and after */
  from: number;
  to: number;
  /** the versions this call applied (empty when the schema was up to date) */
  applied: number[];
}

/** The list's versions must run 1, 2, 3, ... (a programming error otherwise). */
function checkList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new CorralError('INTERNAL', `migration ${m.name} has version ${m.version}, expected ${i + 1}`);
  });
}

/**
 * Bring the schema up to the newest of `migrations` (default MIGRATIONS) on this client's database, in one
 * transaction under the schema lock: each missing migration is applied in order and recorded in
 * schema_migrations. A schema newer than the list is SCHEMA_TOO_NEW and nothing changes. Errors other than
 * that one are the driver's own (the caller maps an unreachable database).
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[] = MIGRATIONS,
  log?: { info(o: object, m?: string): void }): Promise<MigrateResult> {
  checkList(migrations);
  const known = migrations.length;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [SCHEMA_LOCK_KEY]);
    // made under the lock: two CREATE TABLE IF NOT EXISTS at once can both try to make it
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
    const from = r.rows[0]?.v ?? 0;
    if (from > known) {
      throw new CorralError('SCHEMA_TOO_NEW',
        `the cluster database's schema is version ${from}, newer than this controller knows (version ${known}): a newer Corral controller migrated it; upgrade this controller`,
        { databaseVersion: from, knownVersion: known });
    }
    const applied: number[] = [];
    for (const m of migrations.slice(from)) {
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    if (applied.length > 0) log?.info({ from, to: known, applied }, 'cluster database schema migrated');
    return { from, to: Math.max(from, known), applied };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
