/** Services for API tests that only record that they were asked and refuse with a coded 409; list() answers nothing. */
import type { Services } from '../../../src/api/services.js';
import { CorralError } from '../../../src/core/errors.js';

/** Every call is pushed to `calls` as "service.method"; `real` services (a token service, say) answer for themselves. */
export function recordingServices(calls: string[], real: Partial<Services> = {}): Services {
  const service = (svcName: string): unknown => new Proxy({}, {
    get: (_t, method) => {
      if (typeof method !== 'string' || method === 'then') return undefined;
      if (svcName === 'events') return method === 'subscribe' ? () => () => undefined : () => [];
      return (...args: unknown[]) => {
        calls.push(`${svcName}.${method}`);
        if (method === 'list') return [];
        void args;
        throw new CorralError('INVALID_STATE', `test: ${svcName}.${method} was asked`);
      };
    },
  });
  return new Proxy({}, {
    get: (_t, name) => (typeof name !== 'string' ? undefined : name in real ? real[name as keyof Services] : service(name)),
  }) as Services;
}
