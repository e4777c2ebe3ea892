#!/usr/bin/env bash
# The main job: install what is missing, build the web explainer, and serve it with the built-in
# demo on http://127.0.0.1:8080 (override with LISTEN=ADDR:PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/e2e/node_modules/.bin:$PATH"
bash scripts/setup.sh
bash scripts/build-web.sh
cargo build -p proxyscope --release --locked
exec target/release/proxyscope serve --listen "${LISTEN:-127.0.0.1:8080}" --dir web/dist
