# PeerShare — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo
DATA_DIR ?= $(HOME)/.local/share/peershare
PORT ?= 8001
API_PORT ?= 8002
ARGS ?=
# Where cargo builds: CARGO_TARGET_DIR when set (as cargo itself does), else ./target.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
PEERSHARE ?= $(TARGET_DIR)/release/peershare
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 6

.PHONY: build run test conform quickstart-check lint check-boundaries dissector-test netlab-test walkthrough bench soak sim sim-100k sim-provide sim-swarm sim-net demo fuzz fuzz-smoke clean

build:
	$(CARGO) build --release

## A node on sensible defaults: DHT (UDP) and wire (TCP) on port 8001, API on 127.0.0.1:8002.
## Join an existing network with: make run ARGS="--bootstrap HOST:8001"
run: build
	"$(PEERSHARE)" run --data-dir "$(DATA_DIR)" --port $(PORT) --api-port $(API_PORT) $(ARGS)

## Everything CI checks: formatting, clippy, the sans-IO boundary, all tests, then a short
## run of every fuzz target (fuzz-smoke).
test: lint check-boundaries
	$(CARGO) test --all-targets
	@$(MAKE) --no-print-directory fuzz-smoke

## The conformance suite (src/conform/, protocol-spec/conform.md) against another
## implementation: make conform ARGS="HOST:PORT --content ID" (or --api PORT to share a test
## file through a PeerShare API on this machine). Exit status 0: every case passed.
conform: build
	"$(PEERSHARE)" conform $(ARGS)

## The README's quickstart, as written, $(RUNS) times in a row (tools/quickstart/check.py).
RUNS ?= 100
quickstart-check: build
	python3 tools/quickstart/check.py --runs $(RUNS) --bin "$(PEERSHARE)"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## The shape of the tree (tools/check_boundaries.py): sans-IO cores, layered modules without
## import cycles, no source file over 800 lines outside its tests.
check-boundaries:
	@tools/check-boundaries.sh

## The Wireshark dissector (tools/wireshark/) under tshark: spec vectors, reassembly, a live
## capture of three nodes. Part of `make test`; says SKIPPED without tshark or capture rights.
dissector-test:
	$(CARGO) test --test dissector -- --nocapture

## NAT traversal on emulated NATs (tools/netlab/netlab.sh: network namespaces, iptables
## routers, miniupnpd for NAT-PMP): every pair of {public, EIM, port-restricted, symmetric,
## NAT-PMP} as seeder x leecher downloads a file; prints how each connection was set up, and
## checks that port mappings are renewed and removed on SIGTERM. Needs root; part of `make test`
## (which says SKIPPED without root).
## The LAN lab too (tools/netlab/netlab.sh up-lan): LAN discovery on two NATed LANs and an
## isolated IPv6 one; prints the time from start to first LAN peer.
## And the shapes lab (tools/netlab/netlab.sh up-shapes, issue 20): an office behind one
## router, double NAT behind an endpoint-independent and a symmetric CGN, IPv6 sites behind
## stateful firewalls; a 2 MiB download per shape, with strategy, set-up and download times.
netlab-test:
	$(CARGO) test --test netlab -- --nocapture
	$(CARGO) test --test netlab_lan -- --nocapture
	$(CARGO) test --test netlab_shapes -- --nocapture

## protocol-spec/walkthrough.md: one real session of three nodes on loopback (run with
## PEERSHARE_KEYLOG, so that their secure sessions can be opened), captured with dumpcap and
## explained packet by packet. Needs root (or the right to capture on lo); builds the release
## binary. `make test` checks that the page still matches the decoder.
walkthrough:
	CARGO="$(CARGO)" python3 tools/walkthrough/generate.py $(ARGS)

## Benchmarks (figures, not pass/fail), side by side with libtorrent, curl from nginx, raw
## SHA-256 and loopback TCP: first the secure session alone (examples/secure_bench.rs: AEAD
## ChaChaPoly against AES-GCM, handshakes per second on one core, added time to first byte),
## then DHT lookup latency, idle cost, 1 GiB and swarm transfers, memory,
## a swarm behind a rate-limited seeder, 4 limited seeders to 1 leecher, rates against limits;
## then folders (tools/bench/folders.py): a pack of 10,000 x 50 KB files 1 -> 1 against
## tar|nc and libtorrent, 1 -> 8 against libtorrent, adding it against find | xargs sha256sum,
## and v2 of it (5% of the files changed) on a node with v1 (bytes fetched). Exits 1 if a
## received folder differs from its input by a byte. install-deps.sh installs the anchors
## (python3-libtorrent, nginx-light, curl, iperf3, netcat-openbsd, tar) if missing.
bench: build
	tools/bench/install-deps.sh
	$(CARGO) run --release --quiet --example secure_bench
	PEERSHARE_BIN="$(abspath $(PEERSHARE))" python3 tools/bench/bench.py all

