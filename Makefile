GO      ?= go
BIN     ?= bin
PKGS    := ./...

.PHONY: build test lint run bench fuzz stress clean

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

clean:
	rm -rf $(BIN)
