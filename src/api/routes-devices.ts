/** /v1/host/devices (the host's PCI devices) and /v1/host/sriov (a PF's VFs, which are free; set its VF count). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors } from './schemas-common.js';
import { PciDeviceList, PfParams, SriovBody, SriovState } from './schemas-host.js';
import type { Services } from './services.js';

/** The host's devices come from the passthrough service, which owns the sysfs root and serialises VF count changes with starts. */
export function deviceRoutes(svc: Pick<Services, 'passthrough'>): FastifyPluginAsync {
  const pt = svc.passthrough;
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/host/devices',
      {
        schema: {
          operationId: 'listHostDevices', tags: ['host'],
          summary: 'PCI devices of the host: ids, class, driver, IOMMU group and its other members, NUMA node, SR-IOV',
          response: { 200: PciDeviceList, 401: errors[401], 500: errors[500] },
        },
      },
      async () => ({ devices: pt.pciDevices() }),
    );
    app.get(
      '/v1/host/sriov/:pf',
      {
        schema: {
          operationId: 'getSriovState', tags: ['host'],
          summary: 'A PF\'s SR-IOV state: its VFs, their drivers, and which are free (not on vfio-pci, not given to an instance)',
          params: PfParams, response: { 200: SriovState, ...errors },
        },
      },
      async (req) => pt.sriov(req.params.pf),
    );
    app.post(
      '/v1/host/sriov',
      {
        schema: {
          operationId: 'setSriovVfCount', tags: ['host'],
          summary: 'Set the number of SR-IOV VFs of a PF (writes 0 first when changing a non-zero count); returns the PF\'s SR-IOV state',
          body: SriovBody, response: { 200: SriovState, ...errors },
        },
      },
      async (req) => pt.setVfCount(req.body.pf, req.body.vfs),
    );
  };
}
