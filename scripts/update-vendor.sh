#!/usr/bin/env bash
# Refresh the dashboard's chart library, shipped inside the package (no CDN at run time):
# fetch the pinned uPlot release from the npm registry, copy its browser build, stylesheet
# and licence into src/tickcast/static/vendor/, rewrite vendor/README.md and print the
# sha256 of every file. Usage: scripts/update-vendor.sh [VERSION]   (default: the pin below)
set -euo pipefail

NAME=uplot
VERSION="${1:-1.6.32}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/src/tickcast/static/vendor"
FILES=(dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE)

command -v npm >/dev/null || { echo "update-vendor: npm is required" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack checks the tarball against the registry's integrity hash before writing it.
(cd "$work" && npm pack --silent "$NAME@$VERSION" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work"
license="$(cd "$work/package" && node -p 'require("./package.json").license')"
packed="$(cd "$work/package" && node -p 'require("./package.json").version')"
[ "$packed" = "$VERSION" ] || { echo "update-vendor: got $packed, wanted $VERSION" >&2; exit 1; }

mkdir -p "$DEST"
for file in "${FILES[@]}"; do
  cp "$work/package/$file" "$DEST/$(basename "$file")"
done

tar_sha="$(sha256sum "$tarball" | cut -d' ' -f1)"
{
  echo "# Vendored browser libraries"
  echo
  echo "The dashboard loads these files from this folder, next to \`index.html\`, so it works"
  echo "offline and when opened from disk. Do not edit them: run \`scripts/update-vendor.sh"
  echo "[VERSION]\`, which rewrites this file."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| name | uPlot (npm package \`$NAME\`) |"
  echo "| version | $VERSION |"
  echo "| license | $license (see \`LICENSE\`) |"
  echo "| source | npm registry, \`npm pack $NAME@$VERSION\`; upstream https://github.com/leeoniya/uPlot |"
  echo "| tarball sha256 | \`$tar_sha\` |"
  echo
  echo "| file | from the package | sha256 |"
  echo "|---|---|---|"
  for file in "${FILES[@]}"; do
    sum="$(sha256sum "$DEST/$(basename "$file")" | cut -d' ' -f1)"
    echo "| \`$(basename "$file")\` | \`$file\` | \`$sum\` |"
  done
} >"$DEST/README.md"

echo "$NAME $VERSION ($license)"
echo "tarball  $tar_sha"
(cd "$DEST" && sha256sum "${FILES[@]##*/}")
