package bus

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestALongDeadLetterReasonIsCutOnARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		want   int
	}{
		{"a short reason is kept", "arrow: truncated stream", 23},
		{"a 2000-byte ASCII reason is cut to 1 KiB", strings.Repeat("x", 2000), 1024},
		{"a reason of 2-byte runes is cut before a split rune", strings.Repeat("é", 1000), 1020 + len("...")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clip(tc.reason)
			if len(got) != tc.want || !utf8.ValidString(got) {
				t.Errorf("clip: %d bytes (valid UTF-8 %v), want %d valid", len(got), utf8.ValidString(got), tc.want)
			}
		})
	}
}

func TestDeadLetterHeadersReplaceStaleOnesAndEndWithReasonPartitionAndOffset(t *testing.T) {
	d := Delivery{Topic: "flowbus.flows.v1", Partition: 3, Offset: 1234, Time: time.Unix(1, 0),
		Headers: map[string]string{
			"flowbus-seq": "1/7", "content-type": "application/vnd.apache.arrow.stream",
			HeaderDLQReason: "stale", HeaderDLQPartition: "9", HeaderDLQOffset: "99", HeaderDLQTruncated: "12345",
		}}
	got := DeadLetterHeaders(d, strings.Repeat("r", 2000))
	want := [][2]string{
		{"content-type", "application/vnd.apache.arrow.stream"},
		{"flowbus-seq", "1/7"},
		{HeaderDLQReason, strings.Repeat("r", MaxReasonBytes-3) + "..."},
		{HeaderDLQPartition, "3"},
		{HeaderDLQOffset, "1234"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("DeadLetterHeaders = %q, want %q", got, want)
	}
}
