package ocsftest

import (
	"strings"
	"testing"
)

// TestValidatorRejects: hand-made bad events give exactly these messages.
func TestValidatorRejects(t *testing.T) {
	s := Load(t)
	const good = `{"activity_id":1,"activity_name":"Open","category_uid":4,"category_name":"Network Activity","class_uid":4001,"class_name":"Network Activity","type_uid":400101,"type_name":"Network Activity: Open","severity_id":1,"time":1764000000000,"metadata":{"version":"1.8.0","product":{"name":"flowbus"},"profiles":["security_control"]},"src_endpoint":{"ip":"10.0.0.1","port":80},"action_id":1}`
	if errs := s.Validate([]byte(good)); errs != nil {
		t.Fatalf("good event: %q", errs)
	}
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the good event", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	for _, c := range []struct{ name, event, want string }{
		{"missing required", edit(`"severity_id":1,`, ``), "severity_id: required attribute missing"},
		{"missing required nested", edit(`"product":{"name":"flowbus"},`, ``), "metadata.product: required attribute missing"},
		{"wrong type", edit(`"port":80`, `"port":"80"`), `src_endpoint.port: "80" is not an integer (integer_t)`},
		{"port range", edit(`"port":80`, `"port":70000`), "src_endpoint.port: 70000 is out of port_t's range [0, 65535]"},
		{"bad ip", edit(`"10.0.0.1"`, `"10.0.0.256"`), `src_endpoint.ip: "10.0.0.256" is not a valid ip_t`},
		{"time in ns", edit(`"time":1764000000000`, `"time":1764000000000000000`), "time: 1764000000000000000 is not milliseconds since the epoch"},
		{"unknown attribute", edit(`"port":80`, `"port":80,"pod":"x"`), "src_endpoint.pod: unknown attribute of network_endpoint"},
		{"unknown top-level", edit(`"action_id":1`, `"action_id":1,"namespace":"x"`), "namespace: unknown attribute of network_activity"},
		{"enum out of range", edit(`"activity_id":1,"activity_name":"Open"`, `"activity_id":8`), "activity_id: 8 is not in its enum (0 Unknown, 1 Open, 2 Close, 3 Reset, 4 Fail, 5 Refuse, 6 Traffic, 7 Listen, 99 Other)"},
		{"caption mismatch", edit(`"activity_name":"Open"`, `"activity_name":"Opened"`), `activity_name: "Opened" is not activity_id 1's caption "Open"`},
		{"type_uid", edit(`"type_uid":400101`, `"type_uid":400102`), `type_name: "Network Activity: Open" is not type_uid 400102's caption "Network Activity: Close"`},
		{"profile not declared", edit(`"profiles":["security_control"]`, `"profiles":[]`), `action_id: attribute of profile "security_control", which metadata.profiles does not declare`},
		{"constraint", edit(`"src_endpoint":{"ip":"10.0.0.1","port":80}`, `"src_endpoint":{"port":80}`), "src_endpoint: network_endpoint needs at least one of ip, uid, name, hostname, svc_name, instance_uid, interface_uid, interface_name, domain"},
		{"null", edit(`"port":80`, `"port":null`), "src_endpoint.port: null (omit the attribute instead)"},
		{"version", edit(`"version":"1.8.0"`, `"version":"1.3.0"`), `metadata.version: "1.3.0", but the vendored schema is "1.8.0"`},
		{"class", edit(`"class_uid":4001`, `"class_uid":4009`), "class_uid 4009: not a vendored class (have [4001 4002 4003])"},
		{"not vendored object", edit(`"action_id":1`, `"action_id":1,"tls":{}`), `tls: the schema subset lacks object "tls": vendor objects/tls.json from OCSF 1.8.0`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := s.Validate([]byte(c.event))
			if len(got) != 1 || got[0] != c.want {
				t.Errorf("got %q\nwant [%q]", got, c.want)
			}
		})
	}
}
