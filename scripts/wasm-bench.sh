#!/usr/bin/env bash
# WASM benchmarks in headless Chromium (release build), printed next to nothing else: compare with
# the native figures of `proxyscope bench` (trace) and `cargo bench -p proxyscope-core --bench
# ipvs_sched` (schedulers). Targets: trace within 2x of native; >= 2 M scheduling decisions/s.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/web/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=600
for t in wasm_ipvs wasm_trace; do
  cargo test --release -p proxyscope-core --target wasm32-unknown-unknown --test "$t" -- --include-ignored --nocapture 2>&1 \
    | grep -E '^wasm:|test result|FAILED|panicked' || true
done
