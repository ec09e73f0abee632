package deploytest

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// Unit is a systemd unit file: section → key → values in order (a key
// may be given more than once).
type Unit map[string]map[string][]string

// Units are the unit files deploy/systemd ships, by file name.
var Units = []string{"flowbus-agent.service", "flowbus-aggregator.service"}

// EnvFileExample is the EnvironmentFile example beside the units.
const EnvFileExample = "systemd/flowbus.env.example"

// UnitPath is the path of a unit file of deploy/systemd.
func UnitPath(name string) string { return filepath.Join(Dir(), "systemd", name) }

// ReadUnit parses a unit file of deploy/systemd as systemd's INI dialect:
// [Section] lines, Key=Value lines, '#' and ';' comments, and a trailing
// backslash continuing a value on the next line. A line that is none of
// these, or a key outside a section, is an error.
func ReadUnit(name string) (Unit, error) {
	b, err := ReadFile(filepath.Join("systemd", name))
	if err != nil {
		return nil, err
	}
	u := Unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, "\\") && sc.Scan() {
			n++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] != nil {
				return nil, fmt.Errorf("%s:%d: section [%s] twice", name, n, section)
			}
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("%s:%d: not a key=value line in a section: %q", name, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

// Get returns the last value of section's key ("" when unset), as systemd
// takes it for single-valued keys.
func (u Unit) Get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// ReadEnvFile parses an EnvironmentFile of deploy/: KEY=VALUE lines and
// comments.
func ReadEnvFile(rel string) (map[string]string, error) {
	b, err := ReadFile(rel)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE: %q", rel, i+1, l)
		}
		env[k] = v
	}
	return env, nil
}
