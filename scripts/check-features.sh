#!/usr/bin/env bash
# Feature sets a user picks, compiled as a user compiles them:
#
#   1. the README's own `[dependencies]` lines, verbatim, in a scratch crate outside the
#      workspace (the crates as path dependencies, the workspace's Cargo.lock reused so the
#      versions are the tested ones): what a newcomer pastes must build;
#   2. the facade, whose features users combine, with each of its features alone and without
#      default features (`cargo hack check --each-feature`), which finds a
#      `#[cfg(feature = ...)]` that covers half of what needs it. Every feature set costs a
#      re-check of the crates whose features change (about 15 s each here), so CI runs the
#      facade only; `scripts/check-features.sh all-crates` does every library crate.
#
#   scripts/check-features.sh              1 and 2
#   scripts/check-features.sh readme       only 1
#   scripts/check-features.sh all-crates   1, and 2 for every library crate
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
what=${1:-all}

scratch=target/readme-dependencies
rm -rf "$scratch"
mkdir -p "$scratch/src"
# The first ```toml block under "Using the crates", with the crates pointed at this checkout.
python3 - "$root" >"$scratch/Cargo.toml" <<'PY'
import re, sys
root = sys.argv[1]
readme = open(f"{root}/README.md", encoding="utf-8").read()
section = readme.split("## Using the crates", 1)[1]
block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
lines = []
for line in block.splitlines():
    match = re.match(r'^(cutover[\w-]*) = \{ version = "[^"]+"(.*)$', line)
    if match:
        name, rest = match.groups()
        line = f'{name} = {{ path = "{root}/crates/{name}"{rest}'
    lines.append(line)
print('[package]\nname = "readme-dependencies"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n')
print("\n".join(lines))
print("\n[workspace]")
PY
cat >"$scratch/src/lib.rs" <<'RS'
//! Compiles only if the README's dependency lines do.
RS
cp Cargo.lock "$scratch/Cargo.lock"
echo "==> the README's dependency lines in a crate of their own" >&2
grep -E '^cutover' "$scratch/Cargo.toml" >&2
CARGO_TARGET_DIR="$root/target" cargo check --manifest-path "$scratch/Cargo.toml" --quiet

[[ $what == readme ]] && exit 0

if ! command -v cargo-hack >/dev/null 2>&1; then
    echo "==> installing cargo-hack" >&2
    cargo install cargo-hack --locked --quiet
fi
crates=(cutover)
[[ $what == all-crates ]] && crates=(cutover-core cutover-health cutover-shutdown cutover-versioning cutover)
for crate in "${crates[@]}"; do
    echo "==> $crate: each feature alone" >&2
    # Not --no-dev-deps: it rewrites Cargo.toml while it runs. A plain `cargo check` of the
    # library does not build dev-dependencies, nor (resolver 2) unify their features. All
    # features together is what clippy checks already. The facade's `migrate` needs a backend
    # feature beside it by design (alone, cutover-migrate stops with a compile_error! saying
    # so): it is checked with the smallest one.
    extra=()
    [[ $crate == cutover ]] && extra=(--exclude-features migrate)
    cargo hack check -p "$crate" --each-feature --exclude-all-features "${extra[@]}" --locked --quiet
    if [[ $crate == cutover ]]; then
        cargo check -p cutover --no-default-features --features migrate,sqlite --locked --quiet
    fi
done
