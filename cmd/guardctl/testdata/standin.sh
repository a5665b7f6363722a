# Sourced by the stand-ins the example tests put in place of virsh, qm,
# pvesm and guardctl itself: logs the call to $WORK/calls.log as
# "NAME ARGS", and exits 99 when any argument holds one of the lines of
# $WORK/secrets (a secret on a command line is visible to every user in ps).
# Set NAME first.
echo "$NAME $*" >> "$WORK/calls.log"
for standin_arg in "$@"; do
	while IFS= read -r standin_secret; do
		[ -n "$standin_secret" ] || continue
		case "$standin_arg" in
		*"$standin_secret"*)
			echo "$NAME stand-in: a secret on the command line: $NAME $*" >&2
			exit 99
			;;
		esac
	done < "$WORK/secrets"
done
