package nats

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
)

// startSecureServer starts a JetStream server as StartEmbedded does, with
// opts changed by configure (TLS, users...).
func startSecureServer(t *testing.T, configure func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{ServerName: "flowbus-secure", Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true, MaxPayload: DefaultMaxMsgSize}
	configure(opts)
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	// nats://, not the tls:// of ClientURL, so that TLS is what the client
	// asks for.
	return strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
}

// mTLS makes the server require TLS and a client certificate of pki's CA.
func mTLS(pki pkitest.PKI) func(*server.Options) {
	return func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 2
	}
}

// writeSeed writes a new user NKey seed to a file and returns its path and
// the public key.
func writeSeed(t *testing.T) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	p := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(p, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, pub
}

// roundTrip publishes msgs through a Publisher on conn and reads them back
// through a Consumer on the same conn.
func roundTrip(t *testing.T, conn Conn, node string) {
	t.Helper()
	msgs := bustest.Messages(node, 1, 20)
	p := newPublisher(t, PublisherConfig{Conn: conn, Partitions: testPartitions})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: conn, Partitions: testPartitions})
	ds := bustest.PollN(t, c, len(msgs), 20*time.Second)
	checkDeliveries(t, ds, msgs, testPartitions)
}

// TestTLSAndAuthCarryFlowsAndRefusalsSayWhatFailed: a server with mTLS and
// users (password and NKey) carries flows from a Publisher to a Consumer
// with the right certificates and credentials; with anything wrong,
// NewPublisher and NewConsumer fail at once with an error naming what the
// server refused, and no secret in it.
func TestTLSAndAuthCarryFlowsAndRefusalsSayWhatFailed(t *testing.T) {
	pki, other := pkitest.New(t, t.TempDir()), pkitest.New(t, t.TempDir())
	seedFile, seedPub := writeSeed(t)
	strangerSeed, _ := writeSeed(t)
	const password = "s3cret-Pa55word"
	start := func(t *testing.T) string { // a server of its own for each round trip
		return startSecureServer(t, func(o *server.Options) {
			mTLS(pki)(o)
			o.Users = []*server.User{{Username: "flowbus", Password: password}}
			o.Nkeys = []*server.NkeyUser{{Nkey: seedPub}}
		})
	}
	tlsOK := TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}
	userOK := Auth{User: "flowbus", Password: password}

	t.Run("user and password over mTLS", func(t *testing.T) {
		roundTrip(t, Conn{URL: start(t), TLS: tlsOK, Auth: userOK}, "node-user")
	})
	t.Run("nkey seed file over mTLS, server name given", func(t *testing.T) {
		tc := tlsOK
		tc.ServerName = "localhost"
		roundTrip(t, Conn{URL: start(t), TLS: tc, Auth: Auth{NKeySeedFile: seedFile}}, "node-nkey")
	})

	u := start(t)

	noCert := TLS{CAFile: pki.CAFile}
	badName := tlsOK
	badName.ServerName = "nats.example.com"
	for _, c := range []struct {
		name string
		conn Conn
		want string
	}{
		{"a wrong password", Conn{URL: u, TLS: tlsOK, Auth: Auth{User: "flowbus", Password: "wrong-password"}},
			`connect ` + u + `: the server refused user "flowbus" and its password: nats: Authorization Violation`},
		{"an unknown user", Conn{URL: u, TLS: tlsOK, Auth: Auth{User: "mallory", Password: password}},
			`connect ` + u + `: the server refused user "mallory" and its password: nats: Authorization Violation`},
		{"an nkey the server does not know", Conn{URL: u, TLS: tlsOK, Auth: Auth{NKeySeedFile: strangerSeed}},
			`connect ` + u + `: the server refused the nkey seed file ` + strangerSeed + `: nats: Authorization Violation`},
		{"no credentials", Conn{URL: u, TLS: tlsOK},
			`connect ` + u + `: the server requires credentials and none were given (a user and password, token, nkey seed or credentials file): nats: Authorization Violation`},
		{"the password in the URL, wrong", Conn{URL: strings.Replace(u, "nats://", "nats://flowbus:wrong-password@", 1), TLS: tlsOK},
			`connect ` + strings.Replace(u, "nats://", "nats://flowbus:redacted@", 1) + `: the server refused the user or token of the URL: nats: Authorization Violation`},
		{"no TLS settings: the server asks for TLS and the system roots do not trust it", Conn{URL: u, Auth: userOK},
			`connect ` + u + `: TLS: the server's certificate is not signed by a CA of the system roots (no CA file given): nats: tls error: tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		{"the system roots", Conn{URL: u, TLS: TLS{Enable: true, CertFile: pki.CertFile, KeyFile: pki.KeyFile}, Auth: userOK},
			`connect ` + u + `: TLS: the server's certificate is not signed by a CA of the system roots (no CA file given): `},
		{"another CA", Conn{URL: u, TLS: TLS{CAFile: other.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}, Auth: userOK},
			`connect ` + u + `: TLS: the server's certificate is not signed by a CA of the CA file ` + other.CAFile + `: `},
		{"a server name the certificate does not have", Conn{URL: u, TLS: badName, Auth: userOK},
			`connect ` + u + `: TLS: the server's certificate does not name the host (server name "nats.example.com"): nats: tls error: tls: failed to verify certificate: x509: certificate is valid for localhost, not nats.example.com`},
		{"no client certificate", Conn{URL: u, TLS: noCert, Auth: userOK},
			`connect ` + u + `: TLS: the server refused the handshake (no client certificate was given): `},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := NewPublisher(PublisherConfig{Conn: c.conn, Partitions: testPartitions})
			if err == nil || !strings.HasPrefix(err.Error(), "nats publisher: "+c.want) {
				t.Fatalf("NewPublisher: got\n%v\nwant it to start with\nnats publisher: %s", err, c.want)
			}
			if strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), password) {
				t.Errorf("the error shows a password: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("NewPublisher took %s to fail", d)
			}
			_, err = NewConsumer(ConsumerConfig{Conn: c.conn, Partitions: testPartitions})
			if err == nil || !strings.HasPrefix(err.Error(), "nats consumer: "+c.want) {
				t.Fatalf("NewConsumer: got\n%v\nwant it to start with\nnats consumer: %s", err, c.want)
			}
		})
	}
}

