# The two set-up commands are `make run` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: build run test lint clean bench bench-quick

build:
	$(CARGO) build --release

run: build
	scripts/run.sh

# Every test: unit tests, and integration tests that start the real binary against small
# backends and real Tomcat 10 (installed by scripts/tomcat.sh when missing).
test:
	scripts/tomcat.sh install
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
