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

// TempSuffix ends the name of every temporary file Create and WriteFile
// make: ".<final name>.<random>.tmp" beside the final name.
const TempSuffix = ".tmp"

// Options tune WriteFile and Create. The zero value is valid.
type Options struct {
	// RowGroupRows caps the rows of one row group; 0 means DefaultRowGroupRows.
	// A streaming FileWriter holds at most one row group in memory.
	RowGroupRows int
	// NoSync skips the fsync of the file and the directory. Only for
	// benchmarks and throwaway output: without it a crash can leave a
	// renamed file whose content never reached the disk.
	NoSync bool
	// PageBufferBytes is the buffer of each column's current page; 0 means
	// parquet-go's default (256 KiB). A file being written holds one per
	// column: lower it for wide rows written to many files at once.
	PageBufferBytes int
	// Compressor is shared by the files written with these options, so that
	// its zstd encoder (about 16 MB of history) is not allocated per open
	// file; nil means one per file.
	Compressor *Compressor
}

// Compressor is a zstd compressor that files may share (Options); safe for
// concurrent use.
type Compressor struct{ codec *zstd.Codec }

// NewCompressor returns the zstd compressor of every flowbus file
// (fastest level).
func NewCompressor() *Compressor {
	return &Compressor{codec: &zstd.Codec{Level: zstd.SpeedFastest, Concurrency: 1}}
}

