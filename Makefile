# The two commands a newcomer needs: `make run` and `make test`. Everything else is set-up they trigger.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.test-installed
WEB_DEPS := web/node_modules/.package-lock.json
ISSUER_DEPS := docs/issuers/node_modules/.package-lock.json
BENCH_INSTALLED := $(VENV)/.bench-installed
BENCH_DEPS := bench/node_modules/.package-lock.json
WEB_LOG := .pytest-web.log

.PHONY: run test unit lint bench clean system-deps cluster
.DEFAULT_GOAL := run

# Debian packages the tests need; installed only when missing (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v php >/dev/null || missing="$$missing php-cli"; \
	php -r 'exit(function_exists("curl_init") ? 0 : 1);' 2>/dev/null || missing="$$missing php-curl"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the tests:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# AutobahnJS for the page, from npm at the version and checksum package-lock.json pins.
$(WEB_DEPS): web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error

# warn: refusals, denials, revocations and problems, each with its reason. Crossbar logs ~5 info
# lines per session, which costs ~30 % of the session rate (docs/benchmarks.md); LOGLEVEL=info shows them.
LOGLEVEL ?= warn
# config-proxies.json: the scale-out node (proxy workers in front of the router worker), docs/scaling.md;
# PROFILE=production: config-production.json (no demo, JWT_SECRET required, docs/operations.md)
PROFILE ?= demo
ifeq ($(PROFILE),production)
CONFIG ?= config-production.json
endif
CONFIG ?= config.json

## run: create the venv, install, and start the router (demo on http://127.0.0.1:8080)
# One open file per WebSocket: the soft limit (often 1,024) is raised to the hard limit first; at a
# soft limit of 1,024 the router held 1,010 sessions and dropped the next connections with no log line.
# Beyond the hard limit: LimitNOFILE= in the systemd unit (docs/operations.md#open-files).
run: $(INSTALLED) $(WEB_DEPS)
	@echo "crossbar-jwt: starting the router with $(CONFIG) on port 8080 (log level $(LOGLEVEL); make run LOGLEVEL=info logs every session)"
	@echo "crossbar-jwt: open files: $$(ulimit -Hn) (one per session; the hard limit, docs/operations.md#open-files)"
	ulimit -n $$(ulimit -Hn) 2>/dev/null || echo "crossbar-jwt: the open-file limit stays $$(ulimit -n)"; \
	$(BIN)/crossbar start --cbdir .crossbar --config $(CONFIG) --loglevel $(LOGLEVEL)

## cluster: three nodes on this machine joined by router links, sharing one Redis (started when none
## answers on CLUSTER_REDIS_PORT); configs in .cluster/ (docs/scaling.md#several-nodes); Ctrl-C stops all
CLUSTER_DIR := .cluster
CLUSTER_NODES ?= 3
CLUSTER_REDIS_PORT ?= 6379
cluster: $(INSTALLED) $(WEB_DEPS)
	@command -v redis-server >/dev/null || { echo "make cluster needs redis-server (Debian: apt-get install redis-server)" >&2; exit 1; }
	@$(BIN)/python -m authenticator secret >/dev/null  # the development secret, which every node reads
	$(BIN)/python -m authenticator cluster-config --config $(CONFIG) --nodes $(CLUSTER_NODES) --out $(CLUSTER_DIR) \
		--redis-url redis://127.0.0.1:$(CLUSTER_REDIS_PORT)/0
	@# One process group: Ctrl-C reaches every node (and the Redis started here) at once.
	@if $(BIN)/python -c 'import socket,sys; socket.create_connection(("127.0.0.1", $(CLUSTER_REDIS_PORT)), 1)' 2>/dev/null; then \
		echo "cluster: using the Redis on 127.0.0.1:$(CLUSTER_REDIS_PORT)"; \
	else \
		echo "cluster: starting redis-server on 127.0.0.1:$(CLUSTER_REDIS_PORT) (data in $(CLUSTER_DIR))"; \
		redis-server --port $(CLUSTER_REDIS_PORT) --bind 127.0.0.1 --dir $(CLUSTER_DIR) --appendonly yes --loglevel warning & \
	fi; \
	for i in $$(seq 1 $(CLUSTER_NODES)); do \
		$(BIN)/crossbar start --cbdir $(CLUSTER_DIR)/node-$$i/.crossbar --loglevel $(LOGLEVEL) 2>&1 | sed -u "s/^/[node-$$i] /" & \
	done; \
	wait

