# The two set-up commands are `make run` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: build run test lint clean bench bench-quick soak fuzz

build:
	$(CARGO) build --release

run: build
	scripts/run.sh

# Every test: unit tests, and integration tests that start the real binary against small
# backends and real Tomcat 10 (installed by scripts/tomcat.sh when missing).
test:
	scripts/tomcat.sh install
	scripts/test-deps.sh
	$(CARGO) test -- --test-threads=4

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf work logs

# Benchmarks (not part of `make test`): pounce against nginx, HAProxy, Apache and mod_jk.
bench:
	bench/run.sh --write-results

bench-quick:
	bench/run.sh --quick

# The hardening tests at full size (not part of `make test`; about 15 minutes): 8 GiB each way
# through pounce, 10,000 slowloris connections, 20-second phases of backends dying under load.
soak:
	POUNCE_SOAK_GIB=8 POUNCE_SOAK_SLOWLORIS=10000 POUNCE_SOAK_SECONDS=20 \
		$(CARGO) test --release --test memory --test limits --test under_load --test smuggling -- --test-threads=1 --nocapture

# The cargo-fuzz targets, 10 minutes each (FUZZ_SECONDS to change; nightly toolchain).
fuzz:
	scripts/fuzz.sh
