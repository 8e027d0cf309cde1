GO      ?= go
BIN     ?= bin
PKGS    := ./...

.PHONY: build test lint run run-fleet bench bench-fleet fuzz stress clean

## build: compile every package and the binaries into ./bin
build:
	$(GO) build $(PKGS)
	$(GO) build -o $(BIN)/ ./cmd/...

## test: the whole suite with the race detector (the CI command)
test:
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

## lint: go vet and a gofmt check
lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## run: build relay, supervisor and the demo TTS server, send a request through the tunnel, show the status
run:
	BIN=$(BIN) bash scripts/demo.sh

## run-fleet: three relays in one fleet (etcd; FLEET_PROVIDER=automanaged for none), a supervisor at the first, requests through the others
run-fleet:
	BIN=$(BIN) bash scripts/fleet-demo.sh

## bench: relay and supervisor as real processes against the direct upstream and a bare WebSocket, one table (see cmd/tunnel-bench)
bench:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(BIN)/tunnel-bench -bin $(BIN) $(BENCHFLAGS)

## bench-fleet: three relays in one automanaged fleet (no etcd): the cost of a hop between nodes, then a node killed under load (see cmd/tunnel-bench)
bench-fleet:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(BIN)/tunnel-bench -bin $(BIN) -fleet 3 $(BENCHFLAGS)

## fuzz: run each fuzz target for FUZZTIME (their seed corpora also run in make test)
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./messages/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzSessionFrames$$' -fuzztime $(FUZZTIME) ./actors/relay/session/
	$(GO) test -run '^$$' -fuzz '^FuzzConnectionFrames$$' -fuzztime $(FUZZTIME) ./actors/connection/
	$(GO) test -run '^$$' -fuzz '^FuzzTunnelFrames$$' -fuzztime $(FUZZTIME) ./supervisor/

## stress: the load test under network faults, 60 s at the high failure rate
stress:
	$(GO) run ./cmd/tunnel-stress --failures=high --duration=60

clean:
	rm -rf $(BIN)
