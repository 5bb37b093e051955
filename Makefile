# dbshift: the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what is missing first (MariaDB server and backup tool, Rust crates).

CARGO ?= cargo
DIR ?= .dbshift/lab

.PHONY: deps build demo lab lab-down test test-faults lint unit bench clean

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --bin dbshift

## The main job on the embedded default: a lab of real MariaDB servers under a write load, an
## encrypted green built from a hot snapshot, verified, switched to and rolled back with the
## downtime probe; a report of what clients saw. The demo's lab is deleted at the end.
demo: build
	./target/release/dbshift demo

## A lab to try the commands by hand (2 clusters, each a writer and 2 replicas), then its inventory.
lab: build
	./target/release/dbshift --dir $(DIR) lab up --clusters 2 --replicas 2
	./target/release/dbshift --dir $(DIR) inventory
	@echo
	@echo "The lab keeps running. Try: ./target/release/dbshift --dir $(DIR) lab status --output json"
	@echo "Move a writer and see what clients saw: ./target/release/dbshift --dir $(DIR) switchover lab-1 --to lab-1-2 --yes --probe"
	@echo "Stop it with: make lab-down"

lab-down:
	./target/release/dbshift --dir $(DIR) lab down --purge

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Everything CI runs: formatting, lints, unit tests and the tests on real servers.
test: deps lint
	$(CARGO) test --workspace

## The fault and crash matrix alone (docs/faults.md); `make test` runs it too.
test-faults: deps
	$(CARGO) test -p dbshift-ops --test faults
	$(CARGO) test -p dbshift-cli --test faults_crash --test faults_ca --test faults_failover

unit:
	$(CARGO) test --workspace --lib --bins

bench: deps
	bash bench/run.sh

clean:
	$(CARGO) clean
