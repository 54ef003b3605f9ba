#!/usr/bin/env bash
# An aarch64 Python 3.11 with numpy, Pillow and regex for the end-to-end check of run.sh, unpacked
# from Debian's arm64 packages into a private folder (nothing is installed on the host).  Needs
# `dpkg --add-architecture arm64 && apt-get update` once.  Usage: sysroot.sh DIR
set -euo pipefail
dest=${1:?usage: sysroot.sh DIR}
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "sysroot.sh: run 'dpkg --add-architecture arm64 && apt-get update' first" >&2
  exit 2
fi
packages="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11 libpython3.11-dev
  python3-numpy libblas3 liblapack3 libgfortran5 libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libcrypt1
  libuuid1 libssl3 python3-pil libjpeg62-turbo libtiff6 libwebp7 libwebpdemux2 libwebpmux3 liblcms2-2
  libopenjp2-7 libimagequant0 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libdeflate0 libjbig0 liblerc4
  libzstd1 libfreetype6 libpng16-16 libbrotli1 libraqm0 libfribidi0 libharfbuzz0b libglib2.0-0
  libgraphite2-3 libpcre2-8-0 libmount1 libselinux1 libblkid1 python3-regex"
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
(cd "$debs" && apt-get download -q -o APT::Sandbox::User=root $(for p in $packages; do echo "$p:arm64"; done) >/dev/null)
mkdir -p "$dest"
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$dest"; done
echo "aarch64 Python in $dest"
