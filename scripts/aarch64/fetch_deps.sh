#!/usr/bin/env bash
# Everything the aarch64 build and its emulated tests need, fetched into DEST (default
# <repo>/.deps/aarch64) without touching the system's package set, except the cross compiler:
#   toolchain  g++-aarch64-linux-gnu        apt-get install (root or sudo; skipped when present)
#   qemu/      qemu-aarch64 from Debian trixie (QEMU 10, static): bookworm's 7.2 crashes inside
#              the aarch64 ONNX Runtime's dlopen, so it is unpacked here with apt-get download + dpkg -x
#   ort/       libonnxruntime.so from PyPI's onnxruntime aarch64 wheel (downloaded and unzipped, not
#              installed); the version is the host venv's, so both sides run the same ORT
#   sysroot/   (with --python) an arm64 Debian root holding python3.11, libpython3.11-dev's headers,
#              numpy and onnxruntime for aarch64: what the wheel is cross-built against and runs in
# Idempotent: each piece is skipped when its stamp file exists. Knobs (environment):
#   OAT_EDGE_AARCH64_ORT=1.32.0   ORT version (default: the venv's onnxruntime, else 1.32.0)
#   OAT_EDGE_SKIP_APT=1           never call apt-get install (the cross compiler is already there)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
want_python=0
[[ "${1:-}" == --python ]] && { want_python=1; shift; }
dest="${1:-$repo/.deps/aarch64}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
PY="${PY:-$repo/.venv/bin/python}"
log() { printf '[aarch64 deps] %s\n' "$*"; }
die() { printf 'aarch64 deps: %s\n' "$*" >&2; exit 1; }

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || die "'$tool' not found: this script needs a Debian/Ubuntu machine (it fetches Debian packages)"
done
[[ -x "$PY" ]] || die "no $PY: run scripts/setup.sh first (pip downloads the aarch64 wheels)"

# ---- 1. cross compiler (the only thing installed system-wide)
if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  [[ "${OAT_EDGE_SKIP_APT:-0}" == 1 ]] && die "aarch64-linux-gnu-g++ missing and OAT_EDGE_SKIP_APT=1: apt-get install g++-aarch64-linux-gnu"
  if [[ $(id -u) == 0 ]]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    die "need g++-aarch64-linux-gnu but am not root and have no sudo: install it, then re-run"
  fi
  log "apt-get install g++-aarch64-linux-gnu"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends g++-aarch64-linux-gnu
fi

