package aggregator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flowbus/flowbus/sinks/parquet"
)

// Table directories under Config.Out.
const (
	PairTable  = "pair_rollup"
	RouteTable = "route_rollup"
	FlowsTable = "flows" // raw flow records (Config.RawFlows)
)

// fileID identifies one committed bucket: the same name is used in both
// tables. It is a pure function of what went into the bucket.
type fileID struct {
	partition   int32
	start       int64 // window start, Unix ns
	first, last int64 // offsets
	late        bool
}

// name is "p<partition>-w<window start, Unix s>-o<first>-<last>[-late].parquet".
func (id fileID) name() string {
	var b strings.Builder
	b.WriteString("p")
	b.WriteString(strconv.FormatInt(int64(id.partition), 10))
	b.WriteString("-w")
	b.WriteString(strconv.FormatInt(id.start/int64(time.Second), 10))
	b.WriteString("-o")
	b.WriteString(strconv.FormatInt(id.first, 10))
	b.WriteString("-")
	b.WriteString(strconv.FormatInt(id.last, 10))
	if id.late {
		b.WriteString("-late")
	}
	b.WriteString(".parquet")
	return b.String()
}

// path is <out>/<table>/date=YYYY-MM-DD/hour=HH/<name>, the date and hour of
// the window start in UTC.
func (id fileID) path(out, table string) string {
	t := time.Unix(0, id.start).UTC()
	return filepath.Join(out, table, t.Format("date=2006-01-02"), t.Format("hour=15"), id.name())
}

// parseName parses a name made by fileID.name.
func parseName(name string) (fileID, bool) {
	s, ok := strings.CutSuffix(name, ".parquet")
	if !ok || !strings.HasPrefix(s, "p") {
		return fileID{}, false
	}
	var id fileID
	s, id.late = strings.CutSuffix(s, "-late")
	parts := strings.Split(s[1:], "-")
	if len(parts) != 4 || !strings.HasPrefix(parts[1], "w") || !strings.HasPrefix(parts[2], "o") {
		return fileID{}, false
	}
	p, err1 := strconv.ParseInt(parts[0], 10, 32)
	w, err2 := strconv.ParseInt(parts[1][1:], 10, 64)
	f, err3 := strconv.ParseInt(parts[2][1:], 10, 64)
	l, err4 := strconv.ParseInt(parts[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil || f > l {
		return fileID{}, false
	}
	id.partition, id.start, id.first, id.last = int32(p), w*int64(time.Second), f, l
	return id, true
}

// scan lists the committed buckets of the given partitions under out: the
// pair_rollup files (a pair file is written last, so it marks a committed
// bucket). It deletes what a crash may have left for these partitions:
// temporary files, and route_rollup and flows files whose pair file is
// missing (their bucket is rebuilt from the re-read records).
func scan(out string, parts map[int32]bool) (map[int32][]fileID, error) {
	if err := removeTemp(out, parts); err != nil {
		return nil, err
	}
	committed := make(map[int32][]fileID)
	pairs := make(map[fileID]bool)
	err := walk(filepath.Join(out, PairTable), func(_ string, id fileID) error {
		if parts[id.partition] {
			committed[id.partition] = append(committed[id.partition], id)
			pairs[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, table := range []string{RouteTable, FlowsTable} {
		err = walk(filepath.Join(out, table), func(p string, id fileID) error {
			if parts[id.partition] && !pairs[id] {
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("remove uncommitted %s: %w", p, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return committed, nil
}

// removeTemp deletes the temporary files a crash left for the given
// partitions only: other aggregators sharing the directory may be writing
// theirs right now.
func removeTemp(out string, parts map[int32]bool) error {
	for _, table := range []string{PairTable, RouteTable, FlowsTable} {
		err := filepath.WalkDir(filepath.Join(out, table), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			name, isTemp := parquet.TempTarget(d.Name())
			if !isTemp {
				return nil
			}
			if id, ok := parseName(name); ok && parts[id.partition] {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("remove temporary files under %s: %w", out, err)
		}
	}
	return nil
}

func walk(root string, fn func(path string, id fileID) error) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if id, ok := parseName(d.Name()); ok {
			return fn(p, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", root, err)
	}
	return nil
}
