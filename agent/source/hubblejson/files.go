package hubblejson

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	// lumberjack (Hubble exporter) backups: events-2024-01-02T15-04-05.000.log[.gz]
	stampRE = regexp.MustCompile(`-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.[^.]+(?:\.gz)?$`)
	// logrotate backups: hubble.log.1 (newest) ... hubble.log.9[.gz] (oldest)
	numRE = regexp.MustCompile(`\.(\d+)(?:\.gz)?$`)
)

// rotatedFiles lists the regular files of dir oldest first: logrotate
// backups by descending number, then lumberjack backups by their timestamp,
// then the files without a rotation mark (the active file) by name.
func rotatedFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list hubble-json directory: %w", err)
	}
	type file struct {
		name  string
		class int    // 0 numbered backup, 1 timestamped backup, 2 active
		num   int    // class 0
		stamp string // class 1
	}
	var files []file
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f := file{name: e.Name(), class: 2}
		if m := numRE.FindStringSubmatch(f.name); m != nil {
			f.class, f.num = 0, atoi(m[1])
		} else if m := stampRE.FindStringSubmatch(f.name); m != nil {
			f.class, f.stamp = 1, m[1]
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		switch {
		case a.class != b.class:
			return a.class < b.class
		case a.class == 0 && a.num != b.num:
			return a.num > b.num
		case a.class == 1 && a.stamp != b.stamp:
			return a.stamp < b.stamp
		}
		return a.name < b.name
	})
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(dir, f.name)
	}
	return paths, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
