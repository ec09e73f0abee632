package parquet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// DefaultRowGroupRows is the default maximum number of rows per row group:
// DuckDB's own row-group size (122,880 rows).
const DefaultRowGroupRows = 122880

// TempSuffix ends the name of every temporary file WriteFile creates.
const TempSuffix = ".tmp"

// Options tune WriteFile. The zero value is valid.
type Options struct {
	// RowGroupRows caps the rows of one row group; 0 means DefaultRowGroupRows.
	RowGroupRows int
	// NoSync skips the fsync of the file and the directory. Only for
	// benchmarks and throwaway output: without it a crash can leave a
	// renamed file whose content never reached the disk.
	NoSync bool
}

// Validate reports whether o is usable.
func (o Options) Validate() error {
	if o.RowGroupRows < 0 {
		return fmt.Errorf("parquet: row group rows %d must not be negative", o.RowGroupRows)
	}
	return nil
}

// Stats describes one written file.
type Stats struct {
	Rows  int
	Bytes int64 // size of the file on disk
}

// WriteFile writes rows as one Parquet file at path with schema
// pq.SchemaOf(T) (column names, dictionary encoding and logical types from
// T's `parquet` struct tags), zstd compression, and commits it atomically
// (package doc). It creates path's directory if needed. If path already
// exists it is replaced atomically. On error no file is left at path that
// was not there before, and the temporary file is removed.
func WriteFile[T any](path string, rows []T, opts Options) (Stats, error) {
	if err := opts.Validate(); err != nil {
		return Stats{}, err
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, fmt.Errorf("parquet: create directory: %w", err)
	}
	tmp := filepath.Join(dir, "."+name+TempSuffix)
	st, err := writeTemp(tmp, rows, opts)
	if err != nil {
		os.Remove(tmp)
		return Stats{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return Stats{}, fmt.Errorf("parquet: commit %s: %w", path, err)
	}
	if !opts.NoSync {
		if err := SyncDir(dir); err != nil {
			return Stats{}, err
		}
	}
	return st, nil
}

func writeTemp[T any](tmp string, rows []T, opts Options) (Stats, error) {
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return Stats{}, fmt.Errorf("parquet: create temporary file: %w", err)
	}
	defer f.Close()
	total := len(rows)
	n := opts.RowGroupRows
	if n == 0 {
		n = DefaultRowGroupRows
	}
	w := pq.NewGenericWriter[T](f,
		pq.Compression(&zstd.Codec{Level: zstd.SpeedFastest}),
		pq.MaxRowsPerRowGroup(int64(n)),
		pq.CreatedBy("flowbus", "", ""),
	)
	for len(rows) > 0 {
		k, err := w.Write(rows)
		if err != nil {
			return Stats{}, fmt.Errorf("parquet: write %s: %w", tmp, err)
		}
		rows = rows[k:]
		if k == 0 {
			return Stats{}, fmt.Errorf("parquet: write %s: writer made no progress", tmp)
		}
	}
	if err := w.Close(); err != nil {
		return Stats{}, fmt.Errorf("parquet: finish %s: %w", tmp, err)
	}
	if !opts.NoSync {
		if err := f.Sync(); err != nil {
			return Stats{}, fmt.Errorf("parquet: fsync %s: %w", tmp, err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("parquet: stat %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return Stats{}, fmt.Errorf("parquet: close %s: %w", tmp, err)
	}
	return Stats{Rows: total, Bytes: fi.Size()}, nil
}

// SyncDir fsyncs a directory so that a rename in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("parquet: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("parquet: fsync directory %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether a file name is a temporary file of WriteFile.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, TempSuffix)
}

// RemoveTemp deletes every temporary file WriteFile may have left under root
// (by a crash) and returns how many it removed. A missing root is not an error.
func RemoveTemp(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && IsTemp(d.Name()) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("parquet: remove temporary files under %s: %w", root, err)
	}
	return n, nil
}
