# guardctl: `make test` installs what the tests need (when it can) and runs
# them all; .ci/run runs exactly this.

GO       ?= go
TARGETS  := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

.PHONY: all build test deps unit lint crossbuild print-targets fuzz bench docs completions package pkgtest

all: build

# A build records its version (the tag, when there is one), commit and date:
# 'guardctl version' prints them.
VERSION  ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o guardctl ./cmd/guardctl

# deps installs the tools the tests drive on Debian or Ubuntu when run as root,
# and elsewhere checks for them: openssl, certtool and keytool read and write
# PFX files; xmllint validates key protectors against docs/keyprotector.xsd;
# swtpm and tpm2-tools read vTPM state back; wine64 runs the Windows build
# (mingw-w64 builds its ProcessPrng shim); ansible-core runs the collection;
# man-db reads the installed man pages; jq reads -o json in docs/migrate.md's
# CI pipeline, which TestMigrationGuide runs; qemu-utils (qemu-img),
# qemu-system-common (qemu-storage-daemon) and fuse3 read, write and serve
# qcow2 TPM volumes as Proxmox VE 9 keeps them.
DEB_PACKAGES := openssl libxml2-utils swtpm swtpm-tools tpm2-tools iproute2 gnutls-bin \
	default-jre-headless ansible-core wine wine64 gcc-mingw-w64-x86-64-win32 man-db jq \
	qemu-utils qemu-system-common fuse3
TOOLS := openssl xmllint swtpm tpm2_nvread certtool keytool ansible-playbook wine x86_64-w64-mingw32-gcc jq \
	qemu-img qemu-storage-daemon fusermount3
deps:
	@echo "== [$(T)] deps: checking for $(TOOLS)"
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "== deps: apt-get install (missing:$$missing)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
		else echo "missing:$$missing; install the Debian packages $(DEB_PACKAGES): the tests need them" >&2; exit 1; fi; \
	fi

# Each step of make test says what it does and when, in seconds since make
# started ($(T) in a recipe).
STARTED := $(shell date +%s)
T = $$(( $$(date +%s) - $(STARTED) ))s

unit:
	@echo "== [$(T)] unit: go test ./... (testscript end to end, swtpm, Wine, crash and concurrency tests)"
	$(GO) test -count=1 ./...

lint:
	@echo "== [$(T)] lint: gofmt"
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	@echo "== [$(T)] lint: go vet"
	$(GO) vet ./...
	@echo "== [$(T)] lint: staticcheck (the first run downloads and builds it)"
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

crossbuild:
	@n=0; for t in $(TARGETS); do \
		n=$$((n+1)); \
		echo "== [$(T)] crossbuild $$n/$(words $(TARGETS)): GOOS=$${t%/*} GOARCH=$${t#*/} go build ./cmd/guardctl (the first build for a target compiles the standard library too)"; \
		CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -trimpath -o /dev/null ./cmd/guardctl || exit 1; \
	done

# fuzz runs every fuzz target briefly (FUZZTIME each); the committed seed
# corpora also run as ordinary tests in unit.
FUZZTIME ?= 3s
FUZZ_TARGETS := ./guardian:FuzzDecodePFX ./guardian:FuzzPFXStructure ./guardian:FuzzParsePublic \
	./keyprotector:FuzzParse ./vtpm:FuzzDecrypt ./vtpm:FuzzReadBundle
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "== [$(T)] fuzz: go test -fuzz $${t#*:} -fuzztime $(FUZZTIME) $${t%:*}"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%:*}" 2>&1) || { echo "$$out"; exit 1; }; \
	done

# bench times guardctl against the equivalent openssl pipelines and against
# the machine's RSA-2048 bound (docs/performance.md was made with it).
bench:
	sh bench/compare.sh

# package builds the .deb and .rpm packages in dist/ with nfpm
# (packaging/nfpm.yaml): the Linux binary for GOARCH, the man pages of
# docs/man, and the bash, zsh and fish completions. The version is the last
# tag's (0.0.0 before the first).
# dist/ is also named in packaging/nfpm.yaml.
DIST        := dist
GOARCH      ?= $(shell $(GO) env GOARCH)
PKG_VERSION ?= $(patsubst v%,%,$(shell git describe --tags --abbrev=0 2>/dev/null || echo 0.0.0))
NFPM        := $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
completions:
	@echo "== [$(T)] completions: $(DIST)/guardctl, bash, zsh and fish completion scripts"
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/guardctl ./cmd/guardctl
	sh packaging/completions.sh $(DIST)/completions

package: completions
	@echo "== [$(T)] package: .deb and .rpm with nfpm $(PKG_VERSION) (the first run downloads and builds nfpm)"
	GOARCH=$(GOARCH) PKG_VERSION=$(PKG_VERSION) $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/
	GOARCH=$(GOARCH) PKG_VERSION=$(PKG_VERSION) $(NFPM) package --config packaging/nfpm.yaml --packager rpm --target $(DIST)/
	cd $(DIST) && sha256sum *.deb *.rpm > checksums.txt && cat checksums.txt

# pkgtest installs the .deb on this machine (as root; CI is root on Debian),
# checks the binary, man pages and completions, and removes it again.
pkgtest: package
	@echo "== [$(T)] pkgtest: install the .deb, check man guardctl, completions, guardctl version; remove it"
	sh packaging/test-deb.sh $(DIST)/guardctl_$(PKG_VERSION)_$(GOARCH).deb
	@LC_ALL=C grep -a -q 'Apache-2.0' $(DIST)/guardctl-$(PKG_VERSION)-1.*.rpm || { echo "pkgtest: the .rpm's header does not name its license" >&2; exit 1; }
	@echo "pkgtest: the .rpm's header names Apache-2.0"

# docs regenerates the man pages (docs/man) and the Markdown command
# reference (docs/reference) from the command tree; TestReferenceDocs, in
# unit, fails when the committed ones are out of date.
docs:
	GUARDCTL_UPDATE_DOCS=1 $(GO) test ./cmd/guardctl -run '^TestReferenceDocs$$' -count=1

print-targets:
	@echo $(TARGETS)

# The unit tests come last, so that the output ends with go test's summary.
test: deps lint crossbuild fuzz pkgtest unit
	@echo "== [$(T)] make test: all passed"
