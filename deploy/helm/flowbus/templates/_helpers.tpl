{{- define "flowbus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowbus.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "agent") */}}
{{- define "flowbus.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "flowbus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "flowbus.busArgs" -}}
- --bus={{ required "bus.url is required" .Values.bus.url }}
{{- if hasPrefix "kafka://" .Values.bus.url }}
- --kafka-topic={{ .Values.bus.kafka.topic }}
{{- else if hasPrefix "nats://" .Values.bus.url }}
- --nats-partitions={{ .Values.bus.natsPartitions }}
{{- else }}
{{- fail "bus.url must start with nats:// or kafka://" }}
{{- end }}
{{- end -}}

{{/*
The bus's TLS and authentication flags, the same for agent and aggregator
(busConnFlags in cmd/flowbus): Secrets mounted as files under /etc/flowbus
(flowbus.busConnMounts, flowbus.busConnVolumes), never put in the pod spec.
*/}}
{{- define "flowbus.natsAuthFile" -}}
{{- $files := dict "password" "password" "token" "token" "nkey" "user.nk" "creds" "user.creds" -}}
{{- required (printf "bus.nats.auth.method %q: want password, token, nkey or creds" .) (get $files .) -}}
{{- end -}}

{{- define "flowbus.busConnArgs" -}}
{{- $b := .Values.bus }}
{{- if hasPrefix "kafka://" $b.url }}
{{- if $b.kafka.tls.enabled }}
- --kafka-tls
- --kafka-tls-ca-file=/etc/flowbus/kafka-tls/ca.crt
{{- if $b.kafka.tls.mtls }}
- --kafka-tls-cert-file=/etc/flowbus/kafka-tls/tls.crt
- --kafka-tls-key-file=/etc/flowbus/kafka-tls/tls.key
{{- end }}
{{- with $b.kafka.tls.serverName }}
- --kafka-tls-server-name={{ . }}
{{- end }}
{{- end }}
{{- if $b.kafka.sasl.mechanism }}
- --kafka-sasl-mechanism={{ $b.kafka.sasl.mechanism }}
- --kafka-sasl-user={{ required "bus.kafka.sasl.user is required with SASL" $b.kafka.sasl.user }}
- --kafka-sasl-password-file=/etc/flowbus/kafka-sasl/password
{{- end }}
{{- else if hasPrefix "nats://" $b.url }}
{{- if $b.nats.tls.enabled }}
- --nats-tls-ca-file=/etc/flowbus/nats-tls/ca.crt
{{- if $b.nats.tls.mtls }}
- --nats-tls-cert-file=/etc/flowbus/nats-tls/tls.crt
- --nats-tls-key-file=/etc/flowbus/nats-tls/tls.key
{{- end }}
{{- with $b.nats.tls.serverName }}
- --nats-tls-server-name={{ . }}
{{- end }}
{{- end }}
{{- with $b.nats.auth.method }}
{{- $file := printf "/etc/flowbus/nats-auth/%s" (include "flowbus.natsAuthFile" .) }}
{{- if eq . "password" }}
- --nats-user={{ required "bus.nats.auth.user is required with method password" $b.nats.auth.user }}
- --nats-password-file={{ $file }}
{{- else if eq . "token" }}
- --nats-token-file={{ $file }}
{{- else if eq . "nkey" }}
- --nats-nkey-seed-file={{ $file }}
{{- else }}
- --nats-creds-file={{ $file }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "flowbus.busConnMounts" -}}
{{- $b := .Values.bus }}
{{- if hasPrefix "kafka://" $b.url }}
{{- if $b.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/flowbus/kafka-tls
  readOnly: true
{{- end }}
{{- if $b.kafka.sasl.mechanism }}
- name: kafka-sasl
  mountPath: /etc/flowbus/kafka-sasl
  readOnly: true
{{- end }}
{{- else }}
{{- if $b.nats.tls.enabled }}
- name: nats-tls
  mountPath: /etc/flowbus/nats-tls
  readOnly: true
{{- end }}
{{- if $b.nats.auth.method }}
- name: nats-auth
  mountPath: /etc/flowbus/nats-auth
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "flowbus.busConnVolumes" -}}
{{- $b := .Values.bus }}
{{- if hasPrefix "kafka://" $b.url }}
{{- if $b.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ required "bus.kafka.tls.secretName is required with TLS" $b.kafka.tls.secretName }}
{{- end }}
{{- if $b.kafka.sasl.mechanism }}
- name: kafka-sasl
  secret:
    secretName: {{ required "bus.kafka.sasl.passwordSecret.name is required with SASL" $b.kafka.sasl.passwordSecret.name }}
    items:
      - key: {{ $b.kafka.sasl.passwordSecret.key }}
        path: password
{{- end }}
{{- else }}
{{- if $b.nats.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ required "bus.nats.tls.secretName is required with TLS" $b.nats.tls.secretName }}
{{- end }}
{{- with $b.nats.auth.method }}
- name: nats-auth
  secret:
    secretName: {{ required (printf "bus.nats.auth.secret.name is required with method %s" .) $b.nats.auth.secret.name }}
    items:
      - key: {{ default (include "flowbus.natsAuthFile" .) $b.nats.auth.secret.key }}
        path: {{ include "flowbus.natsAuthFile" . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* /metrics over TLS (metricsTLS): the flags, the mount and the volume. */}}
{{- define "flowbus.metricsTLSArgs" -}}
{{- if .Values.metricsTLS.enabled }}
- --metrics-tls-cert-file=/etc/flowbus/metrics-tls/tls.crt
- --metrics-tls-key-file=/etc/flowbus/metrics-tls/tls.key
{{- if .Values.metricsTLS.mtls }}
- --metrics-tls-client-ca-file=/etc/flowbus/metrics-tls/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "flowbus.metricsTLSMounts" -}}
{{- if .Values.metricsTLS.enabled }}
- name: metrics-tls
  mountPath: /etc/flowbus/metrics-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "flowbus.metricsTLSVolumes" -}}
{{- if .Values.metricsTLS.enabled }}
- name: metrics-tls
  secret:
    secretName: {{ required "metricsTLS.secretName is required with metrics TLS" .Values.metricsTLS.secretName }}
{{- end }}
{{- end -}}
