# shellcheck shell=bash
# scripts/lib/deps.sh: the Debian bookworm packages Tally needs to build, test and run, and a
# function that installs whichever of them are missing. Sourced by .ci/run and scripts/demo.
#
# Usage (from a bash script):
#   source "$REPO/scripts/lib/deps.sh"
#   tally_deps_install      # apt-get installs what dpkg says is missing; quick when nothing is
#   tally_deps_missing      # prints the missing packages, one a line
#   tally_deps_install TALLY_BENCH_PACKAGES   # the same for another list (the array's name)
#
# As root it runs apt-get itself; otherwise through sudo when there is one. apt-get runs
# non-interactively, so it also works with no standard input (CI). The functions check every
# step themselves: they work the same whether or not the caller runs under `set -e`.

# Everything a fresh machine needs; keep it sorted by purpose and say why a package is here.
# shellcheck disable=SC2034  # read through a nameref (tally_deps_missing)
TALLY_DEPS_PACKAGES=(
    # Build: compiler, CMake, pkg-config.
    build-essential cmake pkg-config
    # Libraries: gRPC C core, protobuf-c (and its code generator), hiredis, libpq,
    # libmicrohttpd (metrics and health over HTTP), Criterion (tests), libjwt (bearer tokens;
    # it brings jansson, which reads their claims, and OpenSSL, which checks RS256/ES256).
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libhiredis-dev libpq-dev
    libmicrohttpd-dev libcriterion-dev libjwt-dev libjansson-dev
    # grpc.health.v1 and the other standard protos.
    grpc-proto
    # The local stack: PostgreSQL 15 and Redis 7 (scripts/stack).
    postgresql-15 redis-server
    # Format check and static analysis; clang and its runtime for the libFuzzer targets.
    clang-format clang-tidy clang libclang-rt-14-dev
    # The interop test: a Python grpcio client with stubs from protoc + grpc_python_plugin.
    python3-grpcio protobuf-compiler protobuf-compiler-grpc
    # h2load (benchmark and demo traffic), curl (metrics and health checks), openssl (the TLS
    # tests' certificates, the benchmark's ES256 keys).
    nghttp2-client curl ca-certificates openssl
    # promtool (scripts/check-k8s checks and unit-tests the alert rules; a test lints each
    # service's /metrics). kubectl, the other tool of scripts/check-k8s, is not a Debian package.
    prometheus
)

# What only bench/run needs, installed by bench/run itself (CI does not run it): gnuplot draws
# its charts (the -nox build: PNG without X11).
# shellcheck disable=SC2034  # read through a nameref
TALLY_BENCH_PACKAGES=(gnuplot-nox)

# tally_deps_missing [LIST]: prints the packages of the array named LIST (TALLY_DEPS_PACKAGES)
# that dpkg does not have installed.
tally_deps_missing() {
    local pkg status
    local -n tally_deps_list=${1:-TALLY_DEPS_PACKAGES}
    for pkg in "${tally_deps_list[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) || status=""
        if [[ $status != installed ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# tally_deps_install [LIST]: installs the missing packages of the array named LIST
# (TALLY_DEPS_PACKAGES) with apt-get; does nothing (quickly) when none is missing. Returns
# non-zero, with a message on stderr, when it cannot install them.
tally_deps_install() {
    local list=${1:-TALLY_DEPS_PACKAGES}
    local -a missing sudo=()
    local -n tally_deps_want=$list
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        echo "deps: no dpkg/apt-get here: install these by hand: ${tally_deps_want[*]}" >&2
        return 1
    fi
    mapfile -t missing < <(tally_deps_missing "$list")
    if ((${#missing[@]} == 0)); then
        echo "deps: all ${#tally_deps_want[@]} packages already installed"
        return 0
    fi
    echo "deps: installing ${#missing[@]} missing packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "deps: not root and no sudo: as root, run: apt-get install ${missing[*]}" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
        -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    "${apt[@]}" update </dev/null || {
        echo "deps: apt-get update failed" >&2
        return 1
    }
    "${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null || {
        echo "deps: apt-get install failed" >&2
        return 1
    }
    mapfile -t missing < <(tally_deps_missing "$list")
    if ((${#missing[@]} != 0)); then
        echo "deps: still missing after apt-get install: ${missing[*]}" >&2
        return 1
    fi
    echo "deps: installed"
}
