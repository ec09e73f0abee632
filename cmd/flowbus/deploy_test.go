package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowbus/flowbus/deploy/deploytest"
)

// chartContainers renders the Helm chart with valuesFiles and returns the
// container of each workload (agent, aggregator, relay, and ocsf when
// enabled) by subcommand.
func chartContainers(t *testing.T, valuesFiles ...string) map[string]corev1.Container {
	t.Helper()
	ms, err := deploytest.Render(valuesFiles...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Container{}
	for _, m := range ms {
		var obj struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		switch m.Kind {
		case "DaemonSet", "StatefulSet", "Deployment":
		default:
			continue
		}
		if err := yaml.Unmarshal(m.YAML, &obj); err != nil {
			t.Fatal(err)
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			if len(c.Args) == 0 {
				t.Fatalf("%s/%s: container %s has no args", m.Kind, m.Name, c.Name)
			}
			out[c.Args[0]] = c
		}
	}
	if _, ocsf := out["ocsf"]; len(out) != 3+map[bool]int{true: 1}[ocsf] {
		t.Fatalf("chart containers %v, want agent, aggregator, relay and perhaps ocsf", out)
	}
	return out
}

// commandFlags returns the flag set of a subcommand as it parses.
func commandFlags(t *testing.T, cmd string) *flagSet {
	t.Helper()
	fs, ok := commandFlagSets(t)[cmd]
	if !ok {
		t.Fatalf("no subcommand %q", cmd)
	}
	return fs
}

// checkCommandLine parses args (and the FLOWBUS_* variables env) with the
// real flag set of cmd: every flag and variable must exist, every value
// must pass the flag's checks, and there must be no stray arguments.
func checkCommandLine(t *testing.T, where, cmd string, args []string, env map[string]string) {
	t.Helper()
	fs := commandFlags(t, cmd)
	for k, v := range env {
		name, ok := strings.CutPrefix(k, "FLOWBUS_")
		if !ok {
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if fs.Lookup(flag) == nil {
			t.Errorf("%s: %s names no flag of 'flowbus %s' (--%s)", where, k, cmd, flag)
		}
		t.Setenv(k, v)
	}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if f := fs.Lookup(name); f == nil || f.Hidden {
				t.Errorf("%s: --%s is not a flag of 'flowbus %s' (or a deprecated one)", where, name, cmd)
			}
		}
	}
	if err := parseFlags(fs, args); err != nil {
		t.Errorf("%s: flowbus %s %q: %v", where, cmd, args, err)
	}
	if fs.NArg() > 0 {
		t.Errorf("%s: flowbus %s: stray arguments %q", where, cmd, fs.Args())
	}
}

// TestHelmChartFlagsExist: every argument and FLOWBUS_* variable the Helm
// chart gives the agent, aggregator and relay, with the default values and
// with every option on (deploy/deploytest/testdata/full-values.yaml) and
// with NATS's TLS and authentication (nats-values.yaml), is parsed by the
// subcommand's real flag set and passes its checks.
func TestHelmChartFlagsExist(t *testing.T) {
	for _, vf := range []struct{ name, file string }{{"default", ""}, {"full", deploytest.FullValues()}, {"nats", deploytest.NATSValues()}} {
		var files []string
		if vf.file != "" {
			files = append(files, vf.file)
		}
		for cmd, c := range chartContainers(t, files...) {
			t.Run(cmd+"/"+vf.name, func(t *testing.T) {
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
					if e.ValueFrom != nil {
						env[e.Name] = "from-" + e.Name
					}
				}
				checkCommandLine(t, "chart "+cmd, cmd, c.Args[1:], env)
				if cmd == "ocsf" { // and what the command checks of the flags together
					if _, err := parseOCSFFlags(c.Args[1:], testIO()); err != nil {
						t.Errorf("chart ocsf: %v", err)
					}
				}
			})
		}
	}
}

// TestSystemdUnitsFlagsExist: every flag of the systemd units' ExecStart
// (deploy/systemd) is parsed by the subcommand's real flag set, with the
// variables of flowbus.env.example that are flags of that subcommand; every
// variable of the example is a flag of the agent or the aggregator.
func TestSystemdUnitsFlagsExist(t *testing.T) {
	env, err := deploytest.ReadEnvFile(deploytest.EnvFileExample)
	if err != nil {
		t.Fatal(err)
	}
	agent, aggregator := commandFlags(t, "agent"), commandFlags(t, "aggregator")
	for k := range env {
		flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "FLOWBUS_"), "_", "-"))
		if !strings.HasPrefix(k, "FLOWBUS_") || agent.Lookup(flag) == nil && aggregator.Lookup(flag) == nil {
			t.Errorf("%s: %s is the variable of no flag of flowbus agent or aggregator", deploytest.EnvFileExample, k)
		}
	}
	for _, name := range deploytest.Units {
		t.Run(name, func(t *testing.T) {
			u, err := deploytest.ReadUnit(name)
			if err != nil {
				t.Fatal(err)
			}
			execStart := u.Get("Service", "ExecStart")
			if strings.ContainsAny(execStart, `"'\`) {
				t.Fatalf("ExecStart %q: quoting is not split here", execStart)
			}
			words := strings.Fields(strings.ReplaceAll(execStart, "${STATE_DIRECTORY}", t.TempDir()))
			if len(words) < 2 || words[0] != "/usr/local/bin/flowbus" {
				t.Fatalf("ExecStart %q: want /usr/local/bin/flowbus <command> ...", execStart)
			}
			cmd := words[1]
			fs := commandFlags(t, cmd)
			cmdEnv := map[string]string{}
			for k, v := range env {
				if fs.Lookup(strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "FLOWBUS_"), "_", "-"))) != nil {
					cmdEnv[k] = v
				}
			}
			checkCommandLine(t, name, cmd, words[2:], cmdEnv)
		})
	}
}
