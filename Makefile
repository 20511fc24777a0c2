# lonelypsd: see README.md.
GO      ?= go
BIN     ?= bin/lonelypsd
PKGS    := ./...
FUZZTIME ?= 20s

.PHONY: all build run test hygiene vet fmt-check unit test-interop fuzz bench bench-zstd clean check-manifests sim-k8s

all: build

# lonelypsd version reports these.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(BUILD_DATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/lonelypsd

## run: a single-node broadcaster on 127.0.0.1:3003, data in ./lonelypsd-data
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/lonelypsd dev

## test: what CI runs: formatting, vet, and every test (fuzz targets run
## over their seed corpus) with the race detector.
test: hygiene fmt-check vet unit

## hygiene: no build output tracked, go.mod/go.sum exactly what the
## imports need, no function outside tests over 100 lines (gofmt puts
## a function's closing brace alone in the first column), and every
## relative link of the Markdown files leads to a file.
hygiene:
	@long=$$(git ls-files '*.go' | grep -v '_test.go$$' | xargs awk 'FNR==1{inf=0} /^(type|var|const|import) /{inf=0} /^func /{ if ($$0 ~ /}$$/) {inf=0} else {s=FNR; n=$$0; inf=1} } inf && /^}/{ if (FNR-s+1>100) print FILENAME": "FNR-s+1" lines: "n; inf=0}'); \
	if [ -n "$$long" ]; then echo "functions over 100 lines (split them):"; echo "$$long"; exit 1; fi
	@bad=$$(git ls-files | while read -r f; do [ -f "$$f" ] && head -c 4 "$$f" | grep -qa -e ELF -e '^MZ' && echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "binaries tracked by git:"; echo "$$bad"; exit 1; fi
	@cp go.mod /tmp/lonelypsd-go.mod.$$$$ && cp go.sum /tmp/lonelypsd-go.sum.$$$$; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/lonelypsd-go.mod.$$$$ || ! cmp -s go.sum /tmp/lonelypsd-go.sum.$$$$; then \
	  echo "go mod tidy changes go.mod/go.sum: run it and commit the result"; \
	  cp /tmp/lonelypsd-go.mod.$$$$ go.mod; cp /tmp/lonelypsd-go.sum.$$$$ go.sum; rm -f /tmp/lonelypsd-go.*.$$$$; exit 1; fi; \
	rm -f /tmp/lonelypsd-go.*.$$$$
	@bad=$$(git ls-files '*.md' | while read -r f; do \
	  grep -o '](\([^)[:space:]]*\))' "$$f" | sed 's/^](//; s/)$$//; s/#.*//' | grep -v -e '^$$' -e '^[a-z][a-z]*:' | \
	  while read -r t; do [ -e "$$(dirname "$$f")/$$t" ] || echo "$$f: $$t"; done; done); \
	if [ -n "$$bad" ]; then echo "Markdown links to files that do not exist:"; echo "$$bad"; exit 1; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

## test-interop: zstd dictionaries and frames against the Python client's
## library, live (needs Debian's python3-zstandard; .ci/run installs it).
test-interop:
	$(GO) test -tags interop -run Interop -count=1 ./api/ws/zstddict/

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## bench: the load generator against a real node (figures in docs/benchmarks.md).
bench: build
	$(GO) run ./cmd/lonelypsbench --server $(BIN) $(BENCHFLAGS)

## bench-zstd: websocket compression of small messages, with and without
## trained dictionaries (figures in docs/benchmarks.md).
bench-zstd:
	$(GO) test -run '^$$' -bench SmallMessages ./api/ws/zstddict/

## check-manifests: validate deploy/kubernetes and deploy/Dockerfile (no cluster needed).
check-manifests:
	bash .ci/check-manifests

## sim-k8s: run the StatefulSet's command lines as local processes (root).
sim-k8s: build
	BIN=$(BIN) bash deploy/local/statefulset-sim.sh

clean:
	rm -rf bin lonelypsd-data
