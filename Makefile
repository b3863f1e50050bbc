# twinchain. The two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
DATA  ?= data
HTTP  ?= 127.0.0.1:8080
MQTT  ?= 127.0.0.1:1883
PROGRAMS := $(patsubst %/main.go,./%,$(wildcard twin-service/main.go edge-agent/main.go firmware-sim/main.go))

.PHONY: all build run test test-short lint bench bench-service bench-influx clean web

all: build

build: web
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(PROGRAMS)

# web builds the dashboard's front-end assets from web/src (needs Node; else the committed web/dist).
web:
	@if [ -x web/build.sh ]; then web/build.sh; fi

# run starts twin-service with everything embedded and a small simulated fleet.
run: build
	@scripts/run.sh "$(BIN)" "$(DATA)" "$(HTTP)" "$(MQTT)"

# test installs and starts what the tests need, then runs every test.
test: web
	@scripts/check-web-dist.sh
	@set -euo pipefail; eval "$$(scripts/test-deps.sh)"; \
	  $(GO) vet ./... && \
	  $(GO) test -count=1 -timeout 45m ./... && \
	  (cd chaincode && $(GO) vet ./... && $(GO) test -count=1 ./...) && \
	  scripts/fuzz-short.sh

test-short:
	$(GO) test -short -count=1 ./...
	cd chaincode && $(GO) test -short -count=1 ./...

ERRCHECK ?= $(HOME)/.cache/twinchain/bin/errcheck

lint:
	$(GO) vet ./...
	cd chaincode && $(GO) vet ./...
	@[ -x $(ERRCHECK) ] || GOBIN=$(dir $(ERRCHECK)) GOFLAGS=-mod=mod $(GO) install github.com/kisielk/errcheck@v1.30.0
	$(ERRCHECK) -ignoretests -exclude .errcheck-exclude ./...
	cd chaincode && $(ERRCHECK) -ignoretests -exclude ../.errcheck-exclude ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd chaincode && $(GO) test -run '^$$' -bench . -benchmem ./...

# bench-service: the whole service at RATE msg/s from GATEWAYS gateways for
# SECONDS, against the bare broker in the same run (docs/performance.md).
RATE     ?= 1000
GATEWAYS ?= 1000
SECONDS  ?= 60
bench-service: build
	@scripts/bench-service.sh "$(BIN)" "$(RATE)" "$(GATEWAYS)" "$(SECONDS)"

# bench-influx: twin-service's InfluxDB backend against Telegraf on the same
# load through Mosquitto into one influxd (docs/performance.md, "Against
# Telegraf"): INFLUX_RATE host samples/s from INFLUX_GATEWAYS gateways for
# INFLUX_SECONDS (under ~40 s: it queues for a stopped consumer), then
# drained by each; SAMPLES per message (default "1 10").
INFLUX_RATE     ?= 3000
INFLUX_GATEWAYS ?= 500
INFLUX_SECONDS  ?= 15
bench-influx: build
	@scripts/bench-influx.sh "$(BIN)" "$(INFLUX_RATE)" "$(INFLUX_GATEWAYS)" "$(INFLUX_SECONDS)"

clean:
	rm -rf $(BIN)
