#!/usr/bin/env bash
# Build the hotspot-agent Debian package for one architecture with dpkg-deb:
#     deploy/debian/build-deb.sh ARCH VERSION [OUTDIR]      ARCH: amd64 | arm64
# The agent and its dependencies go into their own environment, /opt/hotspot-agent/venv, for the
# target's Python (Debian 12 / Raspberry Pi OS bookworm: python3.11). Every dependency is a wheel
# for the target's platform (`pip --platform ... --only-binary=:all:`), so the arm64 package is built
# here without running anything arm64. Needs: python3 with pip (the project's .venv will do),
# dpkg-deb, network access to PyPI (or a wheel cache in PIP_FIND_LINKS).
set -euo pipefail

arch=${1:?usage: build-deb.sh amd64|arm64 VERSION [OUTDIR]}
version=${2:?usage: build-deb.sh amd64|arm64 VERSION [OUTDIR]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${3:-$root/dist}
py=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$root/.venv/bin/python" ] && py=$root/.venv/bin/python
pyver=3.11  # the target's Python: Debian 12 and Raspberry Pi OS bookworm
case $arch in
  amd64) platforms=(manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64) ;;
  arm64) platforms=(manylinux2014_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64) ;;
  *) echo "build-deb.sh: ARCH must be amd64 or arm64, not $arch" >&2; exit 2 ;;
esac
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "build-deb.sh: $version is not a Debian version" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/hotspot-agent_${version}_$arch
venv=/opt/hotspot-agent/venv
site=$stage$venv/lib/python$pyver/site-packages

# The project's own wheel (pure Python; built from a copy so the checkout gets no build/ dir), then
# it and its dependencies for the target platform.
mkdir "$work/src"
cp -r "$root/agent" "$root/collector" "$root/pyproject.toml" "$root/README.md" "$root/LICENSE" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$py" -m pip wheel -q --no-deps -w "$work/wheel" "$work/src"
"$py" -m pip install -q --no-compile --target "$site" --implementation cp --python-version "$pyver" \
  --abi "cp${pyver/./}" --abi abi3 --abi none "${platforms[@]/#/--platform=}" --platform=any \
  --only-binary=:all: "$work"/wheel/*.whl
rm -rf "$site/bin"   # console scripts pointing at this machine's Python; ours follow below

# A venv as `python3.11 -m venv` makes it, for the target's interpreter.
mkdir -p "$stage$venv/bin"
ln -s /usr/bin/python$pyver "$stage$venv/bin/python"
ln -s python "$stage$venv/bin/python3"
ln -s python "$stage$venv/bin/python$pyver"
ln -s lib "$stage$venv/lib64"
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n' "$pyver" > "$stage$venv/pyvenv.cfg"
for cmd in hotspot-agent:agent.cli hotspot-collector:collector.cli; do
  printf '#!%s/bin/python\nimport sys\nfrom %s import main\nsys.exit(main())\n' "$venv" "${cmd#*:}" \
    > "$stage$venv/bin/${cmd%%:*}"
  chmod 0755 "$stage$venv/bin/${cmd%%:*}"
done
mkdir -p "$stage/usr/bin"
ln -s $venv/bin/hotspot-agent "$stage/usr/bin/hotspot-agent"

# systemd unit, sysusers, the ping sysctl, the config (a conffile), the docs.
install -D -m 0644 "$root/deploy/hotspot-agent.service" "$stage/lib/systemd/system/hotspot-agent.service"
install -D -m 0644 "$root/deploy/hotspot-agent.sysusers.conf" "$stage/usr/lib/sysusers.d/hotspot-agent.conf"
install -D -m 0644 "$root/deploy/60-hotspot-agent-ping.conf" "$stage/usr/lib/sysctl.d/60-hotspot-agent-ping.conf"
install -D -m 0640 "$root/config.example.yaml" "$stage/etc/hotspot-agent/config.yaml"
install -D -m 0644 "$root/config.example.yaml" "$stage/usr/share/hotspot-agent/config.example.yaml"
install -D -m 0644 "$root/LICENSE" "$stage/usr/share/doc/hotspot-agent/copyright"

mkdir -p "$stage/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
echo /etc/hotspot-agent/config.yaml > "$stage/DEBIAN/conffiles"
size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: hotspot-agent
Version: $version
Architecture: $arch
Maintainer: hotspot-monitor <hotspot-monitor@localhost>
Installed-Size: $size_kib
Depends: python$pyver, systemd (>= 247), iputils-ping
Recommends: iw
Suggests: iperf3
Section: net
Priority: optional
Description: hotspot-monitor agent: measures a public wifi site's broadband line
 Measures bandwidth, latency, DNS, HTTP and wifi at a public wifi site and exposes the results as
 Prometheus metrics on port 9591, or pushes them by remote write. Runs as the hotspot-agent system
 user under a hardened systemd unit; its configuration is /etc/hotspot-agent/config.yaml.
CONTROL

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/hotspot-agent_${version}_$arch.deb" >/dev/null
echo "$out/hotspot-agent_${version}_$arch.deb"
