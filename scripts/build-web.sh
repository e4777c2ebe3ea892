#!/usr/bin/env bash
# Build the web explainer into web/dist (static files: index.html, JS glue, optimised .wasm).
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli equal to Cargo.lock's wasm-bindgen,
# wasm-opt from npm `binaryen` (e2e/node_modules/.bin; Debian's is too old), node (size report).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/e2e/node_modules/.bin:$PATH"
OUT=web/dist
PROFILE=wasm-release
LOCKED=${LOCKED---locked}

cargo build -p proxyscope-web --bin proxyscope-web --target wasm32-unknown-unknown --profile "$PROFILE" $LOCKED
rm -rf "$OUT" && mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" --out-name proxyscope_web \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$PROFILE/proxyscope-web.wasm"
if command -v wasm-opt >/dev/null; then
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types \
    "$OUT/proxyscope_web_bg.wasm" -o "$OUT/proxyscope_web_bg.opt.wasm"
  # For size analysis only (not served): the same optimisation keeping the function names, so
  # `twiggy top|dominators|monos "$NAMED_WASM"` can say which code the shipped bytes are.
  if [[ -n "${NAMED_WASM:-}" ]]; then
    wasm-opt -Oz -g --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types \
      "$OUT/proxyscope_web_bg.wasm" -o "$NAMED_WASM"
  fi
  mv "$OUT/proxyscope_web_bg.opt.wasm" "$OUT/proxyscope_web_bg.wasm"
else
  echo "build-web: wasm-opt not on PATH (run: cd e2e && npm ci); shipping unoptimised wasm" >&2
fi
cp index.html "$OUT/"

# Size budget: .wasm + JS < 400 kB brotli (issue 5; 1 MB gzip is the hard ceiling, reported too).
node -e '
const fs = require("fs"), zlib = require("zlib"), dir = process.argv[1];
let raw = 0, br = 0, gz = 0;
for (const f of ["proxyscope_web_bg.wasm", "proxyscope_web.js"]) {
  const b = fs.readFileSync(dir + "/" + f);
  const c = zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  const g = zlib.gzipSync(b, { level: 9 }).length;
  raw += b.length; br += c; gz += g;
  console.log(`build-web: ${f}: ${b.length} bytes, ${c} bytes brotli, ${g} bytes gzip`);
}
console.log(`build-web: total ${raw} bytes, ${br} bytes brotli (budget 400000), ${gz} bytes gzip (ceiling 1000000)`);
if (gz > 1000000) { console.error("build-web: over the 1 MB gzip ceiling"); process.exit(1); }
if (br > 400000) { console.error("build-web: WARNING: over the 400 kB brotli budget"); if (process.env.SIZE_BUDGET_STRICT === "1") process.exit(1); }
' "$OUT"
