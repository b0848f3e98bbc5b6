#!/usr/bin/env bash
# Fetch extra training media (videos and a few photographs) for the tokenizer.
#
#   bench/train_data/fetch.sh [DEST]      (default DEST: ~/.cache/tokcodec/train-extra)
#
# The shared corpus (../shared/corpus) has 8 training videos (2,607 frames as
# training reads them); these 27 files from 11 Debian packages add 4,003 more
# (training reads at most 1,200 frames of a video) of other content: classroom
# and lab footage, phone video and photos, a webcam, an underwater shot, a
# city at night, a 1906 film, cartoons, 3D renders. Every file ships inside a
# Debian package, so it comes through the ordinary package client. Train
# only: none of it is an eval clip. Idempotent: files already present with
# the right checksum are kept. Prints one line per file and exits non-zero if
# any file is missing at the end. Needs: apt-get, dpkg-deb.
set -euo pipefail
DEST=${1:-$HOME/.cache/tokcodec/train-extra}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$DEST"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

ok() { # name sha -> 0 if DEST has the file with that checksum
  [ -f "$DEST/$1" ] && [ "$(sha256sum "$DEST/$1" | cut -d' ' -f1)" = "$2" ]
}

# packages with at least one missing file
pkgs=$(while IFS=$'\t' read -r name sha pkg path _; do
  [ "$name" = name ] && continue
  ok "$name" "$sha" || echo "$pkg"
done < "$HERE/MANIFEST.tsv" | sort -u)

if [ -n "$pkgs" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  for pkg in $pkgs; do
    (cd "$WORK" && apt-get download -qq "$pkg" >/dev/null 2>&1) || { echo "could not download Debian package $pkg" >&2; continue; }
    dpkg-deb -x "$WORK"/"$pkg"_*.deb "$WORK/x"
    rm -f "$WORK"/"$pkg"_*.deb
  done
  while IFS=$'\t' read -r name sha pkg path _; do
    [ "$name" = name ] && continue
    ok "$name" "$sha" || { [ -f "$WORK/x/$path" ] && cp "$WORK/x/$path" "$DEST/$name"; } || true
  done < "$HERE/MANIFEST.tsv"
fi

bad=0
while IFS=$'\t' read -r name sha pkg path content licence; do
  [ "$name" = name ] && continue
  if ok "$name" "$sha"; then printf '%-42s %s\n' "$name" "$content"; else echo "MISSING  $name (Debian package $pkg)" >&2; bad=1; fi
done < "$HERE/MANIFEST.tsv"
exit $bad
