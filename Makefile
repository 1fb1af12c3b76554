# Corral. `make start` and `make test` set up whatever is missing on a Debian 12 host (as root) first.
SHELL := /bin/bash
DATA_DIR ?= $(or $(CORRAL_DATA_DIR),/var/lib/corral)
# The tests build the tiny image once here and copy it into each test daemon's own data dir.
TEST_BASE ?= $(CURDIR)/.data/test-base
export CORRAL_PROBE_CACHE ?= /run/corral/accel-probe.json

.PHONY: all deps build tiny start test test-base test-unit test-integration bench bench-devices bench-scale bench-cluster bench-migration bench-web bench-metrics bench-snapshots bench-export clean \
        cluster-demo cluster-demo-pause cluster-demo-resume cluster-demo-down cluster-demo-status

all: build

deps:
	@bash scripts/host-deps.sh

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The web console (web/, Preact + xterm.js) is type-checked against the API's schemas, then bundled by Vite into
# dist/web, which the daemon serves at / on its TCP listener.
build: deps node_modules/.package-lock.json
	npx tsc -p tsconfig.json
	npx tsc -p web/tsconfig.json
	npx vite build web --logLevel warn

tiny: build
	@test -f $(DATA_DIR)/images/tiny/image.json || CORRAL_DATA_DIR=$(DATA_DIR) node dist/src/daemon/build-tiny.js

start: tiny
	CORRAL_DATA_DIR=$(DATA_DIR) node dist/src/cli/main.js daemon $(ARGS)

# A cluster on one machine (scripts/cluster-demo.sh): PostgreSQL, a controller and three agent hosts in network
# namespaces, all under CORRAL_DEMO_DIR (default /var/lib/corral-demo). up prints the CORRAL_* exports.
cluster-demo: build
	@bash scripts/cluster-demo.sh up

cluster-demo-pause: build
	@bash scripts/cluster-demo.sh pause

cluster-demo-resume: build
	@bash scripts/cluster-demo.sh resume

cluster-demo-down: build
	@bash scripts/cluster-demo.sh down

cluster-demo-status: build
	@bash scripts/cluster-demo.sh status

# The test base is rebuilt when the tiny image's guest changed (assets/tiny/VERSION, copied into the image when built).
test-base: build
	@test -f $(TEST_BASE)/images/tiny/image.json && cmp -s assets/tiny/VERSION $(TEST_BASE)/images/tiny/VERSION || CORRAL_DATA_DIR=$(TEST_BASE) node dist/src/daemon/build-tiny.js --force

# The suite also builds a Debian 12 image with debootstrap (about a minute) and boots it from its own disk
# through SeaBIOS and GRUB; CORRAL_TEST_DEBIAN=0 skips that part.
export CORRAL_TEST_DEBIAN ?= 1

# The unit tests run beside the integration files (scripts/run-tests.sh), which run one at a time.
test: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) bash scripts/run-tests.sh

test-unit: build
	node --test dist/test/unit/

test-integration: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node --test --test-concurrency=1 dist/test/integration/

bench: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/start.js

bench-devices: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/devices.js

# snapshot create with and without --memory, stopped, and a memory restore on the tiny guest (ARGS="ROUNDS")
bench-snapshots: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/snapshots.js $(ARGS)

# export and import through corral against qemu-img convert of the same disk (ARGS="--mib 256 --rounds 2")
bench-export: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/export.js $(ARGS)

bench-scale: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/cluster/create-scale.js

# The web console with 1,000 instances in Chromium: bundle size, first rows drawn, the daemon's memory (ARGS="N")
bench-web: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/web-console.js $(ARGS)

# A Prometheus scrape of /metrics with 100 instances, 6 of them running, against the /proc reads alone (ARGS="N R")
bench-metrics: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/metrics.js $(ARGS)

# Controllers at 100 simulated hosts and 1,000 VMs (bench/cluster/sim.ts; ARGS="HOSTS VMS CONCURRENCY" to change)
bench-cluster: build
	node dist/bench/cluster/sim.js $(ARGS)

# Live migration through Corral and by hand with raw QMP, side by side (bench/migration.ts; ARGS="ROUNDS" to change)
bench-migration: build test-base
	CORRAL_TEST_BASE=$(TEST_BASE) node dist/bench/migration.js $(ARGS)

clean:
	rm -rf dist