# ---- private apt state: other suites and architectures never reach the system's lists
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$keyring" ]] || die "$keyring missing (apt-get install debian-archive-keyring)"
apt_fetch() {  # $1 = suite, $2 = arch, $3 = unpack dir, rest = packages: download + dpkg -x, install nothing
  local suite="$1" arch="$2" into="$3"; shift 3
  local work="$dest/.apt/$suite-$arch"
  mkdir -p "$work/lists/partial" "$work/archives" "$work/cache" "$into"
  echo "deb [arch=$arch signed-by=$keyring] http://deb.debian.org/debian $suite main" > "$work/sources.list"
  local opts=(-q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o Dir::Cache::Archives="$work/archives"
    -o Dir::State::status=/dev/null -o APT::Architecture="$arch" -o APT::Architectures="$arch" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update >/dev/null
  (cd "$work/archives" && apt-get "${opts[@]}" download "$@" >/dev/null)
  local p deb
  for p in "$@"; do
    deb="$(ls "$work/archives/${p%%:*}"_*.deb | head -n1)"
    dpkg -x "$deb" "$into"
  done
}

# ---- 2. qemu-aarch64 (QEMU 10, statically linked, from trixie)
if [[ ! -f "$dest/.qemu.stamp" ]]; then
  log "fetching trixie's qemu-user (amd64) into $dest/qemu"
  apt_fetch trixie amd64 "$dest/qemu" qemu-user
  [[ -x "$dest/qemu/usr/bin/qemu-aarch64" ]] || die "trixie's qemu-user has no usr/bin/qemu-aarch64"
  "$dest/qemu/usr/bin/qemu-aarch64" --version | head -n1 > "$dest/.qemu.stamp"
fi
log "$(cat "$dest/.qemu.stamp")"

# ---- 3. the aarch64 ONNX Runtime library, from PyPI's wheel
ort_version="${OAT_EDGE_AARCH64_ORT:-$("$PY" -c 'import onnxruntime as o; print(o.__version__)' 2>/dev/null || echo 1.32.0)}"
pip_aarch64() {  # $1 = download dir, rest = requirements: aarch64 CPython 3.11 wheels, not installed
  local into="$1"; shift
  "$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version 3.11 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
    -d "$into" "$@"
}
if [[ "$(cat "$dest/.ort.stamp" 2>/dev/null)" != "$ort_version" ]]; then
  log "fetching onnxruntime $ort_version (aarch64 wheel) into $dest/ort"
  rm -rf "$dest/ort" && mkdir -p "$dest/wheels"
  pip_aarch64 "$dest/wheels" "onnxruntime==$ort_version"
  "$PY" - "$dest/wheels" "$ort_version" "$dest/ort" <<'EOF'
import pathlib, sys, zipfile
wheels, version, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
whl = next(wheels.glob(f"onnxruntime-{version}-*aarch64*.whl"))
with zipfile.ZipFile(whl) as z:
    libs = [n for n in z.namelist() if "/capi/libonnxruntime.so" in n]
    if not libs:
        sys.exit(f"{whl.name} holds no capi/libonnxruntime.so*")
    out.mkdir(parents=True)
    for n in libs:
        (out / pathlib.Path(n).name).write_bytes(z.read(n))
    # one stable name for the presets and scripts, whatever the version
    (out / "libonnxruntime.so").symlink_to(pathlib.Path(libs[0]).name)
EOF
  echo "$ort_version" > "$dest/.ort.stamp"
fi
log "onnxruntime $(cat "$dest/.ort.stamp"): $(ls "$dest"/ort/libonnxruntime.so*)"

# ---- 4. (--python) an arm64 Debian root with python3.11 and the runtime's wheels
if [[ "$want_python" == 1 && ! -f "$dest/.sysroot.stamp" ]]; then
  log "fetching bookworm arm64 python3.11 + libpython3.11-dev into $dest/sysroot"
  rm -rf "$dest/sysroot" "$dest/.site.stamp"  # the site dir below lives inside it
  # python3.11 and the shared libraries its standard library modules load
  apt_fetch bookworm arm64 "$dest/sysroot" libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 \
    libbz2-1.0 liblzma5 libuuid1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libcrypt1 \
    libdb5.3 libnsl2 libtirpc3 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 \
    libgssapi-krb5-2 media-types python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev
  [[ -x "$dest/sysroot/usr/bin/python3.11" ]] || die "no usr/bin/python3.11 in the unpacked arm64 packages"
  date -u +%FT%TZ > "$dest/.sysroot.stamp"
fi
# numpy and onnxruntime for aarch64, plus the test runner (pure Python), into one site dir
site_wheels="onnxruntime==$ort_version numpy==$("$PY" -c 'import numpy; print(numpy.__version__)') pytest pygments"
if [[ "$want_python" == 1 && "$(cat "$dest/.site.stamp" 2>/dev/null)" != "$site_wheels" ]]; then
  site="$dest/sysroot/site"
  rm -rf "$site"
  rm -rf "$dest/site-wheels" && mkdir -p "$site" "$dest/site-wheels"
  pip_aarch64 "$dest/site-wheels" "onnxruntime==$ort_version" "numpy==$("$PY" -c 'import numpy; print(numpy.__version__)')"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dest/site-wheels" pytest pluggy iniconfig packaging pygments
  "$PY" - "$dest/site-wheels" "$site" <<'EOF'
import pathlib, sys, zipfile
wheels, site = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for whl in sorted(wheels.glob("*.whl")):
    zipfile.ZipFile(whl).extractall(site)
EOF
  echo "$site_wheels" > "$dest/.site.stamp"
fi
[[ "$want_python" == 1 ]] && log "arm64 python root: $dest/sysroot (site-packages in $dest/sysroot/site)"
log "ok: $dest"
