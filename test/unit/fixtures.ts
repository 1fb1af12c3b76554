import { fileURLToPath } from 'node:url';

/** test/fixtures in the source tree (tests run from dist/test/unit). */
export const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
