//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/sinks/kafka"
)

// TestAggregatorOnAFullDiskStopsCleanAndResumesExactly runs the aggregator
// as a process on a Parquet directory that is a 1 MiB tmpfs: when the disk
// fills it stops with an error that names the file and the cause, leaves no
// Parquet file a reader cannot read, and commits no offset past what it
// wrote; restarted once the disk has room, it writes every flow exactly
// once.
func TestAggregatorOnAFullDiskStopsCleanAndResumesExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the aggregator as a process twice")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "parquet")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", out, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer func() { _ = syscall.Unmount(out, syscall.MNT_DETACH) }()

	const topic, group = kafka.DefaultTopic, "diskfull-test"
	c, adm := kafkaWithTopic(t, topic, 2)
	ctx := context.Background()
	msgs, flows := staticTestMessages(t, 40000)
	p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(dir, "aggregator.log")
	run := func() *exec.Cmd {
		return startAggregatorProcess(t, logPath, "--bus", "kafka://"+c.ListenAddrs()[0], "--group", group,
			"--data-dir", out, "--raw-flows", "--window", "1s", "--lateness", "1s")
	}
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	// The disk fills: the aggregator stops by itself, with the cause.
	cmd := run()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatalf("the aggregator exited 0 on a full disk:\n%s", logText())
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the aggregator did not stop on a full disk within 90 s:\n%s", logText())
	}
	log := logText()
	if !strings.Contains(log, "no space left on device") || !strings.Contains(log, out) {
		t.Errorf("the log does not say the disk is full, naming the directory:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "no space left on device") {
			t.Logf("the aggregator said: %s", line)
			break
		}
	}
	// What a reader sees is whole: every .parquet file reads.
	db := ducktest.Open(t)
	var files, rows int64
	_ = filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		files++
		var n int64
		if err := db.QueryRow(fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s')`, path)).Scan(&n); err != nil {
			t.Errorf("a Parquet file left on the full disk does not read: %s: %v", path, err)
		}
		if strings.Contains(path, "/flows/") {
			rows += n
		}
		return nil
	})
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var committedMsgs int64
	committed.Each(func(o kadm.OffsetResponse) { committedMsgs += o.At })
	t.Logf("on the full disk: %d Parquet files, %d raw flow rows; %d messages committed of %d", files, rows, committedMsgs, len(msgs))
	if committedMsgs >= int64(len(msgs)) {
		t.Errorf("every message committed although the disk was full")
	}

	// Room again: the restarted aggregator writes the rest, every flow once.
	if err := syscall.Mount("tmpfs", out, "tmpfs", syscall.MS_REMOUNT, "size=256m"); err != nil {
		t.Fatal(err)
	}
	cmd = run()
	time.Sleep(8 * time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the restarted aggregator: %v\n%s", err, logText())
	}
	var n int64
	if err := db.QueryRow(fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s/flows/**/*.parquet')`, out)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(flows) {
		t.Errorf("raw flows after the restart: %d, want %d (each once)\n%s", n, flows, logText())
	}
}
