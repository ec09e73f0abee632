package main

import (
	"strings"
	"testing"
)

// TestAggregatorRawFlowsFlag: --raw-flows is off by default and is set by
// the flag, FLOWBUS_RAW_FLOWS or the raw-flows key of the config file.
func TestAggregatorRawFlowsFlag(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  string
		yaml string
		want bool
	}{
		{name: "off by default", want: false},
		{name: "on with the flag", args: []string{"--raw-flows"}, want: true},
		{name: "on with FLOWBUS_RAW_FLOWS=true", env: "true", want: true},
		{name: "on with raw-flows: true in the config file", yaml: "raw-flows: true\n", want: true},
		{name: "off when the flag says false over the environment", args: []string{"--raw-flows=false"}, env: "true", want: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--data-dir", t.TempDir()}, c.args...)
			if c.env != "" {
				t.Setenv("FLOWBUS_RAW_FLOWS", c.env)
			}
			if c.yaml != "" {
				args = append(args, "--config", writeConfig(t, c.yaml))
			}
			af, err := parseAggregatorFlags(args, testIO())
			if err != nil {
				t.Fatal(err)
			}
			if af.cfg.RawFlows != c.want {
				t.Errorf("RawFlows = %v, want %v", af.cfg.RawFlows, c.want)
			}
		})
	}
	t.Run("a value that is not a boolean is an error", func(t *testing.T) {
		t.Setenv("FLOWBUS_RAW_FLOWS", "sometimes")
		if _, err := parseAggregatorFlags(nil, testIO()); err == nil || !strings.Contains(err.Error(), "FLOWBUS_RAW_FLOWS") {
			t.Errorf("err = %v, want one naming FLOWBUS_RAW_FLOWS", err)
		}
	})
}
