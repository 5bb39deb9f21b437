#!/usr/bin/env bash
# Sourced by the device scripts: when the machine has no PCRE2 (the device image lacks it), points
# pkg-config and the loader at the Debian packages unpacked in .devdeps/root (`apt-get download
# libpcre2-dev libpcre2-8-0 ...` + `dpkg -x`, carried with the run) and sets `extra` to the CMake
# flags that name them; otherwise `extra` is empty.
extra=()
if ! pkg-config --exists libpcre2-8 2>/dev/null && [ -d .devdeps/root ]; then
  root=$PWD/.devdeps/root
  mkdir -p /tmp/devdeps-pc
  for f in "$root"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
    sed "s|^prefix=.*|prefix=$root/usr|" "$f" >/tmp/devdeps-pc/"$(basename "$f")"
  done
  export PKG_CONFIG_PATH=/tmp/devdeps-pc:${PKG_CONFIG_PATH:-}
  export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  extra=(-DCROSSBATCH_PCRE2_INCLUDE="$root/usr/include" -DCROSSBATCH_PCRE2_LIB="$root/usr/lib/x86_64-linux-gnu/libpcre2-8.so")
fi
