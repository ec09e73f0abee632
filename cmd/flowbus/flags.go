package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// helpWidth is the width the flag lists of --help are wrapped to; the
// paragraphs are wrapped to paragraphWidth.
const (
	helpWidth      = 100
	paragraphWidth = 80
)

// configNote ends every subcommand's --help.
const configNote = "Every flag is also a key of the YAML file given by --config and an environment " +
	"variable FLOWBUS_<FLAG> (upper case, '-' as '_'); the command line wins over the variable, " +
	"which wins over the file."

// flagSet is a subcommand's flags, in groups, with what its --help prints
// around them (see the package doc): the usage line, a paragraph, the groups
// of flags, configNote. It also holds the deprecated names of renamed flags
// and the checks of the flags' values, which parseFlags applies.
type flagSet struct {
	*pflag.FlagSet
	usage   string // the usage line after "flowbus "
	about   string // one paragraph: what the command does
	help    io.Writer
	groups  []flagGroup
	aliases map[string]string // deprecated name → flag name
	checks  []flagCheck
	// secrets are the flags whose values are secrets, each with whether
	// the command line may give it (see flagSet.secret).
	secrets map[string]bool
}

// flagGroup is a titled run of flags, in definition order from first.
type flagGroup struct {
	title string
	first int
}

// flagCheck is a rule a flag's value must follow, checked after parsing.
type flagCheck struct {
	name string
	bound
}

// bound is a rule on one value: ok reports whether it holds, want says what
// the value must be ("from 1 to 1048576", "more than 0s").
type bound struct {
	ok   func() bool
	want string
}

// newFlagSet returns the flags of 'flowbus <usage>': --help prints to
// cio.Stdout; parse errors are returned, and pflag's deprecation warnings
// go to cio.Stderr.
func newFlagSet(name, usage, about string, cio cmdIO) *flagSet {
	fs := &flagSet{FlagSet: pflag.NewFlagSet(name, pflag.ContinueOnError), usage: usage, about: about,
		help: cio.Stdout, aliases: map[string]string{}, secrets: map[string]bool{}}
	fs.SortFlags = false
	fs.SetOutput(cio.Stderr)
	if fs.help == nil {
		fs.help = io.Discard
	}
	fs.Usage = func() { fs.printHelp(fs.help) }
	return fs
}

// group starts a group: the flags defined next are listed under
// "<title> flags:". Flags defined before the first group are under "Flags:".
func (fs *flagSet) group(title string) {
	n := 0
	fs.VisitAll(func(*pflag.Flag) { n++ })
	fs.groups = append(fs.groups, flagGroup{title: title, first: n})
}

// alias keeps old, the former name of flag name, working: hidden from
// --help, it sets the same value and prints a one-line deprecation warning.
// parseFlags also takes FLOWBUS_<OLD> and the config key old, with a warning.
func (fs *flagSet) alias(old, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("alias of an undefined flag --" + name)
	}
	fs.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: f.Value, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal,
		Hidden: true, Deprecated: "use --" + name + " instead"})
	fs.aliases[old] = name
}

// secret marks flag name as holding a secret (a password, a token): a
// --config file that sets it must be readable by its owner only, and
// parseFlags never shows its value. Unless onCommandLine, the flag is
// refused on the command line, where other users see it (ps,
// /proc/<pid>/cmdline): only its variable FLOWBUS_<FLAG> or the config
// key set it. With onCommandLine (a flag that took secrets before), a value
// there is taken with a warning.
func (fs *flagSet) secret(name string, onCommandLine bool) {
	if fs.Lookup(name) == nil {
		panic("secret of an undefined flag --" + name)
	}
	fs.secrets[name] = onCommandLine
}

// check adds a rule that the value of flag name must follow; parseFlags
// reports the first flag that breaks its rule as a usage error.
func (fs *flagSet) check(name string, b bound) {
	if fs.Lookup(name) == nil {
		panic("check of an undefined flag --" + name)
	}
	fs.checks = append(fs.checks, flagCheck{name: name, bound: b})
}

