#!/bin/sh
# packaging/test-deb.sh DEB: install the .deb that 'make package' built on
# this machine, check what a user gets (the binary runs, 'man guardctl' and
# every command's man page, the bash, zsh and fish completions, the license),
# and remove it again. Installing needs root (CI is root on Debian); as
# another user only the package's contents are checked.
set -eu
deb=$1
fail() { echo "pkgtest: FAIL: $*" >&2; exit 1; }
step() { echo "pkgtest: $*"; }

for t in dpkg-deb man; do command -v $t >/dev/null || fail "$t is not installed (make deps installs man-db)"; done
step "contents of $deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/guardctl ./usr/share/man/man1/guardctl.1 ./usr/share/man/man1/guardctl-vtpm-wrap.1 \
	./usr/share/bash-completion/completions/guardctl ./usr/share/zsh/vendor-completions/_guardctl \
	./usr/share/fish/vendor_completions.d/guardctl.fish ./usr/share/doc/guardctl/copyright ./usr/share/doc/guardctl/LICENSE; do
	echo "$contents" | grep -q " $f\$" || fail "$deb lacks $f"
done
dpkg-deb -f "$deb" Package Version Architecture

if [ "$(id -u)" != 0 ]; then
	echo "pkgtest: not root, so the package is not installed here (CI installs it)" >&2
	exit 0
fi
# One install at a time on this machine, and never over a guardctl that is
# already there.
exec 9>/var/lock/guardctl-pkgtest.lock
command -v flock >/dev/null && flock 9
dpkg -s guardctl >/dev/null 2>&1 && fail "a guardctl package is installed already; remove it first (dpkg -r guardctl)"
[ ! -e /usr/bin/guardctl ] || fail "/usr/bin/guardctl exists and is not from a package; remove it first"

step "dpkg -i $deb"
trap 'dpkg -r guardctl >/dev/null 2>&1 || true' EXIT
# A path-exclude for man pages (as minimal images have) is overridden: the
# man pages are what is being tested.
dpkg -i --path-include='/usr/share/man/*' "$deb" >/dev/null

step "guardctl version"
[ "$(command -v guardctl)" = /usr/bin/guardctl ] || fail "guardctl is not /usr/bin/guardctl on PATH"
guardctl version || fail "guardctl version failed"
guardctl version -o json | grep -q '"goVersion"' || fail "guardctl version -o json"

step "man guardctl"
page=$(man -w guardctl) || fail "man -w guardctl finds no page"
[ "$page" = /usr/share/man/man1/guardctl.1 ] || [ "$page" = /usr/share/man/man1/guardctl.1.gz ] || fail "man -w guardctl: $page"
MANPAGER=cat MANWIDTH=80 man guardctl 2>/dev/null | grep -q 'guardctl manages guardians' || fail "man guardctl does not show the page"
MANPAGER=cat MANWIDTH=80 man guardctl-keyprotector-revoke 2>/dev/null | grep -q -- '--thumbprint' || fail "man guardctl-keyprotector-revoke"

step "completions"
bash -c '. /usr/share/bash-completion/completions/guardctl && complete -p guardctl' | grep -q guardctl || fail "the bash completion does not register"
grep -q '^#compdef guardctl' /usr/share/zsh/vendor-completions/_guardctl || fail "the zsh completion"
grep -q 'complete -c guardctl' /usr/share/fish/vendor_completions.d/guardctl.fish || fail "the fish completion"

step "license"
grep -q '^License: Apache-2.0$' /usr/share/doc/guardctl/copyright || fail "copyright does not name Apache-2.0"
cmp -s /usr/share/doc/guardctl/LICENSE LICENSE || fail "the installed LICENSE differs"

step "dpkg -r guardctl"
dpkg -r guardctl >/dev/null
trap - EXIT
[ ! -e /usr/bin/guardctl ] || fail "/usr/bin/guardctl is still there after dpkg -r"
[ ! -e /usr/share/man/man1/guardctl.1 ] || fail "the man page is still there after dpkg -r"
step "ok"
