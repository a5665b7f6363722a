#!/bin/sh
# Cold migration of a libvirt VM with a vTPM, state encrypted with libvirt's
# vTPM secret, from a source host to a destination host that holds a guardian.
#
#   source host:       libvirt-cold-migration.sh source      VM DEST_GUARDIAN OUTDIR
#   destination host:  libvirt-cold-migration.sh destination VM INDIR
#
# Before: on the destination, 'guardctl guardian create dest' (once) and
# 'guardctl guardian export dest --public', copied to the source and imported
# there with 'guardctl guardian import dest --public dest.guardian.xml'; and
# the other way round, the source's public guardian imported on the
# destination, which accepts bundles only from owners it knows. The source
# host's own guardian (SOURCE_GUARDIAN, default UntrustedGuardian, the name
# the README's quick start creates) owns the bundle. Copy OUTDIR to the
# destination by any channel: the bundle reveals nothing, and the domain XML
# holds no secret.
#
# Environment: GUARDCTL, VIRSH (commands to run), SWTPM_DIR (libvirt's
# swtpm state root, default /var/lib/libvirt/swtpm), SWTPM_USER (tss).
set -eu
GUARDCTL=${GUARDCTL:-guardctl}
VIRSH=${VIRSH:-virsh}
SWTPM_DIR=${SWTPM_DIR:-/var/lib/libvirt/swtpm}
SWTPM_USER=${SWTPM_USER:-tss}
SOURCE_GUARDIAN=${SOURCE_GUARDIAN:-UntrustedGuardian}

usage() { echo "usage: $0 source VM DEST_GUARDIAN OUTDIR | destination VM INDIR" >&2; exit 2; }

# secret_of VM: the UUID of the libvirt secret the VM's vTPM is encrypted
# with (empty when its state is not encrypted).
secret_of() {
	$VIRSH dumpxml "$1" | sed -n 's/.*<encryption secret=.\([0-9a-fA-F-]*\).*/\1/p' | head -n 1
}

case "${1:-}" in
source)
	[ $# -eq 4 ] || usage
	vm=$2 dest=$3 out=$4
	mkdir -p "$out"
	uuid=$($VIRSH domuuid "$vm")
	# A cold move: the VM must be off so that its TPM state is complete.
	if [ "$($VIRSH domstate "$vm")" != "shut off" ]; then
		$VIRSH shutdown "$vm"
		for i in $(seq 60); do [ "$($VIRSH domstate "$vm")" = "shut off" ] && break; sleep 1; done
	fi
	[ "$($VIRSH domstate "$vm")" = "shut off" ] || { echo "$vm did not shut down" >&2; exit 1; }
	$VIRSH dumpxml --inactive "$vm" > "$out/$vm.xml"
	secret=$(secret_of "$vm")
	if [ -n "$secret" ]; then
		# The secret's value is the passphrase swtpm derives the state key
		# from; it travels inside the bundle, never beside it, and never on
		# a command line (where ps shows it).
		umask 077
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		pass=$tmp/passphrase
		$VIRSH secret-get-value "$secret" | base64 -d > "$pass"
		$VIRSH secret-dumpxml "$secret" > "$out/$vm.secret.xml"
		$GUARDCTL vtpm wrap "$SWTPM_DIR/$uuid/tpm2" --owner "$SOURCE_GUARDIAN" \
			--guardian "$dest" --passphrase-file "$pass" --vm-name "$vm" --out "$out/$vm.vtpm" --force
	else
		$GUARDCTL vtpm wrap "$SWTPM_DIR/$uuid/tpm2" --owner "$SOURCE_GUARDIAN" \
			--guardian "$dest" --vm-name "$vm" --out "$out/$vm.vtpm" --force
	fi
	echo "$uuid" > "$out/$vm.uuid"
	;;
destination)
	[ $# -eq 3 ] || usage
	vm=$2 in=$3
	uuid=$(cat "$in/$vm.uuid")
	# The state must be in place before libvirt first starts the VM: with no
	# state there, libvirt would make a new TPM and the guest would lose
	# what it sealed (BitLocker and LUKS ask for recovery).
	if [ -f "$in/$vm.secret.xml" ]; then
		# The passphrase goes from guardctl to virsh in a file of a private
		# directory, removed on exit (--file --plain: the raw bytes, never
		# on a command line).
		umask 077
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		pass=$tmp/passphrase
		# guardctl's notes name the passphrase file, which is deleted on
		# exit: they are kept back, and what replaces them is said below
		# (its errors are shown whole).
		if ! notes=$($GUARDCTL vtpm unwrap "$in/$vm.vtpm" --to "$SWTPM_DIR/$uuid/tpm2" --chown "$SWTPM_USER" \
			--passphrase-out "$pass" --force 2>&1); then
			printf '%s\n' "$notes" >&2
			exit 1
		fi
		printf '%s\n' "$notes" | grep -v -F "$tmp" >&2 || true
		secret=$(sed -n 's/.*<uuid>\([0-9a-fA-F-]*\)<\/uuid>.*/\1/p' "$in/$vm.secret.xml")
		$VIRSH secret-define "$in/$vm.secret.xml"
		$VIRSH secret-set-value "$secret" --file "$pass" --plain
		echo "the vTPM passphrase is in libvirt secret $secret, which libvirt gives swtpm; its temporary file is deleted" >&2
	else
		$GUARDCTL vtpm unwrap "$in/$vm.vtpm" --to "$SWTPM_DIR/$uuid/tpm2" --chown "$SWTPM_USER" --force
	fi
	$VIRSH define "$in/$vm.xml"
	$VIRSH start "$vm"
	;;
*)
	usage
	;;
esac
