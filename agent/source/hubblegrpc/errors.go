package hubblegrpc

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrPermanent is wrapped by the errors that retrying cannot cure (TLS
// settings that do not match the server's, a request the server refuses):
// Run returns them when the first connection fails with one, instead of
// retrying for ever.
var ErrPermanent = errors.New("not retried")

// explain turns the error of a connection or stream into a sentence a
// person can act on, naming the setting to change, and says whether it is
// permanent. gRPC reports TLS failures as codes.Unavailable with Go's TLS
// error text inside, so they are recognised by that text.
func explain(err error, server string, tls tlsSettings) (msg error, permanent bool) {
	st := status.Convert(err)
	text := st.Message()
	switch st.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("hubble server %s refused the request: %s (check the filters, --hubble-filter)", server, text), true
	case codes.Unimplemented:
		return fmt.Errorf("hubble server %s does not serve Hubble's Observer API (%s): is it Hubble (a Cilium agent's hubble.sock or :4244, or Hubble Relay's :4245)?", server, text), true
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("hubble server %s refused this client: %s", server, text), true
	}
	switch {
	case strings.Contains(text, "certificate signed by unknown authority"):
		if tls.ca == "" {
			return fmt.Errorf("TLS to hubble server %s: its certificate is not signed by a CA this agent trusts, and no Hubble CA was given: give the CA that signed it with --hubble-tls-ca-file (in a Cilium install, ca.crt of the hubble-relay-client-certs or hubble-server-certs secret)", server), true
		}
		return fmt.Errorf("TLS to hubble server %s: its certificate is not signed by the CA in %s: give the CA that signed the server's certificate (--hubble-tls-ca-file; in a Cilium install, the Hubble CA, ca.crt of the hubble-server-certs secret)", server, tls.ca), true
	case strings.Contains(text, "certificate is valid for") || strings.Contains(text, "certificate is not valid for any names") ||
		strings.Contains(text, "doesn't contain any IP SANs"):
		return fmt.Errorf("TLS to hubble server %s: its certificate is not issued for the name checked (%s): set --hubble-tls-server-name to a name the certificate holds (a Cilium agent's is issued for *.<cluster-name>.hubble-grpc.cilium.io: give <node-name>.<cluster-name>.hubble-grpc.cilium.io): %s", server, tls.nameChecked(server), tlsDetail(text)), true
	case strings.Contains(text, "certificate has expired") || strings.Contains(text, "expired certificate"):
		return fmt.Errorf("TLS to hubble server %s: a certificate has expired (the server's, or ours as the server says): %s", server, tlsDetail(text)), true
	case strings.Contains(text, "certificate required") || strings.Contains(text, "bad certificate") || strings.Contains(text, "unknown certificate authority"):
		if tls.cert == "" {
			return fmt.Errorf("TLS to hubble server %s: the server requires a client certificate (mTLS) and none was given: give --hubble-tls-cert-file and --hubble-tls-key-file, a certificate signed by the Hubble CA (in a Cilium install, the hubble-relay-client-certs secret)", server), true
		}
		return fmt.Errorf("TLS to hubble server %s: the server rejected the client certificate %s (not signed by a CA it trusts, or not valid now): give one signed by the Hubble CA: %s", server, tls.cert, tlsDetail(text)), true
	case strings.Contains(text, "first record does not look like a TLS handshake"):
		return fmt.Errorf("TLS to hubble server %s: the server does not speak TLS: drop --hubble-tls (a Cilium agent's hubble.sock is plaintext)", server), true
	case !tls.enabled && (strings.Contains(text, "error reading server preface") || strings.Contains(text, "connection closed before server preface")):
		return fmt.Errorf("hubble server %s closed the connection before speaking gRPC: it probably requires TLS (--hubble-tls, with the Hubble CA in --hubble-tls-ca-file): %s", server, tlsDetail(text)), true
	}
	return fmt.Errorf("hubble server %s: %s", server, text), false
}

// tlsDetail is the innermost part of a gRPC transport error's text.
func tlsDetail(text string) string {
	if i := strings.LastIndex(text, "desc = "); i >= 0 {
		text = text[i+len("desc = "):]
	}
	return strings.Trim(text, `"`)
}

// tlsSettings is what explain needs to know of the TLS configuration.
type tlsSettings struct {
	enabled          bool
	ca, cert, server string
}

func (t tlsSettings) nameChecked(server string) string {
	if t.server != "" {
		return t.server
	}
	host := server
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	return host + ", the host of the address"
}
