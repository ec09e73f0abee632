// Command mkresults runs every benchmark group of the repository and
// rewrites bench/RESULTS.md from their output: the machine, then per
// component each command with its measures as ranges over the runs, the
// derived figures (ratios and differences computed run by run from the
// same command's output) and the targets, MET or NOT MET. `make bench`
// runs it from the repository root.
//
// The groups (commands) are in groups.go, the figures and targets in one
// table there. Groups that need root run only as root, under the
// privileged lock (/tmp/flowbus-priv.lock); otherwise their table says so.
//
//	go run ./bench/mkresults                      # everything: bench/RESULTS.md
//	go run ./bench/mkresults -groups 'codec|l7' -o /tmp/r.md   # a few groups
//	go run ./bench/mkresults -list                # the groups and their commands
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A Result is one group's run.
type Result struct {
	Group      Group
	Command    []string // as run, the lock included
	Out        *Output
	Skipped    string // why the group did not run
	Err        error
	Tail       string // the output's last lines, when it failed
	Start      time.Time
	Took       time.Duration
	LockWait   time.Duration // waiting for the privileged lock, before Start
	LoadBefore string
	LoadAfter  string
	// SpeedBefore and SpeedAfter are refSpeed before and after the command.
	SpeedBefore, SpeedAfter float64
	Log                     string
}

func main() {
	out := flag.String("o", "bench/RESULTS.md", "file to write")
	only := flag.String("groups", "", "run only the groups whose id matches this regexp (the others are listed as not run)")
	quick := flag.Bool("quick", false, "one run per group (-count 1), time-based -benchtime cut to 100ms: to check the tool, not for figures")
	list := flag.Bool("list", false, "print the groups and their commands, run nothing")
	logs := flag.String("logs", "", "directory for each group's raw output (default: a new temporary directory)")
	render := flag.String("render", "", "run nothing: write the file again from the raw output a run left in this -logs directory")
	flag.Parse()
	if *list {
		for _, g := range groups {
			root := ""
			if g.Root {
				root = "  (root)"
			}
			fmt.Printf("%-20s %s%s\n", g.ID, shellJoin(g.Command()), root)
		}
		return
	}
	var sel *regexp.Regexp
	if *only != "" {
		var err error
		if sel, err = regexp.Compile(*only); err != nil {
			fatal(err)
		}
	}
	if *logs == "" {
		d, err := os.MkdirTemp("", "flowbus-bench-")
		if err != nil {
			fatal(err)
		}
		*logs = d
	} else if err := os.MkdirAll(*logs, 0o755); err != nil {
		fatal(err)
	}
	if *render != "" {
		m, results, err := load(*render)
		if err != nil {
			fatal(err)
		}
		writeFile(*out, m, results, *quick)
		return
	}
	m := machine()
	start := time.Now()
	fmt.Fprintf(os.Stderr, "mkresults: %d groups, raw output in %s\n", len(groups), *logs)
	var results []*Result
	for i, g := range groups {
		r := &Result{Group: g}
		results = append(results, r)
		switch {
		case sel != nil && !sel.MatchString(g.ID):
			r.Skipped = "not run (left out by -groups)"
			continue
		case g.Root && os.Geteuid() != 0:
			r.Skipped = "needs root: not run"
			fmt.Fprintf(os.Stderr, "[%d/%d] %s: needs root, not run\n", i+1, len(groups), g.ID)
			continue
		}
		if *quick {
			g = quickGroup(g)
			r.Group = g
		}
		fmt.Fprintf(os.Stderr, "[%d/%d] %s (elapsed %s): %s\n", i+1, len(groups), g.ID, time.Since(start).Round(time.Second), shellJoin(command(g)))
		runGroup(r, *logs)
		status := "ok"
		if r.Err != nil {
			status = "FAILED: " + r.Err.Error()
		}
		wait := ""
		if r.LockWait >= time.Second {
			wait = fmt.Sprintf(" (after %s waiting for %s)", r.LockWait.Round(time.Second), privLock)
		}
		fmt.Fprintf(os.Stderr, "[%d/%d] %s: %s in %s%s, %d benchmarks, %d parse errors\n", i+1, len(groups), g.ID, status,
			r.Took.Round(time.Second), wait, len(r.Out.Benches), len(r.Out.Errors))
		for _, e := range r.Out.Errors {
			fmt.Fprintf(os.Stderr, "    %s: %v\n", g.ID, e)
		}
	}
	for _, r := range results {
		m.LockWait += r.LockWait
	}
	m.LoadAfter = loadavg()
	m.SpeedAfter = refSpeed()
	m.Took = time.Since(start)
	m.End = time.Now()
	if err := save(*logs, m, results); err != nil {
		fatal(err)
	}
	writeFile(*out, m, results, *quick)
	fmt.Fprintf(os.Stderr, "mkresults: wrote %s in %s (%s of it waiting for %s)\n", *out, m.Took.Round(time.Second), m.LockWait.Round(time.Second), privLock)
}

