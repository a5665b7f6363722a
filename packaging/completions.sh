#!/bin/sh
# packaging/completions.sh DIR: write guardctl's bash, zsh and fish
# completion scripts into DIR, for the packages ('make package' and
# .goreleaser.yaml's nfpms).
set -eu
dir=$1
mkdir -p "$dir"
go run ./cmd/guardctl completion bash > "$dir/guardctl.bash"
go run ./cmd/guardctl completion zsh > "$dir/_guardctl"
go run ./cmd/guardctl completion fish > "$dir/guardctl.fish"
