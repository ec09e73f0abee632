// Package bpfpin pins a running agent's eBPF maps on the BPF filesystem and
// opens them again from another process, for `flowbus bpf` and `flowbus
// audit`.
//
// Decision: pins are made from Go after the objects are loaded, one file per
// map named as the map, in one directory per agent (the agent's
// --bpf-pin-dir, by default /sys/fs/bpf/flowbus/<node>). Pin replaces a
// file already there: it can only be a previous agent's of the same node,
// killed before its clean stop, and its maps are no longer in use. Unpin
// removes only the files that still hold this process's maps, so an agent
// that stops after another took its directory over leaves the other's pins.
// The price: two live agents given the same directory take the pins from
// each other (the maps they use are not affected, only what the tools read).
package bpfpin

import (
	"errors"
	"strings"
)

// DefaultRoot is the directory under which each agent pins its maps in a
// directory of its own, named after its node.
const DefaultRoot = "/sys/fs/bpf/flowbus"

// ErrNotPinned is returned (wrapped) by Open when a map is not pinned in the
// directory.
var ErrNotPinned = errors.New("map not pinned")

// AgentDir is an agent's default pin directory: DefaultRoot/<node>, with
// the characters a file name cannot hold ('/', a leading '.') replaced by
// '_'.
func AgentDir(node string) string {
	name := strings.ReplaceAll(node, "/", "_")
	if name == "" || strings.HasPrefix(name, ".") {
		name = "_" + name
	}
	return DefaultRoot + "/" + name
}