func writeFile(path string, m *Machine, results []*Result, quick bool) {
	f, err := os.Create(path)
	if err != nil {
		fatal(err)
	}
	if err := write(f, m, results, quick); err != nil {
		fatal(err)
	}
	if err := f.Close(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mkresults:", err)
	os.Exit(1)
}

// quickGroup shortens a group for a check of the tool.
func quickGroup(g Group) Group {
	args := append([]string{}, g.Args...)
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-count":
			args[i+1] = "1"
		case "-benchtime":
			if strings.HasSuffix(args[i+1], "s") {
				args[i+1] = "100ms"
			}
		}
	}
	g.Args = args
	if g.Cmd != nil {
		c := append([]string{}, g.Cmd...)
		for i := 0; i+1 < len(c); i++ {
			if c[i] == "-runs" {
				c[i+1] = "1"
			}
		}
		g.Cmd = c
	}
	return g
}

func runGroup(r *Result, logs string) {
	g := r.Group
	r.Command = command(g)
	cmd := g.Command()
	if g.Root {
		// The lock is taken here rather than by flock(1), so that waiting
		// for another user's privileged run is not the group's time.
		t := time.Now()
		unlock, err := lockPriv()
		if err != nil {
			r.Err = fmt.Errorf("%s: %w", privLock, err)
			r.Out = Parse("")
			return
		}
		defer unlock()
		r.LockWait = time.Since(t)
	}
	r.LoadBefore = loadavg()
	r.SpeedBefore = refSpeed()
	r.Start = time.Now()
	r.Log = filepath.Join(logs, g.ID+".log")
	lf, err := os.Create(r.Log)
	if err != nil {
		r.Err = err
		r.Out = Parse("")
		return
	}
	defer lf.Close()
	var buf strings.Builder
	c := exec.Command(cmd[0], cmd[1:]...)
	w := io.MultiWriter(lf, &buf)
	c.Stdout, c.Stderr = w, w
	r.Err = c.Run()
	r.Took = time.Since(r.Start)
	r.LoadAfter = loadavg()
	r.SpeedAfter = refSpeed()
	text := buf.String()
	if g.Extract != nil {
		text = g.Extract(text)
	}
	r.Out = Parse(text)
	if r.Err != nil {
		r.Tail = tail(buf.String(), 8)
	}
}

// command is the group's command as run: root groups under the lock.
func command(g Group) []string {
	if g.Root {
		return append([]string{"flock", privLock}, g.Command()...)
	}
	return g.Command()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shellJoin quotes the words a shell would split or expand.
func shellJoin(c []string) string {
	q := make([]string, len(c))
	for i, w := range c {
		if w == "" || strings.ContainsAny(w, " '\"$^|*?()[]{}<>&;\\`!#~") {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		} else {
			q[i] = w
		}
	}
	return strings.Join(q, " ")
}