// checkValues returns the first rule broken, naming the flag, its value and
// what it must be.
func (fs *flagSet) checkValues() error {
	for _, c := range fs.checks {
		if !c.ok() {
			return fmt.Errorf("%w: --%s %s: must be %s", errUsage, c.name, fs.Lookup(c.name).Value, c.want)
		}
	}
	return nil
}

// between: lo ≤ *p ≤ hi.
func between[T cmp.Ordered](p *T, lo, hi T) bound {
	return bound{func() bool { return *p >= lo && *p <= hi }, fmt.Sprintf("from %v to %v", lo, hi)}
}

// atLeast: *p ≥ lo.
func atLeast[T cmp.Ordered](p *T, lo T) bound {
	return bound{func() bool { return *p >= lo }, fmt.Sprintf("at least %v", lo)}
}

// positive: a duration more than zero.
func positive(p *time.Duration) bound {
	return bound{func() bool { return *p > 0 }, "more than 0s"}
}

// finiteAtLeast: a finite number ≥ lo.
func finiteAtLeast(p *float64, lo float64) bound {
	return bound{func() bool { return !math.IsNaN(*p) && !math.IsInf(*p, 0) && *p >= lo }, fmt.Sprintf("a number of at least %v", lo)}
}

// oneOf: one of the words.
func oneOf(p *string, words ...string) bound {
	return bound{func() bool { return slices.Contains(words, *p) }, "one of " + strings.Join(words, ", ")}
}

// finitePositive: a finite number > 0.
func finitePositive(p *float64) bound {
	return bound{func() bool { return !math.IsNaN(*p) && !math.IsInf(*p, 0) && *p > 0 }, "a number more than 0"}
}

// printHelp writes the command's help (see the package doc).
func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: flowbus %s\n\n%s\n", fs.usage, wrap(fs.about, paragraphWidth))
	var all []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) { all = append(all, f) })
	groups := fs.groups
	if len(groups) == 0 || groups[0].first > 0 {
		groups = append([]flagGroup{{}}, groups...)
	}
	for i, g := range groups {
		end := len(all)
		if i+1 < len(groups) {
			end = groups[i+1].first
		}
		set := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
		set.SortFlags = false
		for _, f := range all[g.first:end] {
			if !f.Hidden {
				set.AddFlag(f)
			}
		}
		if !set.HasAvailableFlags() {
			continue
		}
		title := "Flags:"
		if g.title != "" {
			title = g.title + " flags:"
		}
		fmt.Fprintf(w, "\n%s\n%s", title, set.FlagUsagesWrapped(helpWidth))
	}
	fmt.Fprintf(w, "\n%s\n", wrap(configNote, paragraphWidth))
}

// wrap breaks text into lines of at most width columns at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case n+1+utf8.RuneCountInString(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += utf8.RuneCountInString(word)
	}
	return b.String()
}

// addNATSPartitionFlags adds --nats-partitions and --nats-assigned, the
// JetStream partitions a consumer of the flows reads, with their checks;
// reader names one consumer in the help ("aggregator").
func addNATSPartitionFlags(fs *flagSet, partitions *int, assigned *string, reader string) {
	fs.IntVar(partitions, "nats-partitions", nats.DefaultPartitions, "NATS: number of partitions (subjects flowbus.flows.v1.<p>); must match the agents'")
	fs.check("nats-partitions", between(partitions, 1, nats.MaxPartitions))
	fs.StringVar(assigned, "nats-assigned", "", "NATS: comma-separated partitions this "+reader+" reads, each from 0 to --nats-partitions - 1 (default all); each partition must be read by one "+reader)
	fs.check("nats-assigned", bound{func() bool { _, err := assignedPartitions(*assigned, *partitions); return err == nil },
		"comma-separated partitions, each from 0 to --nats-partitions - 1"})
}