// Validate reports whether o is usable.
func (o Options) Validate() error {
	if o.RowGroupRows < 0 {
		return fmt.Errorf("parquet: row group rows %d must not be negative", o.RowGroupRows)
	}
	if o.PageBufferBytes < 0 {
		return fmt.Errorf("parquet: page buffer bytes %d must not be negative", o.PageBufferBytes)
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
// was not there before, and the temporary file is removed. It is Create,
// Write and Commit in one call.
func WriteFile[T any](path string, rows []T, opts Options) (Stats, error) {
	w, err := Create[T](path, opts)
	if err != nil {
		return Stats{}, err
	}
	if err := w.Write(rows); err != nil {
		w.Abort()
		return Stats{}, err
	}
	return w.Commit()
}

// FileWriter streams rows into one Parquet file and commits it atomically:
// rows go to a hidden temporary file beside the final name, a row group is
// flushed to it every Options.RowGroupRows rows (so memory holds at most one
// row group, whatever the file's size), and Commit or CommitAs finishes the
// file, fsyncs it, renames it and fsyncs the directory. Abort removes the
// temporary file. Exactly one of Commit, CommitAs and Abort must end every
// FileWriter (Abort after either is a no-op, so `defer w.Abort()` is safe):
// until then it holds an open file descriptor. Not safe for concurrent use.
type FileWriter[T any] struct {
	path, dir string
	tmp       string
	f         *os.File
	w         *pq.GenericWriter[T]
	opts      Options
	rows      int
	err       error // first Write error: the file is unusable
	done      bool  // committed or aborted
}

// Create starts a Parquet file whose final name is path (see FileWriter),
// creating path's directory if needed. Schema, compression and row groups
// are WriteFile's.
func Create[T any](path string, opts Options) (*FileWriter[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	if name == "" {
		return nil, fmt.Errorf("parquet: path %q names no file", path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("parquet: create directory: %w", err)
	}
	// A random part keeps two writers of one name (a partition moving
	// between aggregators) from sharing or deleting each other's file.
	f, err := os.CreateTemp(dir, "."+name+".*"+TempSuffix)
	if err != nil {
		return nil, fmt.Errorf("parquet: create temporary file: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("parquet: chmod temporary file: %w", err)
	}
	n := opts.RowGroupRows
	if n == 0 {
		n = DefaultRowGroupRows
	}
	comp := opts.Compressor
	if comp == nil {
		comp = NewCompressor()
	}
	wopts := []pq.WriterOption{
		pq.Compression(comp.codec),
		pq.MaxRowsPerRowGroup(int64(n)),
		pq.CreatedBy("flowbus", "", ""),
	}
	if opts.PageBufferBytes > 0 {
		wopts = append(wopts, pq.PageBufferSize(opts.PageBufferBytes))
	}
	w := pq.NewGenericWriter[T](f, wopts...)
	return &FileWriter[T]{path: path, dir: dir, tmp: f.Name(), f: f, w: w, opts: opts}, nil
}

// Path returns the final name given to Create.
func (w *FileWriter[T]) Path() string { return w.path }

// Rows returns the number of rows written so far.
func (w *FileWriter[T]) Rows() int { return w.rows }

// Write appends rows. The writer copies what it needs (strings included)
// before returning, so rows may be reused at once. After an error the file
// is unusable: Commit fails and the caller must Abort.
func (w *FileWriter[T]) Write(rows []T) error {
	if w.done {
		return fmt.Errorf("parquet: write %s: writer already closed", w.path)
	}
	if w.err != nil {
		return w.err
	}
	for len(rows) > 0 {
		k, err := w.w.Write(rows)
		w.rows += k
		if err == nil && k == 0 {
			err = errors.New("writer made no progress")
		}
		if err != nil {
			w.err = fmt.Errorf("parquet: write %s: %w", w.tmp, err)
			return w.err
		}
		rows = rows[k:]
	}
	return nil
}

// Commit finishes the file and renames it onto the path given to Create,
// replacing any file there atomically (package doc). On error the
// temporary file is removed and nothing is left at path that was not there
// before.
func (w *FileWriter[T]) Commit() (Stats, error) { return w.CommitAs(w.path) }

// CommitAs is Commit under another final name in the same directory (for a
// file whose name depends on what was written into it).
func (w *FileWriter[T]) CommitAs(path string) (Stats, error) {
	if w.done {
		return Stats{}, fmt.Errorf("parquet: commit %s: writer already closed", path)
	}
	if d := filepath.Dir(path); filepath.Clean(d) != w.dir {
		w.Abort()
		return Stats{}, fmt.Errorf("parquet: commit %s: not in the directory of %s", path, w.path)
	}
	st, err := w.finish()
	if err != nil {
		w.Abort()
		return Stats{}, err
	}
	w.done = true
	if err := os.Rename(w.tmp, path); err != nil {
		os.Remove(w.tmp)
		return Stats{}, fmt.Errorf("parquet: commit %s: %w", path, err)
	}
	if !w.opts.NoSync {
		if err := SyncDir(w.dir); err != nil {
			return Stats{}, err
		}
	}
	return st, nil
}

// finish writes the footer, fsyncs and closes the temporary file.
func (w *FileWriter[T]) finish() (Stats, error) {
	if w.err != nil {
		return Stats{}, w.err
	}
	if err := w.w.Close(); err != nil {
		return Stats{}, fmt.Errorf("parquet: finish %s: %w", w.tmp, err)
	}
	if !w.opts.NoSync {
		if err := w.f.Sync(); err != nil {
			return Stats{}, fmt.Errorf("parquet: fsync %s: %w", w.tmp, err)
		}
	}
	fi, err := w.f.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("parquet: stat %s: %w", w.tmp, err)
	}
	err = w.f.Close()
	w.f = nil
	if err != nil {
		return Stats{}, fmt.Errorf("parquet: close %s: %w", w.tmp, err)
	}
	return Stats{Rows: w.rows, Bytes: fi.Size()}, nil
}

// Abort closes and removes the temporary file. It is a no-op after Commit,
// CommitAs or Abort.
func (w *FileWriter[T]) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	var errs []error
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			errs = append(errs, err)
		}
		w.f = nil
	}
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("parquet: abort %s: %w", w.tmp, err)
	}
	return nil
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

// IsTemp reports whether a file name is a temporary file of WriteFile or
// Create.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, TempSuffix)
}

// TempTarget returns the final file name a temporary file name was made
// for (".x.parquet.123.tmp" → "x.parquet"; the older ".x.parquet.tmp" too),
// and false if name is not a temporary file name.
func TempTarget(name string) (string, bool) {
	if !IsTemp(name) {
		return "", false
	}
	s := strings.TrimSuffix(name[1:], TempSuffix)
	if i := strings.LastIndexByte(s, '.'); i > 0 && i+1 < len(s) && strings.Trim(s[i+1:], "0123456789") == "" {
		s = s[:i] // the random part of os.CreateTemp: digits
	}
	return s, true
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
