# tpm.sh write|read STATE KEYSPEC
#
# Starts swtpm on STATE (a directory, or a linear file if it ends in .img)
# on loopback ports, with --key KEYSPEC (none: plain state), then either
# writes a random NV canary, a persistent key at 0x81000001, and records the
# EK name (write), or checks all three are the same (read). swtpm is shut
# down over its control channel and then killed by its PID. Prints
# canary-read-ok when read succeeds.
set -u
op=$1 state=$2 keyspec=$3
rec=${TPMREC:-$state}
keyarg=""
[ "$keyspec" = none ] || keyarg="--key $keyspec"
case $state in
*.img) tpmstate="backend-uri=file://$state" ;;
*) tpmstate="dir=$state" ;;
esac
port=0
for try in 1 2 3 4 5 6 7 8 9 10 11 12; do
	p=$(( 20000 + ( $$ * 7 + try * 131 + $(od -An -tu2 -N2 /dev/urandom) ) % 30000 ))
	if ! ss -ltn | grep -q ":$p \|:$((p+1)) "; then port=$p; break; fi
done
[ $port != 0 ] || { echo "no free ports" >&2; exit 1; }
log=$(mktemp)
swtpm socket --tpm2 --tpmstate "$tpmstate" $keyarg --flags not-need-init,startup-clear \
	--server type=tcp,port=$port,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port+1)),bindaddr=127.0.0.1 \
	--log file=$log,level=1 &
pid=$!
trap 'swtpm_ioctl --tcp 127.0.0.1:$((port+1)) -s >/dev/null 2>&1; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f $log' EXIT
up=0
for i in $(seq 50); do
	kill -0 $pid 2>/dev/null || { echo "swtpm exited: $(tail -2 $log)" >&2; exit 1; }
	ss -ltn | grep -q "127.0.0.1:$((port+1)) " && { up=1; break; }
	sleep 0.1
done
[ $up = 1 ] || { echo "swtpm did not start" >&2; exit 1; }
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
if [ "$op" = write ]; then
	printf 'canary-%s' "$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')" > $rec.canary
	tpm2_nvdefine 0x01500016 -C o -s 64 -a "ownerread|ownerwrite|authread|authwrite" >/dev/null || exit 1
	tpm2_nvwrite 0x01500016 -C o -i $rec.canary || exit 1
	ctx=$(mktemp)
	tpm2_createprimary -Q -C o -c $ctx || exit 1
	tpm2_evictcontrol -Q -C o -c $ctx 0x81000001 || exit 1
	rm -f $ctx
	if tpm2_getcap handles-persistent | grep -q 0x81010001; then
		tpm2_readpublic -c 0x81010001 | grep '^name:' > $rec.ek
	else
		: > $rec.ek
	fi
else
	n=$(wc -c < $rec.canary)
	out=$(mktemp)
	tpm2_nvread 0x01500016 -C o -s $n -o $out >/dev/null || exit 1
	cmp -s $out $rec.canary || { echo "NV canary differs" >&2; exit 1; }
	rm -f $out
	tpm2_getcap handles-persistent | grep -q 0x81000001 || { echo "persistent handle 0x81000001 is missing" >&2; exit 1; }
	if [ -s $rec.ek ]; then
		tpm2_readpublic -c 0x81010001 | grep '^name:' | cmp -s - $rec.ek || { echo "EK name differs" >&2; exit 1; }
		echo ek-same
	fi
	echo canary-read-ok
fi