# The longest test files first (each takes a minute or more with its routers): xdist hands out
# files in the order given, and a long file handed out last kept one process busy after the others
# had finished. pytest collects a file named twice once.
LONG_TEST_FILES := $(addprefix tests/router/test_,python_kit_long_run.py cluster.py cluster_calls.py history.py \
	hostile_clients.py hostile.py load.py request_bodies.py custom_policy.py python_client_kit.py issuer_limits.py)

## test: install the test dependencies (and Debian's redis-server, chromium, php-cli, php-curl and nginx when missing), run the whole suite
test: $(TEST_INSTALLED) $(WEB_DEPS) $(ISSUER_DEPS) $(BENCH_DEPS) system-deps
	$(BIN)/ruff check authenticator tests bench
	@# Much of the suite waits (token lifetimes, deadlines, reconnects), so it runs in three processes
	@# on this 2-core machine (430 s against 537 s with two), a test file each at a time (a file's
	@# routers are shared by its tests), and the browser tests (~220 s, a third of it CPU) beside
	@# them; their output follows. Any non-zero status fails, pytest's 5 (no tests) included.
	@rm -f $(WEB_LOG); \
	$(BIN)/pytest -p no:twisted tests/web > $(WEB_LOG) 2>&1 & web=$$!; \
	$(BIN)/pytest -n 3 --dist loadfile $(LONG_TEST_FILES) tests/unit tests/component tests/router; core=$$?; \
	wait $$web; web_status=$$?; \
	echo "---- browser tests (tests/web), run beside the ones above ----"; cat $(WEB_LOG); \
	echo "make test: pytest exit statuses: unit+component+router $$core, browser $$web_status"; \
	[ $$core -eq 0 ] && [ $$web_status -eq 0 ]

## bench: measure sessions/s, latency, fan-out, verification cost and memory against the static-ticket
## ceiling, stock Crossbar and socket.io (a report in docs/benchmarks.md, never a test), then what
## recovery and presence cost, and a router restart under 2,000 kit clients; ~12 min
bench: $(BENCH_INSTALLED) $(BENCH_DEPS)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	@# recovery and presence (docs/recovery.md): their reports are printed, docs/benchmarks.md quotes them
	$(BIN)/python -m bench.history_cost
	$(BIN)/python -m bench.history_fanout
	$(BIN)/python -m bench.presence_cost
	@# a router restart under 2,000 JS-kit clients (docs/benchmarks.md#restart-with-many-clients; 5,000: drop --clients)
	$(BIN)/python -m bench.restart --clients 2000
	@# 20,000 idle sessions on one router worker, one event each (docs/benchmarks.md#concurrency-20000-idle-sessions-on-one-router-worker)
	$(BIN)/python -m bench.idle_sessions

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[router,bench]'
	touch $@

# AutobahnJS, socket.io and jsonwebtoken for the load generator (make bench, and the load and
# restart tests) and the socket.io comparison server; TypeScript for the JS kit type-check test.
$(BENCH_DEPS): bench/package.json bench/package-lock.json
	npm ci --prefix bench --no-audit --no-fund --loglevel=error

## unit: only the pure-core tests (no router, no browser)
unit: $(TEST_INSTALLED)
	$(BIN)/pytest tests/unit

lint: $(TEST_INSTALLED)
	$(BIN)/ruff check authenticator tests bench
	$(BIN)/ruff format --check authenticator tests bench

# The router is the [router] extra: `pip install crossbar-jwt` alone is the Python client kit (docs/clients.md).
# The venv with a current pip (Crossbar 26 needs Python 3.11 or newer).
define make_venv
@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	{ echo "Crossbar 26 needs Python 3.11 or newer; run: make PYTHON=python3.11 ..." >&2; exit 1; }
test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
$(BIN)/python -m pip install --quiet --upgrade pip
endef

$(INSTALLED): pyproject.toml constraints.txt
	$(make_venv)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[router]'
	touch $@

# One pip run for the router and the test packages (a second run re-resolves everything, ~10 s).
$(TEST_INSTALLED): pyproject.toml constraints.txt
	$(make_venv)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[router,test]'
	touch $(INSTALLED) $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# jsonwebtoken for the README's Node issuer example, which the tests run.
$(ISSUER_DEPS): docs/issuers/package.json docs/issuers/package-lock.json
	npm ci --prefix docs/issuers --no-audit --no-fund --loglevel=error
