#!/bin/sh
# Move a Proxmox VE VM's TPM state (its tpmstate0 volume: swtpm's linear file
# backend, not encrypted) to another node that holds a guardian.
#
#   source node:       proxmox-linear-state.sh source      VMID DEST_GUARDIAN BUNDLE
#   destination node:  proxmox-linear-state.sh destination BUNDLE VMID
#
# The volume is found as Proxmox keeps it: the tpmstate0 line of 'qm config
# VMID', and 'pvesm path' for it. The VM must be stopped on the source
# (qm shutdown VMID). On the destination, the VM must exist with a tpmstate0
# volume of its own (for example 'qm set VMID --tpmstate0 STORAGE:1,version=v2.0'),
# fresh (all zeros), which the state is written onto. A volume that already
# holds something is replaced only with FORCE=1, and what it held is kept in
# BACKUP_DIR (default: the current directory), 0600.
# Files (directory, NFS or CIFS storage) and block devices (local-lvm, ZFS,
# Ceph: 'pvesm path' names a symbolic link to the device,
# /dev/pve/vm-100-disk-1 -> ../dm-3) both work.
#
# Before, once: each node imports the other's public guardian ('guardctl
# guardian export NAME --public' on one, 'guardctl guardian import NAME
# --public FILE' on the other): the source wraps for the destination's, and
# the destination accepts bundles only from an owner it knows.
#
# Environment: GUARDCTL, QM, PVESM (commands to run), SOURCE_GUARDIAN (the
# source node's own guardian, which owns the bundle; default UntrustedGuardian,
# the name the README's quick start creates).
set -eu
GUARDCTL=${GUARDCTL:-guardctl}
QM=${QM:-qm}
PVESM=${PVESM:-pvesm}

usage() { echo "usage: $0 source VMID DEST_GUARDIAN BUNDLE | destination BUNDLE VMID" >&2; exit 2; }

# tpmstate_path VMID: the file of the VM's tpmstate0 volume.
tpmstate_path() {
	vol=$($QM config "$1" | sed -n 's/^tpmstate0: *\([^,]*\).*/\1/p')
	[ -n "$vol" ] || { echo "VM $1 has no tpmstate0 volume" >&2; exit 1; }
	$PVESM path "$vol"
}

case "${1:-}" in
source)
	[ $# -eq 4 ] || usage
	vmid=$2 dest=$3 bundle=$4
	# A cold move: the VM must be off so that its TPM state is complete.
	[ "$($QM status "$vmid")" = "status: stopped" ] || { echo "VM $vmid is running: qm shutdown $vmid first" >&2; exit 1; }
	volume=$(tpmstate_path "$vmid")
	$GUARDCTL vtpm wrap "$volume" --owner "${SOURCE_GUARDIAN:-UntrustedGuardian}" --guardian "$dest" --out "$bundle" --force
	;;
destination)
	[ $# -eq 3 ] || usage
	bundle=$2 vmid=$3
	volume=$(tpmstate_path "$vmid")
	force=""
	[ "${FORCE:-0}" = 1 ] && force=--force
	$GUARDCTL vtpm unwrap "$bundle" --to "$volume" --backup-dir "${BACKUP_DIR:-.}" $force
	;;
*)
	usage
	;;
esac
