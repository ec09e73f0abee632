package cgroupv2

import (
	"errors"
	"strings"
	"testing"
)

func TestMountPoint(t *testing.T) {
	hybrid := `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 33 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
42 33 0:39 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
`
	unified := `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	spaced := `35 24 0:30 / /mnt/my\040cgroups rw - cgroup2 none rw
`
	for _, c := range []struct{ table, want string }{
		{hybrid, "/sys/fs/cgroup/unified"}, {unified, "/sys/fs/cgroup"}, {spaced, "/mnt/my cgroups"},
	} {
		got, err := mountPoint(strings.NewReader(c.table))
		if err != nil || got != c.want {
			t.Errorf("mountPoint = %q, %v; want %q", got, err, c.want)
		}
	}
	v1 := "42 33 0:39 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
	if got, err := mountPoint(strings.NewReader(v1)); !errors.Is(err, ErrNotMounted) {
		t.Errorf("cgroup v1 only: %q, %v; want ErrNotMounted", got, err)
	}
}
