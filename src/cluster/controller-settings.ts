/**
 * The cluster's settings on a controller: GET /v1/cluster/settings (viewer), PATCH /v1/cluster/settings (admin),
 * stored in PostgreSQL's `cluster` row, so every controller reads the same. One setting for now:
 * `migrationTls` (`corral cluster set migration-tls on|off`): live migrations encrypt their stream with TLS from the
 * cluster CA (on, the default) or, on a network between the hosts that is trusted, send it in plain TCP (off).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { E, errors } from '../api/schemas-common.js';
import type { ClusterStore } from './cluster-store.js';

export const ClusterSettingsSchema = Type.Object({
  migrationTls: Type.Boolean({ description: 'live migrations encrypt their stream (and their disks\' NBD traffic) with TLS from the cluster CA; false: the network between the hosts is trusted' }),
}, { title: 'ClusterSettings', additionalProperties: false });

const SettingsChange = Type.Partial(ClusterSettingsSchema, { additionalProperties: false });

export function controllerSettingsRoutes(d: { store: Pick<ClusterStore, 'getSettings' | 'updateSettings'>; log: { info: (o: object, m: string) => void } }) {
  return async (base: FastifyInstance): Promise<void> => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/v1/cluster/settings', { schema: { response: { 200: ClusterSettingsSchema, 401: errors[401], 403: E[403] } } }, async () => d.store.getSettings());
    app.patch('/v1/cluster/settings', { schema: { body: SettingsChange, response: { 200: ClusterSettingsSchema, 400: errors[400], 401: errors[401], 403: E[403] } } }, async (req) => {
      const now = await d.store.updateSettings(req.body);
      d.log.info({ change: req.body, settings: now }, 'cluster settings changed');
      return now;
    });
  };
}
