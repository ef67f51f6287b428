# The two commands a newcomer runs: `make demo` and `make test`.
SWIFT ?= swift
APT_PACKAGES := libdnnl-dev libturbojpeg0-dev libpng-dev libxml2-dev zlib1g-dev libfreetype-dev fonts-dejavu-core pkg-config libopenmpi-dev openmpi-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build test demo bench clean

# Debian packages the build links against (oneDNN, libjpeg-turbo, libpng, libxml2, zlib, Open MPI) and mpirun; installed only if missing.
deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

build: deps
	$(SWIFT) build -c release

# Release mode: the parity tests run whole SSD300 forward/backward passes. The suite runs twice:
# with oneDNN dispatching for this CPU, and capped at AVX2 (the most common tier), so an
# AVX-512 machine also checks the AVX2 kernels and layouts.
test: deps
	$(SWIFT) build -c release --build-tests
	@echo "== test suite, oneDNN dispatching natively =="
	$(SWIFT) test -c release --skip-build --disable-swift-testing
	@echo "== test suite, oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) =="
	ONEDNN_MAX_CPU_ISA=AVX2 $(SWIFT) test -c release --skip-build --disable-swift-testing

demo: build
	.build/release/ssd demo --output demo-output --overwrite

bench: build
	.build/release/ssd bench

clean:
	rm -rf .build
