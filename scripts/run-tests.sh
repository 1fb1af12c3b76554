#!/usr/bin/env bash
# The whole suite, as `make test` runs it: the unit tests (no guests) run beside the integration files, which run one
# at a time (each boots real guests, some bring up network namespaces, PostgreSQL or Chromium of their own). The unit
# tests' output follows the integration files'; then what failed in either part, in short (scripts/test-failures.mjs),
# so that the end of the log names it. The suite fails when either part does.
# Needs CORRAL_TEST_BASE (the tiny image the integration files copy: make test-base).
set -uo pipefail
cd "$(dirname "$0")/.."
unit_log=$(mktemp "${TMPDIR:-/tmp}/corral-unit-tests.XXXXXX")
integration_log=$(mktemp "${TMPDIR:-/tmp}/corral-integration-tests.XXXXXX")
trap 'rm -f "$unit_log" "$integration_log"' EXIT
node --test dist/test/unit/ >"$unit_log" 2>&1 &
unit_pid=$!
node --test --test-concurrency=1 dist/test/integration/ 2>&1 | tee "$integration_log"
integration=${PIPESTATUS[0]}
wait "$unit_pid"
unit=$?
echo "# ---- the unit tests (run beside the integration files) ----"
cat "$unit_log"
node scripts/test-failures.mjs "$unit_log"
node scripts/test-failures.mjs "$integration_log"
echo "# unit tests: exit $unit; integration tests: exit $integration"
[ "$unit" -eq 0 ] && [ "$integration" -eq 0 ]
