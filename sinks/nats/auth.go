package nats

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	natsgo "github.com/nats-io/nats.go"

	"github.com/flowbus/flowbus/sinks/bus"
)

// TLS configures TLS to the server. TLS is used when Enable is set or any
// field is given (a tls:// URL also asks for it). CAFile is a PEM bundle of
// the CAs that verify the server (the system pool otherwise); CertFile and
// KeyFile, both or neither, are a client certificate (mTLS). ServerName
// overrides the name checked in the server's certificate. The files are read
// again at every (re)connection, so that renewed certificates are taken.
type TLS struct {
	Enable     bool
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
}

func (t TLS) enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

func (t TLS) validate() error { return bus.CheckTLSFiles(t.CAFile, t.CertFile, t.KeyFile) }

// Auth is how flowbus authenticates to the server: at most one of a user
// and password, a token, an NKey seed file or a credentials (JWT) file.
// None leaves what the URL says (user:password@ or token@), if anything.
type Auth struct {
	User     string
	Password string // with User
	Token    string
	// NKeySeedFile holds a user NKey seed (SU...): the server knows the
	// public key and the seed signs its nonce.
	NKeySeedFile string
	// CredsFile is a decorated JWT and NKey seed (nsc's .creds), for a
	// server in operator mode.
	CredsFile string
}

// method names the way of a, for errors; "" when a is empty.
func (a Auth) method() string {
	switch {
	case a.CredsFile != "":
		return "the credentials file " + a.CredsFile
	case a.NKeySeedFile != "":
		return "the nkey seed file " + a.NKeySeedFile
	case a.Token != "":
		return "a token"
	case a.User != "":
		return fmt.Sprintf("user %q and its password", a.User)
	}
	return ""
}

func (a Auth) validate() error {
	n := 0
	for _, set := range []bool{a.User != "" || a.Password != "", a.Token != "", a.NKeySeedFile != "", a.CredsFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("auth: give one of user and password, token, nkey seed file or credentials file")
	}
	if a.Password != "" && a.User == "" {
		return errors.New("auth: a password without a user")
	}
	if a.User != "" && a.Password == "" {
		return fmt.Errorf("auth: user %q without a password", a.User)
	}
	for _, f := range []string{a.NKeySeedFile, a.CredsFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	return nil
}

// options returns the nats.go options of TLS and authentication.
func (c Conn) options() ([]natsgo.Option, error) {
	var opts []natsgo.Option
	if c.TLS.enabled() {
		// Secure first: RootCAs and ClientCert fill in its config.
		opts = append(opts, natsgo.Secure(&tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}))
		if c.TLS.CAFile != "" {
			if err := checkPEM(c.TLS.CAFile); err != nil {
				return nil, err
			}
			opts = append(opts, natsgo.RootCAs(c.TLS.CAFile))
		}
		if c.TLS.CertFile != "" {
			if _, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
				return nil, fmt.Errorf("tls client certificate %s, key %s: %w", c.TLS.CertFile, c.TLS.KeyFile, err)
			}
			opts = append(opts, natsgo.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
		}
	}
	a := c.Auth
	switch {
	case a.User != "":
		opts = append(opts, natsgo.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, natsgo.Token(a.Token))
	case a.NKeySeedFile != "":
		o, err := natsgo.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case a.CredsFile != "":
		if err := checkCreds(a.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, natsgo.UserCredentials(a.CredsFile))
	}
	return opts, nil
}

func checkPEM(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("tls ca file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("tls ca file %s: no PEM certificate found", file)
	}
	return nil
}

// checkCreds reads a credentials file as nats.go will, so that a bad one is
// reported at start rather than at every connection attempt.
func checkCreds(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	if !strings.Contains(string(b), "-----BEGIN NATS USER JWT-----") || !strings.Contains(string(b), "-----BEGIN USER NKEY SEED-----") {
		return fmt.Errorf("credentials file %s: want a user JWT and an nkey seed (nsc's .creds)", file)
	}
	return nil
}

// connectError says what the server refused when err is a refusal that
// retrying does not cure (authentication, TLS), and nil otherwise.
func (c Conn) connectError(err error) error {
	u := RedactURL(c.URL)
	switch {
	case errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrAuthExpired), errors.Is(err, natsgo.ErrAuthRevoked),
		errors.Is(err, natsgo.ErrAccountAuthExpired):
		m := c.Auth.method()
		if m == "" {
			if urlHasUserinfo(c.URL) {
				m = "the user or token of the URL"
			} else {
				return fmt.Errorf("connect %s: the server requires credentials and none were given (a user and password, token, nkey seed or credentials file): %w", u, err)
			}
		}
		return fmt.Errorf("connect %s: the server refused %s: %w", u, m, err)
	case errors.Is(err, natsgo.ErrSecureConnRequired):
		return fmt.Errorf("connect %s: the server requires TLS and TLS is off (give a CA file or enable TLS): %w", u, err)
	case errors.Is(err, natsgo.ErrSecureConnWanted):
		return fmt.Errorf("connect %s: TLS is on and the server does not offer it: %w", u, err)
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.As(err, &hostname):
		return fmt.Errorf("connect %s: TLS: the server's certificate does not name the host (server name %q): %w", u, c.TLS.ServerName, err)
	case errors.As(err, &unknownCA):
		cas := "the system roots (no CA file given)"
		if c.TLS.CAFile != "" {
			cas = "the CA file " + c.TLS.CAFile
		}
		return fmt.Errorf("connect %s: TLS: the server's certificate is not signed by a CA of %s: %w", u, cas, err)
	case errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("connect %s: TLS: the server's certificate is invalid: %w", u, err)
	// With TLS 1.3 the server checks the client's certificate after the
	// handshake: its alert, or nats.go's word for the connection it closes.
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls"),
		strings.Contains(err.Error(), "connection closed by remote after TLS handshake"):
		what := "no client certificate was given"
		if c.TLS.CertFile != "" {
			what = "client certificate " + c.TLS.CertFile
		}
		return fmt.Errorf("connect %s: TLS: the server refused the handshake (%s): %w", u, what, err)
	}
	return nil
}

// RedactURL returns the comma-separated server URLs of s with any
// password or token replaced, for logs and errors.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	if slash := strings.Index(rest, "/"); slash >= 0 && slash < at {
		return s // an @ in the path
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		user = "" // a token alone
	} else if u, err := url.PathUnescape(user); err == nil {
		user = u
	}
	if user == "" {
		return scheme + "://redacted@" + rest[at+1:]
	}
	return scheme + "://" + url.PathEscape(user) + ":redacted@" + rest[at+1:]
}

func urlHasUserinfo(s string) bool {
	for _, p := range strings.Split(s, ",") {
		if redactOne(strings.TrimSpace(p)) != strings.TrimSpace(p) {
			return true
		}
	}
	return false
}
