#!/usr/bin/env bash
# Project-local header bootstrap for Debian/Ubuntu boxes without an ORT dev package.
# Downloads (never installs) libonnxruntime-dev from Debian trixie and nlohmann-json3-dev from the
# machine's own sources, and unpacks them with dpkg -x into DEST (default <repo>/.deps).
# Idempotent: a package already unpacked is skipped. Needs apt-get + dpkg; no root needed for
# download into a private lists dir. Why trixie: bookworm has no onnxruntime package; trixie's
# 1.21 headers (C API 21) work with any newer libonnxruntime (the C API is append-only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/../.deps}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
want_json="${OAT_EDGE_BOOTSTRAP_JSON:-1}"   # 0: nlohmann_json already found by CMake
want_ort="${OAT_EDGE_BOOTSTRAP_ORT:-1}"     # 0: ORT headers already found by CMake

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || {
    echo "bootstrap_deps: '$tool' not found. This bootstrap only works on Debian/Ubuntu." >&2
    echo "Set ONNXRUNTIME_ROOT to an ORT release (include/ + lib/) and install nlohmann-json instead." >&2
    exit 2; }
done

work="$dest/.apt"
mkdir -p "$work/lists/partial" "$work/archives" "$dest/root"

# Private apt state: nothing from trixie reaches the system's own lists or package set.
apt_private() {  # $1 = sources.list file, rest = apt-get args
  local list="$1"; shift
  apt-get -q -o Dir::Etc::SourceList="$list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$work/lists" -o Dir::Cache::Archives="$work/archives" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

fetch_unpack() {  # $1 = sources.list file, $2 = package, $3 = stamp file
  local list="$1" pkg="$2" stamp="$3"
  if [[ -f "$stamp" ]]; then echo "bootstrap_deps: $pkg already unpacked"; return 0; fi
  apt_private "$list" update >/dev/null
  (cd "$work/archives" && rm -f "${pkg}"_*.deb && apt_private "$list" download "$pkg" >/dev/null)
  local deb; deb="$(ls "$work/archives/${pkg}"_*.deb | head -n1)"
  dpkg -x "$deb" "$dest/root"
  echo "$deb" > "$stamp"
  echo "bootstrap_deps: unpacked $(basename "$deb") into $dest/root"
}

if [[ "$want_ort" == 1 ]]; then
  trixie="$work/trixie.list"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f "$keyring" ]] || { echo "bootstrap_deps: $keyring missing (apt-get install debian-archive-keyring)" >&2; exit 3; }
  echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" > "$trixie"
  fetch_unpack "$trixie" libonnxruntime-dev "$dest/.ort.stamp"
  # separate lists dir per source so the two runs don't clobber each other's lists
  rm -rf "$work/lists"; mkdir -p "$work/lists/partial"
fi

if [[ "$want_json" == 1 ]]; then
  sys="$work/system.list"
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -E '^\s*deb ' > "$sys" || true
  if [[ ! -s "$sys" ]] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    # deb822 sources (Debian 12 containers): use them as-is via SourceParts
    apt_json() { apt-get -q -o Dir::State::Lists="$work/lists" -o Dir::Cache::Archives="$work/archives" \
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"; }
    if [[ ! -f "$dest/.json.stamp" ]]; then
      apt_json update >/dev/null
      (cd "$work/archives" && rm -f nlohmann-json3-dev_*.deb && apt_json download nlohmann-json3-dev >/dev/null)
      deb="$(ls "$work/archives"/nlohmann-json3-dev_*.deb | head -n1)"
      dpkg -x "$deb" "$dest/root"; echo "$deb" > "$dest/.json.stamp"
      echo "bootstrap_deps: unpacked $(basename "$deb") into $dest/root"
    else echo "bootstrap_deps: nlohmann-json3-dev already unpacked"; fi
  else
    fetch_unpack "$sys" nlohmann-json3-dev "$dest/.json.stamp"
  fi
fi

echo "bootstrap_deps: ORT headers: $dest/root/usr/include/onnxruntime"
echo "bootstrap_deps: nlohmann:    $dest/root/usr/include/nlohmann"
