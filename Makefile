# The two set-up commands are `make run` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: build run test lint clean bench bench-quick soak fuzz

build:
	$(CARGO) build --release

run: build
	scripts/run.sh

# Every test: unit tests, and integration tests that start the real binary against small
# backends, real Tomcat 10 and (the status page) headless Chromium; scripts/test-deps.sh
# installs tomcat10, chromium, chromium-driver, haproxy and the other tools when they are missing.
test:
	scripts/test-deps.sh
	$(CARGO) test -- --test-threads=4

# The fuzz targets are a separate package built against the crate: checked here too.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	cd fuzz && RUSTFLAGS="--cfg fuzzing" $(CARGO) check --quiet

clean:
	$(CARGO) clean
	rm -rf work logs

# Benchmarks (not part of `make test`): pounce against nginx, HAProxy, Apache and mod_jk.
bench:
	bench/run.sh --write-results

bench-quick:
	bench/run.sh --quick

# The hardening tests at full size (not part of `make test`; about 20 minutes): 8 GiB each way
# through pounce, 10,000 slowloris connections (and 10,000 half TLS handshakes), 20-second
# phases of backends dying under load; then testssl.sh against pounce's TLS (ECDSA and RSA).
soak:
	POUNCE_SOAK_GIB=8 POUNCE_SOAK_SLOWLORIS=10000 POUNCE_SOAK_SECONDS=20 \
		$(CARGO) test --release --test memory --test limits --test under_load --test smuggling --test tls_hostile -- --test-threads=1 --nocapture
	scripts/testssl.sh
	KEY=rsa scripts/testssl.sh

# The cargo-fuzz targets, 10 minutes each (FUZZ_SECONDS to change; nightly toolchain).
fuzz:
	scripts/fuzz.sh