// busConnFlags are the flags of how agent and aggregator reach the bus: the
// TLS and authentication of Kafka and of NATS. Both commands add them with
// addKafkaConnFlags and addNATSConnFlags, so that they are the same flags.
type busConnFlags struct {
	kafkaTLS, kafkaSkipVerify        *bool
	kafkaCA, kafkaCert, kafkaKey     *string
	kafkaServerName                  *string
	saslMech, saslUser               *string
	saslPass, saslPassFile           *string
	natsCA, natsCert, natsKey        *string
	natsServerName                   *string
	natsUser, natsPass, natsPassFile *string
	natsToken, natsTokenFile         *string
	natsNKeySeedFile, natsCredsFile  *string
}

// addKafkaConnFlags adds the Kafka TLS and SASL flags to fs. aliases adds
// the deprecated names the agent's TLS file flags had.
func (b *busConnFlags) addKafkaConnFlags(fs *flagSet, aliases bool) {
	b.kafkaTLS = fs.Bool("kafka-tls", false, "connect to Kafka with TLS")
	b.kafkaCA = fs.String("kafka-tls-ca-file", "", "Kafka: CA bundle to verify brokers")
	b.kafkaCert = fs.String("kafka-tls-cert-file", "", "Kafka: client certificate (mTLS)")
	b.kafkaKey = fs.String("kafka-tls-key-file", "", "Kafka: client key (mTLS)")
	if aliases {
		fs.alias("kafka-tls-ca", "kafka-tls-ca-file")
		fs.alias("kafka-tls-cert", "kafka-tls-cert-file")
		fs.alias("kafka-tls-key", "kafka-tls-key-file")
	}
	b.kafkaServerName = fs.String("kafka-tls-server-name", "", "Kafka: name to verify in the brokers' certificates (default: the broker's host)")
	b.kafkaSkipVerify = fs.Bool("kafka-tls-insecure-skip-verify", false, "Kafka: do not verify broker certificates")
	b.saslMech = fs.String("kafka-sasl-mechanism", "", "Kafka SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	b.saslUser = fs.String("kafka-sasl-user", "", "Kafka SASL user")
	b.saslPass = fs.String("kafka-sasl-password", "", "Kafka SASL password; prefer FLOWBUS_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file: on the command line other users see it (warns)")
	fs.secret("kafka-sasl-password", true)
	b.saslPassFile = fs.String("kafka-sasl-password-file", "", "Kafka SASL: file holding the password (a trailing newline is dropped)")
}

// addNATSConnFlags adds the NATS TLS and authentication flags to fs.
func (b *busConnFlags) addNATSConnFlags(fs *flagSet) {
	b.natsCA = fs.String("nats-tls-ca-file", "", "NATS: CA bundle to verify the server (enables TLS; default: system roots)")
	b.natsCert = fs.String("nats-tls-cert-file", "", "NATS: client certificate (mTLS)")
	b.natsKey = fs.String("nats-tls-key-file", "", "NATS: client key (mTLS)")
	b.natsServerName = fs.String("nats-tls-server-name", "", "NATS: name to verify in the server's certificate (default: the URL's host)")
	b.natsUser = fs.String("nats-user", "", "NATS: user, with the password of --nats-password-file or FLOWBUS_NATS_PASSWORD")
	b.natsPassFile = fs.String("nats-password-file", "", "NATS: file holding the password of --nats-user (a trailing newline is dropped)")
	b.natsPass = fs.String("nats-password", "", "NATS: password of --nats-user, only from FLOWBUS_NATS_PASSWORD or the config key (refused on the command line, where other users see it)")
	fs.secret("nats-password", false)
	b.natsTokenFile = fs.String("nats-token-file", "", "NATS: file holding the authentication token (a trailing newline is dropped)")
	b.natsToken = fs.String("nats-token", "", "NATS: authentication token, only from FLOWBUS_NATS_TOKEN or the config key (refused on the command line)")
	fs.secret("nats-token", false)
	b.natsNKeySeedFile = fs.String("nats-nkey-seed-file", "", "NATS: file holding a user NKey seed (SU...) whose public key the server knows")
	b.natsCredsFile = fs.String("nats-creds-file", "", "NATS: credentials file (user JWT and NKey seed, nsc's .creds) for a server in operator mode")
}

// natsSet reports the NATS TLS and authentication flags given, by name.
func (b *busConnFlags) natsSet() []string {
	var set []string
	for name, v := range map[string]*string{"nats-tls-ca-file": b.natsCA, "nats-tls-cert-file": b.natsCert, "nats-tls-key-file": b.natsKey,
		"nats-tls-server-name": b.natsServerName, "nats-user": b.natsUser, "nats-password-file": b.natsPassFile, "nats-password": b.natsPass,
		"nats-token-file": b.natsTokenFile, "nats-token": b.natsToken, "nats-nkey-seed-file": b.natsNKeySeedFile, "nats-creds-file": b.natsCredsFile} {
		if v != nil && *v != "" {
			set = append(set, "--"+name)
		}
	}
	slices.Sort(set)
	return set
}

// natsConn returns the nats.Conn of url with the TLS and authentication of
// the flags, the password and token read from their files.
func (b *busConnFlags) natsConn(url string) (nats.Conn, error) {
	pass, err := secretValue("nats-password", *b.natsPass, *b.natsPassFile)
	if err != nil {
		return nats.Conn{}, err
	}
	token, err := secretValue("nats-token", *b.natsToken, *b.natsTokenFile)
	if err != nil {
		return nats.Conn{}, err
	}
	switch {
	case *b.natsUser != "" && pass == "":
		return nats.Conn{}, fmt.Errorf("%w: --nats-user %q needs a password: --nats-password-file or FLOWBUS_NATS_PASSWORD", errUsage, *b.natsUser)
	case *b.natsUser == "" && pass != "":
		return nats.Conn{}, fmt.Errorf("%w: a NATS password needs --nats-user", errUsage)
	}
	n := 0
	for _, set := range []bool{*b.natsUser != "", token != "", *b.natsNKeySeedFile != "", *b.natsCredsFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nats.Conn{}, fmt.Errorf("%w: give one NATS authentication: --nats-user (and its password), --nats-token-file (or FLOWBUS_NATS_TOKEN), --nats-nkey-seed-file or --nats-creds-file", errUsage)
	}
	return nats.Conn{URL: url,
		TLS: nats.TLS{CAFile: *b.natsCA, CertFile: *b.natsCert, KeyFile: *b.natsKey, ServerName: *b.natsServerName},
		Auth: nats.Auth{User: *b.natsUser, Password: pass, Token: token,
			NKeySeedFile: *b.natsNKeySeedFile, CredsFile: *b.natsCredsFile}}, nil
}

// kafkaConn returns the kafka.Conn of brokers with the TLS and SASL of the
// flags, the password read from its file.
func (b *busConnFlags) kafkaConn(brokers []string) (kafka.Conn, error) {
	for _, br := range brokers {
		if strings.Contains(br, "@") { // the broker would be shown in errors
			return kafka.Conn{}, fmt.Errorf("%w: --bus: a kafka:// URL takes no user or password: use --kafka-sasl-user and FLOWBUS_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file", errUsage)
		}
	}
	pass, err := secretValue("kafka-sasl-password", *b.saslPass, *b.saslPassFile)
	if err != nil {
		return kafka.Conn{}, err
	}
	return kafka.Conn{Brokers: brokers,
		TLS: kafka.TLS{Enable: *b.kafkaTLS, CAFile: *b.kafkaCA, CertFile: *b.kafkaCert, KeyFile: *b.kafkaKey,
			ServerName: *b.kafkaServerName, InsecureSkipVerify: *b.kafkaSkipVerify},
		SASL: kafka.SASL{Mechanism: *b.saslMech, User: *b.saslUser, Password: pass}}, nil
}

// secretValue is the secret of flag name: value (from FLOWBUS_<NAME> or the
// config file), or the content of file (--<name>-file) without its trailing
// newline; not both.
func secretValue(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("%w: both --%s-file and %s (or the config key %s) are set: give one", errUsage, name, envName(name), name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("--%s-file %s is empty", name, file)
	}
	return v, nil
}