## Soak (tools/soak/README.md): 60 real nodes on loopback for 30 minutes, with churn (SIGKILL
## and restart on the same data dir), continuous downloads checked byte for byte, a flooder of
## garbage and a lying peer; RSS, file descriptors and threads of every node over time. Fails
## on a panic, a wrong byte, or growth over 5% after warm-up. Not part of `make test` (too
## long); a short run: make soak ARGS="--nodes 20 --minutes 3". Output in target/soak/.
soak: build
	PEERSHARE_BIN="$(abspath $(PEERSHARE))" python3 tools/soak/soak.py $(ARGS)

## The DHT in a deterministic simulator: 10,000 nodes, with and without 30% dead nodes (one
## join: the 30% scenario continues the network of the other). Its nodes run on every core
## (--threads 0); the report is the same on any number of threads.
sim:
	$(CARGO) run --release --bin peershare-sim -- --threads 0 $(ARGS)

## The same at 100,000 nodes (issue 21: near the size of IPFS's public DHT). The nodes join
## 8 ms apart, so the join (800 virtual seconds) stays within one bucket-refresh interval
## (15 minutes) as the 10,000-node run's 200 s do: at 20 ms the early nodes would refresh
## every bucket twice more while the rest join. The join is nearly all of the work, and the
## default --dead 0,0.3 joins once for both scenarios: about 7 GiB and 14 minutes of CPU
## (README "Measured"), spread over every core. ARGS="--dead 0" for one;
## ARGS="--loss 0.05 --lookups 500".
sim-100k:
	$(CARGO) run --release --bin peershare-sim -- --nodes 100000 --join-interval 8 --threads 0 $(ARGS)

## Providing at scale in the DHT simulator (dht.md section 10.1): 10,000 nodes; reprovide
## sweeps of 1,000, 10,000 and 100,000 items against one announce lookup per item, where the
## records land, and first provide (about 10 minutes). ARGS="--nodes 2000 --loss 0.05".
sim-provide:
	$(CARGO) run --release --bin peershare-sim -- provide $(ARGS)

## The transfer engine in a deterministic swarm simulator: 1 seeder (2.5 MB/s up) and 500
## leechers, 100 MiB, rarest-first with and without super-seeding (about 2 minutes).
sim-swarm:
	$(CARGO) run --release --bin peershare-sim -- swarm $(ARGS)

## Whole nodes (the node core the binary runs: DHT, transfers, NAT traversal) in a
## deterministic simulator: 1,000 nodes, 50 contents of 3 MiB, 300 downloads, 10% of the nodes
## crashing and restarting, 30% behind NATs, 1% loss (about half a minute). ARGS="--nodes 50".
sim-net:
	$(CARGO) run --release --bin peershare-sim -- net $(ARGS)

## A small network on loopback showing the whole flow (grows with the transfer work).
demo: build
	PEERSHARE_BIN="$(PEERSHARE)" tools/demo.sh

## Coverage-guided fuzzing (tools/fuzz/: cargo-fuzz and libFuzzer, on the stable toolchain):
## builds every target, runs each for FUZZ_SECONDS (one at a time), and prints per target the
## executions, coverage (cov/ft), corpus and crashes; a crash fails it and leaves the input in
## tools/fuzz/artifacts/. ARGS="--merge" also minimises what was found into the committed
## corpus; ARGS="--runs N" runs N executions instead; ARGS="TARGET..." runs only those.
## Needs cargo-fuzz (cargo install --locked cargo-fuzz).
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz/run.sh $(ARGS)

## Every fuzz target for FUZZ_SMOKE_SECONDS over the committed corpus, so the targets keep
## building and finding nothing. Part of `make test`; says SKIPPED without cargo-fuzz (CI
## sets PEERSHARE_REQUIRE_FUZZ=1, which makes that a failure).
fuzz-smoke:
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) tools/fuzz/run.sh

clean:
	$(CARGO) clean
