//go:build linux

package bpfpin

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Pin pins every map under dir, as dir/<name>, creating dir; a file already
// at a map's path is replaced. On failure no pin of this call is left.
func Pin(dir string, ms map[string]*ebpf.Map) error {
	if err := onBPFFS(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin maps: %w", err)
	}
	var done []*ebpf.Map
	for _, name := range slices.Sorted(maps.Keys(ms)) {
		m := ms[name]
		path := filepath.Join(dir, name)
		if samePinned(path, m) {
			continue // pinned there already
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			unpin(done)
			return fmt.Errorf("pin map %s: remove the stale pin: %w", name, err)
		}
		if err := m.Pin(path); err != nil {
			unpin(done)
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		done = append(done, m)
	}
	return nil
}

// onBPFFS checks that dir, or its nearest existing parent, is on a BPF
// filesystem.
func onBPFFS(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		err := unix.Statfs(d, &st)
		if errors.Is(err, unix.ENOENT) && d != filepath.Dir(d) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pin maps in %s: %w", dir, err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			return fmt.Errorf("pin maps in %s: %s is not on a BPF filesystem (mount one: mount -t bpf bpf %s)", dir, d, d)
		}
		return nil
	}
}

func unpin(ms []*ebpf.Map) {
	for _, m := range ms {
		_ = m.Unpin()
	}
}

// Unpin removes the pins of ms under dir that still hold these maps (an
// agent that started since on the same directory may have replaced them),
// and dir once it is empty. Call it before closing the maps: a closed map
// cannot be compared with a pin, whose file then stays.
func Unpin(dir string, ms map[string]*ebpf.Map) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(ms)) {
		m := ms[name]
		path := filepath.Join(dir, name)
		if !samePinned(path, m) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin map %s: %w", name, err))
		}
	}
	_ = os.Remove(dir) // fails while another map is pinned there
	return errors.Join(errs...)
}

// samePinned reports whether path pins the map m.
func samePinned(path string, m *ebpf.Map) bool {
	p, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return false
	}
	defer p.Close()
	a, errA := p.Info()
	b, errB := m.Info()
	if errA != nil || errB != nil {
		return false
	}
	ida, okA := a.ID()
	idb, okB := b.ID()
	return okA && okB && ida == idb
}

// Open opens the maps pinned under dir by name, read-only. A map not pinned
// there is an error wrapping ErrNotPinned; then nothing stays open.
func Open(dir string, names ...string) (map[string]*ebpf.Map, error) {
	out := make(map[string]*ebpf.Map, len(names))
	for _, name := range names {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			Close(out)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s/%s: %w", dir, name, ErrNotPinned)
			}
			if errors.Is(err, fs.ErrPermission) {
				return nil, fmt.Errorf("open pinned map %s/%s (reading the agent's maps needs root or CAP_BPF): %w", dir, name, err)
			}
			return nil, fmt.Errorf("open pinned map %s/%s: %w", dir, name, err)
		}
		out[name] = m
	}
	return out, nil
}

// Close closes every map of ms.
func Close(ms map[string]*ebpf.Map) {
	for _, m := range ms {
		m.Close()
	}
}
