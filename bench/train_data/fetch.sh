#!/usr/bin/env bash
# Fetch extra training media (videos and a few photographs) for the tokenizer.
#
#   bench/train_data/fetch.sh [DEST]      (default DEST: ~/.cache/tokcodec/train-extra)
#
# The shared corpus (../shared/corpus) has 8 training videos (2,607 frames as
# training reads them); these 31 files add 6,512 more (training reads at most
# 1,200 frames of a video) of other content: classroom and lab footage, phone
# video and photos, webcams, faces, an underwater shot, a city at night, a
# 1906 film, cartoons, 3D renders. Every file ships inside a package of an
# ordinary registry: 11 Debian packages, one PyPI wheel and one npm tarball
# (MANIFEST.tsv's package column: NAME for Debian, pypi:NAME==VERSION,
# npm:NAME@VERSION; the path is inside the unpacked package). Train only:
# none of it is an eval clip. Idempotent: files already present with the
# right checksum are kept. Prints one line per file and exits non-zero if any
# file is missing at the end. Needs: apt-get and dpkg-deb, python3 with pip,
# npm (each only for its registry's files).
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

unpack() { # package -> its files under $WORK/x/PACKAGE
  local out="$WORK/x/$1" dl="$WORK/dl/$1"
  mkdir -p "$out" "$dl"
  case "$1" in
    pypi:*) "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary :all: "${1#pypi:}" -d "$dl" >/dev/null 2>&1 &&
            "${PYTHON:-python3}" -m zipfile -e "$dl"/*.whl "$out" ;;
    npm:*)  (cd "$dl" && npm pack --silent "${1#npm:}" >/dev/null 2>&1) && tar -xzf "$dl"/*.tgz -C "$out" ;;
    *)      (cd "$dl" && apt-get download -qq "$1" >/dev/null 2>&1) && dpkg-deb -x "$dl"/*.deb "$out" ;;
  esac
  local rc=$?
  rm -rf "$dl"
  return $rc
}

if [ -n "$pkgs" ]; then
  if echo "$pkgs" | grep -qv ':'; then apt-get update -qq >/dev/null 2>&1 || true; fi
  for pkg in $pkgs; do
    unpack "$pkg" || echo "could not download package $pkg" >&2
  done
  while IFS=$'\t' read -r name sha pkg path _; do
    [ "$name" = name ] && continue
    ok "$name" "$sha" || { [ -f "$WORK/x/$pkg/$path" ] && cp "$WORK/x/$pkg/$path" "$DEST/$name"; } || true
  done < "$HERE/MANIFEST.tsv"
fi

bad=0
while IFS=$'\t' read -r name sha pkg path content licence; do
  [ "$name" = name ] && continue
  if ok "$name" "$sha"; then printf '%-42s %s\n' "$name" "$content"; else echo "MISSING  $name (package $pkg)" >&2; bad=1; fi
done < "$HERE/MANIFEST.tsv"
exit $bad
