import { test } from 'node:test';
import assert from 'node:assert/strict';
import { settingLines } from '../../../src/cli/cluster.js';

test('corral cluster settings: one line per setting, by its command-line name, on/off', () => {
  assert.match(settingLines({ migrationTls: true }), /^SETTING\s+VALUE\nmigration-tls\s+on$/);
  assert.match(settingLines({ migrationTls: false }), /^migration-tls\s+off$/m);
});
