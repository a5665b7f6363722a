#!/bin/sh
# Move a Proxmox VE VM's TPM state (its tpmstate0 volume: swtpm's linear file
# backend, not encrypted) to another node that holds a guardian.
#
#   source node:       proxmox-linear-state.sh source      TPMSTATE_VOLUME_PATH DEST_GUARDIAN BUNDLE
#   destination node:  proxmox-linear-state.sh destination BUNDLE TPMSTATE_VOLUME_PATH
#
# The VM must be stopped (qm stop VMID). Find the volume's path with
# 'pvesm path <storage>:vm-<vmid>-disk-N' (the tpmstate0 line of
# 'qm config VMID'). On the destination, create the VM's tpmstate0 volume
# first (it is a 4 MiB volume) and give its path.
#
# Before, once: each node imports the other's public guardian ('guardctl
# guardian export NAME --public' on one, 'guardctl guardian import NAME
# --public FILE' on the other): the source wraps for the destination's, and
# the destination accepts bundles only from an owner it knows.
set -eu
GUARDCTL=${GUARDCTL:-guardctl}
case "${1:-}" in
source)
	[ $# -eq 4 ] || { echo "usage: $0 source VOLUME DEST_GUARDIAN BUNDLE" >&2; exit 2; }
	$GUARDCTL vtpm wrap "$2" --owner "${SOURCE_GUARDIAN:-$(hostname)}" --guardian "$3" --out "$4" --force
	;;
destination)
	[ $# -eq 3 ] || { echo "usage: $0 destination BUNDLE VOLUME" >&2; exit 2; }
	# --force: the new, empty volume is replaced, and kept as a .bak
	$GUARDCTL vtpm unwrap "$2" --to "$3" --force
	;;
*)
	echo "usage: $0 source VOLUME DEST_GUARDIAN BUNDLE | destination BUNDLE VOLUME" >&2
	exit 2
	;;
esac
