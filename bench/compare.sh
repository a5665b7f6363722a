#!/bin/sh
# bench/compare.sh: time guardctl against the openssl command pipeline that
# does the same work (the way a user without guardctl would do it), on this
# machine, and print a Markdown table with the ratios; then batch grant
# against the machine's RSA-2048 bound measured in the same run.
#
#   sh bench/compare.sh [ROUNDS] [BATCH]    (defaults 10 and 200)
#
# Needs go, openssl. Writes only into a temporary directory.
set -eu
ROUNDS=${1:-10}
BATCH=${2:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$here"
CGO_ENABLED=0 go build -trimpath -o "$W/guardctl" ./cmd/guardctl
G="$W/guardctl --store $W/store"
printf 'pw' > "$W/pw"

now() { date +%s%N; }
# per_op CMD...: mean milliseconds of ROUNDS runs of a shell snippet
per_op() {
	start=$(now)
	i=0
	while [ $i -lt "$ROUNDS" ]; do
		sh -c "$1" >/dev/null 2>&1 || { echo "failed: $1" >&2; exit 1; }
		i=$((i+1))
	done
	echo $(( ($(now) - start) / ROUNDS / 1000 ))
}
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us/1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a/b }'; }

$G guardian create owner --host h >/dev/null
$G guardian create peer --host h >/dev/null
$G guardian export owner --dir "$W/pfx" --password-file "$W/pw" >/dev/null
O=$W/ossl
mkdir -p "$O"
# openssl's equivalents of a guardian: two self-signed RSA-2048 certificates
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$O/s.key" -out "$O/s.crt" -subj /CN=s -days 3650 -addext keyUsage=digitalSignature 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$O/e.key" -out "$O/e.crt" -subj /CN=e -days 3650 -addext keyUsage=keyEncipherment 2>/dev/null
openssl pkcs12 -export -inkey "$O/s.key" -in "$O/s.crt" -out "$O/s.pfx" -passout pass:pw
openssl pkcs12 -export -inkey "$O/e.key" -in "$O/e.crt" -out "$O/e.pfx" -passout pass:pw
openssl rand 32 > "$O/tk"
openssl pkey -in "$O/e.key" -pubout -out "$O/e.pub" 2>/dev/null
openssl pkeyutl -encrypt -pubin -inkey "$O/e.pub" -in "$O/tk" -out "$O/tk.enc" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256
$G kp new --owner owner --guardian peer --out "$W/vm.kp" >/dev/null

n=0
row() { # name guardctl-snippet openssl-snippet
	g=$(per_op "$2"); o=$(per_op "$3")
	printf '| %s | %s | %s | %s |\n' "$1" "$(ms "$g")" "$(ms "$o")" "$(ratio "$g" "$o")"
}

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3), $(openssl version | cut -d' ' -f1-2)"
echo
echo "| operation | guardctl (ms) | openssl pipeline (ms) | ratio |"
echo "|---|---|---|---|"
row "guardian create (2 RSA-2048 keys, 2 certificates)" \
	"rm -rf $W/c; $W/guardctl --store $W/c guardian create x --host h" \
	"openssl req -x509 -newkey rsa:2048 -nodes -keyout $O/x1.key -out $O/x1.crt -subj /CN=x -days 3650 && openssl req -x509 -newkey rsa:2048 -nodes -keyout $O/x2.key -out $O/x2.crt -subj /CN=x -days 3650"
row "guardian export (2 PFX, AES-256)" \
	"$G guardian export owner --dir $W/e --password-file $W/pw --force" \
	"openssl pkcs12 -export -inkey $O/s.key -in $O/s.crt -out $O/s2.pfx -passout pass:pw && openssl pkcs12 -export -inkey $O/e.key -in $O/e.crt -out $O/e2.pfx -passout pass:pw"
row "guardian import (2 PFX)" \
	"$G guardian import imp --dir $W/pfx --password-file $W/pw --force --signing '' --encryption '' 2>/dev/null || $G guardian import owner2 --signing $W/pfx/owner-signing.pfx --encryption $W/pfx/owner-encryption.pfx --password-file $W/pw --force" \
	"openssl pkcs12 -in $O/s.pfx -passin pass:pw -nodes -out $O/s.pem && openssl pkcs12 -in $O/e.pfx -passin pass:pw -nodes -out $O/e.pem"
row "kp new (owner + 1 guardian)" \
	"$G kp new --owner owner --guardian peer --out $W/n.kp --force" \
	"openssl rand 32 > $O/t && openssl pkeyutl -encrypt -pubin -inkey $O/e.pub -in $O/t -out $O/t1 -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 && openssl pkeyutl -encrypt -pubin -inkey $O/e.pub -in $O/t -out $O/t2 -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 && openssl dgst -sha256 -sign $O/s.key -out $O/g1 $O/s.crt && openssl dgst -sha256 -sign $O/s.key -out $O/g2 $O/e.crt && openssl dgst -sha256 -sign $O/s.key -out $O/g3 $O/t1"
