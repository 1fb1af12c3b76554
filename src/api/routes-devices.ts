/** /v1/host/devices (the host's PCI devices) and /v1/host/sriov (a PF's VFs, which are free; set its VF count). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody } from './schemas.js';
import type { Services } from './services.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };
const SriovBody = Type.Object(
  {
    pf: Type.String({ description: 'the physical function, 0000:03:00.0 or 03:00.0', maxLength: 32 }),
    vfs: Type.Integer({ minimum: 0, description: 'the number of VFs wanted (0 removes them)' }),
  },
  { additionalProperties: false },
);
const PfParams = Type.Object({ pf: Type.String({ description: 'the physical function, 0000:03:00.0 or 03:00.0', maxLength: 32 }) }, { additionalProperties: false });

/** The host's devices come from the passthrough service, which owns the sysfs root and serialises VF count changes with starts. */
export function deviceRoutes(svc: Pick<Services, 'passthrough'>): FastifyPluginAsync {
  const pt = svc.passthrough;
  return async (app: FastifyInstance) => {
    app.get(
      '/v1/host/devices',
      { schema: { summary: 'PCI devices of the host: ids, class, driver, IOMMU group and its other members, NUMA node, SR-IOV', response: { 500: ErrorBody } } },
      async () => ({ devices: pt.pciDevices() }),
    );
    app.get<{ Params: Static<typeof PfParams> }>(
      '/v1/host/sriov/:pf',
      { schema: { summary: 'A PF\'s SR-IOV state: its VFs, their drivers, and which are free (not on vfio-pci, not given to an instance)', params: PfParams, response: errors } },
      async (req) => pt.sriov(req.params.pf),
    );
    app.post<{ Body: Static<typeof SriovBody> }>(
      '/v1/host/sriov',
      { schema: { summary: 'Set the number of SR-IOV VFs of a PF (writes 0 first when changing a non-zero count); returns the PF\'s SR-IOV state', body: SriovBody, response: errors } },
      async (req) => pt.setVfCount(req.body.pf, req.body.vfs),
    );
  };
}
