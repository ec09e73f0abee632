package ebpf

import "testing"

func TestSockLBConfigValidate(t *testing.T) {
	for _, a := range []string{"", "random", "maglev"} {
		if err := (&SockLBConfig{Algorithm: a}).Validate(); err != nil {
			t.Errorf("algorithm %q: %v", a, err)
		}
	}
	err := (&SockLBConfig{Algorithm: "roundrobin"}).Validate()
	if err == nil || err.Error() != `socket LB algorithm "roundrobin": want random or maglev` {
		t.Errorf("roundrobin: %v", err)
	}
}