row "kp unwrap (verify, decrypt)" \
	"$G kp unwrap $W/vm.kp --key-out $W/k --force" \
	"openssl dgst -sha256 -verify $O/e.pub -signature $O/g1 $O/s.crt >/dev/null; openssl pkeyutl -decrypt -inkey $O/e.key -in $O/tk.enc -out $O/tk.dec -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256"

# batch grant against the RSA-2048 bound of the work a batch does: 'kp grant
# --yes' (backups kept, every file written atomically and fsynced) over BATCH
# key protectors, against cores / (2 x one Go RSA-2048 PKCS#1 v1.5
# signature): a batch makes two private-key operations per key protector
# (unwrap its transport key, sign its Wrappings; the owner's signature over
# the granted guardian's certificate is made once per batch). The signature
# is timed by BenchmarkSign in the same run on every core at once (so that
# the bound counts the cores the batch gets as well).
fresh_batch() {
	rm -rf "$W/batch"
	mkdir -p "$W/batch"
	i=0
	while [ $i -lt "$BATCH" ]; do cp "$W/vm.kp" "$W/batch/$i.kp"; i=$((i+1)); done
	sync
}
# children_cpu FILE: the CPU time (ms, user and system) of the shell's
# children, from the output of 'times' (which must run in the shell itself).
children_cpu() { awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); printf "%.0f", (u[1]*60 + u[2] + s[1]*60 + s[2]) * 1000 }' "$1"; }
grant_rate() { # extra flags...: "grants per second" "CPU ms per grant" of one kp grant over a fresh batch
	fresh_batch
	times > "$W/times0"
	start=$(now)
	$G kp grant "$W"/batch/*.kp --guardian peer2 --yes "$@" >/dev/null 2>&1 || { echo "kp grant failed" >&2; exit 1; }
	us=$(( ($(now) - start) / 1000 ))
	times > "$W/times1"
	awk -v n="$BATCH" -v us="$us" -v c="$(( $(children_cpu "$W/times1") - $(children_cpu "$W/times0") ))" 'BEGIN { printf "%.0f %.3f", n / (us/1e6), c / n }'
}
$G guardian create peer2 --host h >/dev/null 2>&1
cores=$(nproc)
# The bound and the rate are measured in turns, three times, and the median
# ratio reported: on a shared machine the load moves between measurements.
# sign_ms: "ms per signature" "CPU ms per signature"
sign_ms() { go test -run '^$' -bench '^BenchmarkSign$' -benchtime 1s ./keyprotector | awk '/^BenchmarkSign/ { printf "%.4f %.4f", $3/1e6, $5 }'; }
runs=""
for k in 1 2 3; do
	s1=$(sign_ms); r=$(grant_rate); rn=$(grant_rate --no-backup); s2=$(sign_ms)
	runs="$runs$(echo "$s1 $s2 $r $rn" | awk -v c="$cores" '{ t=c*($1+$3)/2; tc=($2+$4)/2; bound=c*1000/(2*t); printf "%.4f %.0f %.0f %.0f %.3f %.3f %.4f %.3f %.3f\n", t, bound, $5, $7, $5/bound, $7/bound, tc, 2*tc/$6, 2*tc/$8 }')
"
done
median() { printf '%s' "$runs" | sort -n -k"$1" | sed -n 2p | awk -v f="$1" '{ print $f }'; }
sign_t=$(median 1); gobound=$(median 2); rate=$(median 3); rate_nobak=$(median 4); ratio=$(median 5); ratio_nobak=$(median 6)
sign_cpu=$(median 7); cpu_ratio=$(median 8); cpu_ratio_nobak=$(median 9)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
sign=$(openssl speed -seconds 3 -multi "$cores" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { print $6 }' | tail -n 1)
bound=$(awk -v s="$sign" 'BEGIN { printf "%.0f", s / 2 }')
ossl_one=$(per_op "openssl pkeyutl -decrypt -inkey $O/e.key -in $O/tk.enc -out $O/d -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 && openssl pkeyutl -encrypt -pubin -inkey $O/e.pub -in $O/d -out $O/w -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 && openssl dgst -sha256 -sign $O/s.key -out $O/x1 $O/s.crt && openssl dgst -sha256 -sign $O/s.key -out $O/x2 $O/w")
ossl_rate=$(awk -v us="$ossl_one" 'BEGIN { printf "%.0f", 1e6/us }')
echo
echo "| batch grant, $BATCH key protectors, all cores | per second |"
echo "|---|---|"
echo "| guardctl kp grant FILE... --yes (a backup of each file kept), median of 3 | $rate |"
echo "| guardctl kp grant FILE... --yes --no-backup, median of 3 | $rate_nobak |"
echo "| Go RSA-2048 bound of a batch's two private-key operations per key protector: $cores cores / (2 x $sign_t ms, one Go PKCS#1 v1.5 signature on each core while all sign), median of 3 | $gobound |"
echo "| kp grant --yes / Go bound, median of 3 runs each between two timings of the signature | $ratio |"
echo "| kp grant --yes --no-backup / Go bound, the same | $ratio_nobak |"
echo "| the same by CPU time: 2 x $sign_cpu CPU ms per signature / CPU ms per grant (what the batch reaches with the cores to itself), --yes | $cpu_ratio |"
echo "| the same by CPU time, --yes --no-backup | $cpu_ratio_nobak |"
echo "| load average while measuring (1, 5, 15 min) | $load |"
echo "| OpenSSL RSA-2048 bound (openssl speed -multi $cores, $sign signs/s / 2) | $bound |"
echo "| kp grant --yes / OpenSSL bound | $(awk -v r="$rate" -v b="$bound" 'BEGIN { printf "%.2f", r/b }') |"
echo "| openssl pipeline, one key protector at a time | $ossl_rate |"

# The TPM case: a guardian whose keys are in a TPM (a swtpm on loopback
# here, as in the tests), unwrapping one key protector and owning a batch
# grant of BATCH. Every TPM command runs in a salted session with parameter
# encryption, under an H-2 storage key made afresh for each use.
T=$W/tpm
mkdir -p "$T/state"
port=0
for try in 1 2 3 4 5 6 7 8 9 10; do
	p=$(( 20000 + ( $(od -An -tu2 -N2 /dev/urandom) * 2 ) % 30000 ))
	swtpm socket --tpm2 --tpmstate dir="$T/state" --flags not-need-init,startup-clear \
		--server type=tcp,port=$p,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((p+1)),bindaddr=127.0.0.1 2>/dev/null &
	tpid=$!
	sleep 0.5
	if kill -0 $tpid 2>/dev/null; then port=$p; break; fi
done
[ $port != 0 ] || { echo "swtpm did not start" >&2; exit 1; }
trap 'swtpm_ioctl --tcp 127.0.0.1:$((port+1)) -s >/dev/null 2>&1; kill $tpid 2>/dev/null; rm -rf "$W"' EXIT
TG="$W/guardctl --store $T/store --tpm swtpm:host=127.0.0.1,port=$port"
$TG guardian create hosttpm --keys tpm --host h >/dev/null
$G guardian export peer2 --public --dir "$T" >/dev/null
$TG guardian import peer2 --public "$T/peer2.guardian.xml" >/dev/null
$TG kp new --owner hosttpm --no-escrow --out "$T/vm.kp" >/dev/null 2>&1
rounds=$ROUNDS
ROUNDS=3
tpm_create=$(per_op "rm -rf $T/c; $W/guardctl --store $T/c --tpm swtpm:host=127.0.0.1,port=$port guardian create x --keys tpm --host h")
ROUNDS=$rounds
tpm_unwrap=$(per_op "$TG kp unwrap $T/vm.kp --key-out $T/k --force")
file_unwrap=$(per_op "$G kp unwrap $W/vm.kp --key-out $W/k --force")
rm -rf "$T/batch"; mkdir -p "$T/batch"
i=0
while [ $i -lt "$BATCH" ]; do cp "$T/vm.kp" "$T/batch/$i.kp"; i=$((i+1)); done
sync
start=$(now)
$TG kp grant "$T"/batch/*.kp --guardian peer2 --yes >/dev/null 2>&1 || { echo "TPM kp grant failed" >&2; exit 1; }
tpm_us=$(( ($(now) - start) / 1000 ))
echo
echo "| TPM guardian (swtpm $(swtpm --version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n 1) on loopback) | |"
echo "|---|---|"
echo "| guardian create --keys tpm (2 keys generated in the TPM, 2 certificates signed there), ms | $(ms "$tpm_create") |"
echo "| kp unwrap with the TPM guardian, ms (file guardian: $(ms "$file_unwrap")) | $(ms "$tpm_unwrap") |"
echo "| kp grant of $BATCH key protectors owned by the TPM guardian, --yes, s | $(awk -v us="$tpm_us" 'BEGIN { printf "%.1f", us/1e6 }') |"
echo "| the same, key protectors per second | $(awk -v n="$BATCH" -v us="$tpm_us" 'BEGIN { printf "%.0f", n / (us/1e6) }') |"
