package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestSystemdUnitsVerify: systemd itself loads each unit with no warning
// (systemd-analyze verify; an unknown key or bad value is a warning), with
// the ExecStart binary replaced by one that exists here.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the units are checked by TestSystemdUnitsHardening's parse only")
	}
	dir := t.TempDir()
	for _, name := range Units {
		b, err := os.ReadFile(UnitPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/flowbus ") {
			t.Fatalf("%s: ExecStart is not /usr/local/bin/flowbus", name)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/flowbus", "/usr/bin/env")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}

// TestSystemdUnitsHardening: the agent's capability bounding set and
// ambient set are the Helm chart's agent capabilities, no more; the
// aggregator has none; both run as a dynamic user with no new privileges
// and a read-only system.
func TestSystemdUnitsHardening(t *testing.T) {
	ms, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	var chartCaps []string
	for _, m := range ms {
		if m.Kind == "DaemonSet" {
			var ds struct {
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								SecurityContext struct {
									Capabilities struct{ Add []string } `json:"capabilities"`
								} `json:"securityContext"`
							} `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(m.YAML, &ds); err != nil {
				t.Fatal(err)
			}
			for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
				chartCaps = append(chartCaps, "CAP_"+c)
			}
		}
	}
	if diff := cmp.Diff([]string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}, chartCaps); diff != "" {
		t.Fatalf("chart agent capabilities (-want +got):\n%s", diff)
	}
	want := map[string]map[string]string{
		"flowbus-agent.service": {
			"CapabilityBoundingSet": strings.Join(chartCaps, " "), "AmbientCapabilities": strings.Join(chartCaps, " "),
			"StateDirectory": "flowbus-agent", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
			"SystemCallFilter": "@system-service bpf perf_event_open", "PrivateNetwork": "",
		},
		"flowbus-aggregator.service": {
			"CapabilityBoundingSet": "", "AmbientCapabilities": "", "StateDirectory": "flowbus-aggregator",
			"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "SystemCallFilter": "@system-service",
		},
	}
	for _, name := range Units {
		u, err := ReadUnit(name)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelModules": "yes",
			"ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
			"MemoryDenyWriteExecute": "yes", "EnvironmentFile": "-/etc/flowbus/flowbus.env", "Restart": "on-failure"} {
			if got := u.Get("Service", k); got != v {
				t.Errorf("%s: %s=%q, want %q", name, k, got, v)
			}
		}
		for k, v := range want[name] {
			if got := u.Get("Service", k); got != v {
				t.Errorf("%s: %s=%q, want %q", name, k, got, v)
			}
		}
		if _, set := u["Service"]["CapabilityBoundingSet"]; !set {
			t.Errorf("%s: CapabilityBoundingSet unset (systemd's default keeps every capability)", name)
		}
		if got := u.Get("Install", "WantedBy"); got != "multi-user.target" {
			t.Errorf("%s: WantedBy=%q", name, got)
		}
	}
}
