# qsd.sh IMAGE KEYSPEC
#
# Serves the qcow2 IMAGE (a file, or a block device holding qcow2) as
# Proxmox VE 9 does: qemu-storage-daemon exports it through FUSE as a linear
# state file, and swtpm reads it there (tpm.sh read, with KEYSPEC; TPMREC
# names what tpm.sh write recorded). The daemon is stopped at the end.
# Prints fuse-served when the export was up, then tpm.sh's output.
set -u
image=$1 keyspec=$2
driver=file
[ -b "$image" ] && driver=host_device
dir=$(mktemp -d)
mnt=$dir/tpmstate0.fuse
: > $mnt
qemu-storage-daemon --blockdev driver=$driver,node-name=file0,filename=$image \
	--blockdev driver=qcow2,node-name=fmt0,file=file0 \
	--export type=fuse,id=exp0,node-name=fmt0,mountpoint=$mnt,writable=on \
	--pidfile $dir/qsd.pid > $dir/qsd.log 2>&1 &
qsd=$!
trap 'kill $qsd 2>/dev/null; wait $qsd 2>/dev/null; rm -rf $dir' EXIT
for i in $(seq 50); do
	if [ -s $dir/qsd.pid ] && grep -q " $mnt fuse" /proc/mounts; then break; fi
	kill -0 $qsd 2>/dev/null || { echo "qemu-storage-daemon exited: $(cat $dir/qsd.log)" >&2; exit 1; }
	sleep 0.1
done
grep -q " $mnt fuse" /proc/mounts || { echo "the FUSE export did not come up: $(cat $dir/qsd.log)" >&2; exit 1; }
echo fuse-served
sh $TPMSH read $mnt $keyspec
