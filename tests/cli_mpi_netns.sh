#!/usr/bin/env bash
# One video over processes that can only talk over TCP, the way separate hosts run it (issue 17): two network
# namespaces ("hosts" a and b) on a bridge (10.77.x.0/24, addresses this test assigns), mpirun launching into them
# through an rsh agent that is `ip netns exec`, MPI's control and data traffic restricted to that network
# (--mca oob_tcp_if_include / btl tcp). N = 2 (one rank per host: the CFG halves) and N = 4 (two per host: CFG x
# Ulysses 2) give the one-process latents bit for bit and the same MP4.
# Skips (exit 0 with SKIP) only where MPI is missing or the machine does not allow network namespaces (not root,
# no CAP_NET_ADMIN); CI runs as root.
set -u
BIN=${1:?usage: cli_mpi_netns.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$BIN" 2>/dev/null | grep -q libmpi; then
    echo "SKIP: no MPI (mpirun, or a binary built with it)"
    exit 0
fi
P=cvx$$
if ! command -v ip >/dev/null 2>&1 || ! ip netns add "${P}probe" 2>/dev/null; then
    echo "SKIP: network namespaces are not available here (needs root and iproute2)"
    exit 0
fi
ip netns del "${P}probe"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-mpi-netns-XXXXXX")
NET=10.77.$(($$ % 200 + 20))
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"
cleanup() {
    netns_down "$P" a b
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$TMP" || exit 1

# a bridge in its own namespace; the root namespace (mpirun) and the two hosts each on a veth port of it
netns_up "$P" "$NET" a b
cat >agent.sh <<'EOF'
#!/bin/sh
# mpirun's rsh agent: the "host" is a network namespace, with a session directory of its own (separate hosts
# have separate /tmp; sharing one, the daemons race to create the same job directory)
host=$1
shift
mkdir -p "$AGENT_TMP/$host"
exec ip netns exec "$host" env TMPDIR="$AGENT_TMP/$host" /bin/sh -c "$*"
EOF
export AGENT_TMP="$TMP/sessions"
mkdir -p "$AGENT_TMP/launcher"
chmod +x agent.sh
printf '%sa slots=2\n%sb slots=2\n' "$P" "$P" >hosts
"$BIN" make-model --preset tiny -o tiny >/dev/null 2>&1 || bad "make-model"
GEN=(generate -m "$TMP/tiny" -p "two hosts, one video" --steps 3 --seed 11 --precision fp32 --quiet --json)
"$BIN" "${GEN[@]}" -o one.mp4 >one.json 2>one.err || bad "one process: $(cat one.err)"
want=$(sed -n 's/.*"latents_sha256": "\([0-9a-f]*\)".*/\1/p' one.json)
for n in 2 4; do
    TMPDIR="$AGENT_TMP/launcher" timeout 300 mpirun --allow-run-as-root -np "$n" --hostfile hosts --map-by slot:OVERSUBSCRIBE \
        --mca plm_rsh_agent "$TMP/agent.sh" --mca oob_tcp_if_include "$NET.0/24" --mca btl self,tcp \
        --mca btl_tcp_if_include "$NET.0/24" -x ASAN_OPTIONS=detect_leaks=0 \
        "$BIN" "${GEN[@]}" --threads 1 -o "n$n.mp4" >"n$n.json" 2>"n$n.err"
    rc=$?
    got=$(sed -n 's/.*"latents_sha256": "\([0-9a-f]*\)".*/\1/p' "n$n.json")
    hosts=$(grep -c . hosts)
    if [ $rc -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ] && cmp -s one.mp4 "n$n.mp4" &&
        grep -q "\"ranks\": $n," "n$n.json"; then
        ok "N=$n over TCP between $hosts network namespaces: latents bit-identical ($got), MP4 identical, $(sed -n 's/.*"comm_bytes": \([0-9]*\).*/\1/p' "n$n.json") bytes sent by rank 0"
    else
        bad "N=$n across namespaces: mpirun exit $rc, sha $got vs $want: $(grep -v '^ *$' "n$n.err" | head -n 8)"
    fi
done
[ $fails -eq 0 ] && echo "cli_mpi_netns: all checks passed" || echo "cli_mpi_netns: $fails check(s) failed"
exit $((fails > 0))
