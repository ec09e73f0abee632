package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// run.json in the -logs directory keeps what a run knew beside the raw
// output, so that -render can write the file again without running.
type savedResult struct {
	ID, Skipped, Err, Tail  string
	Command                 []string
	Start                   time.Time
	Took, LockWait          time.Duration
	LoadBefore, LoadAfter   string
	SpeedBefore, SpeedAfter float64
}

type savedRun struct {
	Machine *Machine
	Results []savedResult
}

func save(dir string, m *Machine, results []*Result) error {
	s := savedRun{Machine: m}
	for _, r := range results {
		sr := savedResult{ID: r.Group.ID, Skipped: r.Skipped, Tail: r.Tail, Command: r.Command, Start: r.Start, Took: r.Took,
			LockWait: r.LockWait, LoadBefore: r.LoadBefore, LoadAfter: r.LoadAfter, SpeedBefore: r.SpeedBefore, SpeedAfter: r.SpeedAfter}
		if r.Err != nil {
			sr.Err = r.Err.Error()
		}
		s.Results = append(s.Results, sr)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "run.json"), b, 0o644)
}

// load reads a run back: run.json and each group's raw output, parsed by
// today's groups (a group the run did not know is listed as not run).
func load(dir string) (*Machine, []*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return nil, nil, err
	}
	var s savedRun
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, err
	}
	byID := map[string]savedResult{}
	for _, r := range s.Results {
		byID[r.ID] = r
	}
	var results []*Result
	for _, g := range groups {
		r := &Result{Group: g}
		results = append(results, r)
		sr, ok := byID[g.ID]
		if !ok {
			r.Skipped = "not run (not in the run rendered)"
			continue
		}
		r.Skipped, r.Tail, r.Command, r.Start, r.Took, r.LockWait, r.LoadBefore, r.LoadAfter =
			sr.Skipped, sr.Tail, sr.Command, sr.Start, sr.Took, sr.LockWait, sr.LoadBefore, sr.LoadAfter
		r.SpeedBefore, r.SpeedAfter = sr.SpeedBefore, sr.SpeedAfter
		if sr.Err != "" {
			r.Err = errors.New(sr.Err)
		}
		if r.Skipped != "" {
			continue
		}
		out, err := os.ReadFile(filepath.Join(dir, g.ID+".log"))
		if err != nil {
			return nil, nil, err
		}
		text := string(out)
		if g.Extract != nil {
			text = g.Extract(text)
		}
		r.Out = Parse(text)
	}
	return s.Machine, results, nil
}