// TestTokenAuth: a server that wants a token takes the right one and names
// a wrong one as "a token", without showing it.
func TestTokenAuth(t *testing.T) {
	const token = "t0ken-for-flowbus"
	u := startSecureServer(t, func(o *server.Options) { o.Authorization = token })
	roundTrip(t, Conn{URL: u, Auth: Auth{Token: token}}, "node-token")
	_, err := NewPublisher(PublisherConfig{Conn: Conn{URL: u, Auth: Auth{Token: "not-the-token"}}})
	want := "nats publisher: connect " + u + ": the server refused a token: nats: Authorization Violation"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestCredsFileAuth: a server in operator mode (JWTs) takes the user JWT
// and seed of a .creds file and carries flows; a user of an account the
// server does not trust is refused, naming the file.
func TestCredsFileAuth(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	opJWT, err := opClaims.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opDecoded, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	account := func(js bool) (nkeys.KeyPair, string) {
		acc, _ := nkeys.CreateAccount()
		pub, _ := acc.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		a, err := ac.Encode(op)
		if err != nil {
			t.Fatal(err)
		}
		return acc, a
	}
	sysAcc, sysJWT := account(false)
	sysPub, _ := sysAcc.PublicKey()
	acc, accJWT := account(true)
	accPub, _ := acc.PublicKey()
	creds := func(acc nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		upub, _ := user.PublicKey()
		uc := jwt.NewUserClaims(upub)
		uJWT, err := uc.Encode(acc)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		b, err := jwt.FormatUserConfig(uJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "flowbus.creds")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_ = resolver.Store(sysPub, sysJWT)
	_ = resolver.Store(accPub, accJWT)
	u := startSecureServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opDecoded}
		o.AccountResolver = resolver
		o.SystemAccount = sysPub
	})
	roundTrip(t, Conn{URL: u, Auth: Auth{CredsFile: creds(acc)}}, "node-creds")

	stranger, _ := nkeys.CreateAccount() // not signed by the operator
	bad := creds(stranger)
	_, err = NewPublisher(PublisherConfig{Conn: Conn{URL: u, Auth: Auth{CredsFile: bad}}})
	want := "nats publisher: connect " + u + ": the server refused the credentials file " + bad + ": nats: Authorization Violation"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestAuthConfigErrors: contradictory or unreadable settings are refused
// by Validate, naming the problem.
func TestAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conn Conn
		want string
	}{
		{Conn{Auth: Auth{User: "a", Password: "b", Token: "c"}}, "nats publisher: auth: give one of user and password, token, nkey seed file or credentials file"},
		{Conn{Auth: Auth{Password: "b"}}, "nats publisher: auth: a password without a user"},
		{Conn{Auth: Auth{User: "a"}}, `nats publisher: auth: user "a" without a password`},
		{Conn{Auth: Auth{NKeySeedFile: missing}}, "nats publisher: auth: stat " + missing + ": no such file or directory"},
		{Conn{TLS: TLS{CertFile: notPEM}}, "nats publisher: tls: cert file and key file must be given together"},
		{Conn{TLS: TLS{CAFile: missing}}, "nats publisher: tls: stat " + missing + ": no such file or directory"},
		{Conn{URL: "http://u:hunter2@host:4222"}, `nats publisher: url "http://u:redacted@host:4222": unknown scheme "http" (want nats, tls, ws or wss)`},
	} {
		err := PublisherConfig{Conn: c.conn}.Validate()
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: got %v, want %s", c.conn, err, c.want)
		}
	}
	for _, c := range []struct {
		conn Conn
		want string
	}{
		{Conn{TLS: TLS{CAFile: notPEM}}, "tls ca file " + notPEM + ": no PEM certificate found"},
		{Conn{Auth: Auth{NKeySeedFile: notPEM}}, "nkey seed file " + notPEM + ": "},
		{Conn{Auth: Auth{CredsFile: notPEM}}, "credentials file " + notPEM + ": want a user JWT and an nkey seed (nsc's .creds)"},
	} {
		_, err := NewPublisher(PublisherConfig{Conn: c.conn})
		if err == nil || !strings.HasPrefix(err.Error(), "nats publisher: "+c.want) {
			t.Errorf("%+v: got %v, want nats publisher: %s", c.conn, err, c.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                             "nats://127.0.0.1:4222",
		"nats://user:pa%40ss@host:4222":                     "nats://user:redacted@host:4222",
		"nats://s3cret-token@host:4222":                     "nats://redacted@host:4222",
		"nats://a:b@h1:4222, tls://tok@h2:4222,nats://h3:1": "nats://a:redacted@h1:4222, tls://redacted@h2:4222,nats://h3:1",
		"ws://host:80/path@x":                               "ws://host:80/path@x",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
