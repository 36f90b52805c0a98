# Sourced by the tests that run "hosts" in network namespaces (cli_mpi_netns.sh, cli_svc_netns.sh): a bridge in a
# namespace of its own (${P}sw), the root namespace and each named host on a veth port of it, with the addresses
# NET.1 (root), NET.2, ... in the order given. Needs root and iproute2 (the callers probe for them first).

# netns_up PREFIX NET HOST...: the bridge, the root's port (NET.1) and one namespace per HOST (NET.2, NET.3, ...).
# Exits the shell on a failing command (set -e inside).
netns_up() {
    local p=$1 net=$2 h i=1
    shift 2
    (
        set -e
        ip netns add "${p}sw"
        ip netns exec "${p}sw" ip link set lo up
        ip netns exec "${p}sw" ip link add br0 type bridge
        ip netns exec "${p}sw" ip link set br0 up
        for h in root "$@"; do
            ip link add "${p}$h" type veth peer name "${p}${h}p"
            ip link set "${p}${h}p" netns "${p}sw"
            ip netns exec "${p}sw" ip link set "${p}${h}p" master br0 up
            if [ "$h" = root ]; then
                ip addr add "$net.$i/24" dev "${p}$h"
                ip link set "${p}$h" up
            else
                ip netns add "${p}$h"
                ip netns exec "${p}$h" ip link set lo up
                ip link set "${p}$h" netns "${p}$h"
                ip netns exec "${p}$h" ip addr add "$net.$i/24" dev "${p}$h"
                ip netns exec "${p}$h" ip link set "${p}$h" up
            fi
            i=$((i + 1))
        done
    )
    # (checked apart: inside a `|| ...` list, set -e would not stop the subshell at the first failure)
    [ $? -eq 0 ] || { echo "FAIL: could not set up the network namespaces"; exit 1; }
}

# netns_down PREFIX HOST...: removes what netns_up made (quietly, whatever exists).
netns_down() {
    local p=$1 n
    shift
    for n in "$@" sw; do ip netns del "${p}$n" 2>/dev/null; done
    ip link del "${p}root" 2>/dev/null
}
