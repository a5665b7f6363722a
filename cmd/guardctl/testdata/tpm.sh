# tpm.sh write|read STATE KEYSPEC
#
# Starts swtpm on STATE (a directory, or a linear state file or block device)
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
if [ -f "$state" ] || [ -b "$state" ]; then tpmstate="backend-uri=file://$state"; else tpmstate="dir=$state"; fi
log=$(mktemp)
pid=0 port=0
trap 'if [ $pid != 0 ]; then swtpm_ioctl --tcp 127.0.0.1:$((port+1)) -s >/dev/null 2>&1; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; kill $pid 2>/dev/null; wait $pid 2>/dev/null; fi; rm -f $log' EXIT
# Scripts run in parallel: a port another test took meanwhile is retried.
up=0
for try in 1 2 3 4 5 6 7 8 9 10; do
	port=$(( 20000 + ( $(od -An -tu2 -N2 /dev/urandom) * 2 ) % 30000 ))
	ss -ltn | grep -q ":$port \|:$((port+1)) " && continue
	: > $log
	swtpm socket --tpm2 --tpmstate "$tpmstate" $keyarg --flags not-need-init,startup-clear \
		--server type=tcp,port=$port,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port+1)),bindaddr=127.0.0.1 \
		--log file=$log,level=1 2>>$log &
	pid=$!
	for i in $(seq 50); do
		if ! kill -0 $pid 2>/dev/null; then
			wait $pid 2>/dev/null
			pid=0
			grep -q "Address already in use" $log && continue 2
			echo "swtpm exited: $(tail -2 $log)" >&2
			exit 1
		fi
		if ss -ltn | grep -q "127.0.0.1:$((port+1)) "; then
			# the listener may be another test's swtpm: ours must still be up
			sleep 0.3
			if kill -0 $pid 2>/dev/null; then up=1; break 2; fi
			continue
		fi
		sleep 0.1
	done
	echo "swtpm did not start" >&2
	exit 1
done
[ $up = 1 ] || { echo "no free loopback ports for swtpm" >&2; exit 1; }
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
