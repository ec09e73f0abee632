//go:build !linux

package inspect

// Take reads an agent's pinned maps: on Linux only.
func Take(dir, node string) (*Snapshot, error) { return nil, ErrNeedsLinux }
