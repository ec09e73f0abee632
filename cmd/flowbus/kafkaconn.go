package main

import "github.com/flowbus/flowbus/sinks/kafka"

// kafkaConnFlags are the flags of how to reach Kafka (TLS, SASL), which
// every command that talks to Kafka through kafka.Conn shares: the agent's
// producer and the ocsf consumer.
type kafkaConnFlags struct {
	tls, skipVerify        bool
	caFile, cert, key      string
	saslMech, user, passwd string
}

// addKafkaConnFlags defines --kafka-tls, --kafka-tls-{ca,cert,key}-file,
// --kafka-tls-insecure-skip-verify and --kafka-sasl-{mechanism,user,password}
// in fs's current group; with renamed, also the former names of the file
// flags (--kafka-tls-{ca,cert,key}) as deprecated aliases, which only the
// agent, which had them, keeps.
func addKafkaConnFlags(fs *flagSet, renamed bool) *kafkaConnFlags {
	k := &kafkaConnFlags{}
	fs.BoolVar(&k.tls, "kafka-tls", false, "connect to Kafka with TLS")
	fs.StringVar(&k.caFile, "kafka-tls-ca-file", "", "Kafka: CA bundle to verify brokers")
	if renamed {
		fs.alias("kafka-tls-ca", "kafka-tls-ca-file")
	}
	fs.StringVar(&k.cert, "kafka-tls-cert-file", "", "Kafka: client certificate (mTLS)")
	if renamed {
		fs.alias("kafka-tls-cert", "kafka-tls-cert-file")
	}
	fs.StringVar(&k.key, "kafka-tls-key-file", "", "Kafka: client key (mTLS)")
	if renamed {
		fs.alias("kafka-tls-key", "kafka-tls-key-file")
	}
	fs.BoolVar(&k.skipVerify, "kafka-tls-insecure-skip-verify", false, "Kafka: do not verify broker certificates")
	fs.StringVar(&k.saslMech, "kafka-sasl-mechanism", "", "Kafka SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&k.user, "kafka-sasl-user", "", "Kafka SASL user")
	fs.StringVar(&k.passwd, "kafka-sasl-password", "", "Kafka SASL password (prefer FLOWBUS_KAFKA_SASL_PASSWORD)")
	return k
}

// conn returns the kafka.Conn to brokers with the flags' TLS and SASL.
func (k *kafkaConnFlags) conn(brokers []string) kafka.Conn {
	return kafka.Conn{Brokers: brokers,
		TLS:  kafka.TLS{Enable: k.tls, CAFile: k.caFile, CertFile: k.cert, KeyFile: k.key, InsecureSkipVerify: k.skipVerify},
		SASL: kafka.SASL{Mechanism: k.saslMech, User: k.user, Password: k.passwd}}
}
