// Package synthetic generates the flows of a realistic fleet, for demos,
// benchmarks and end-to-end tests: the payments fleet.
//
//	istio-system/istio-ingressgateway → payments/checkout-api   HTTP :8080
//	    GET /api/v1/orders/{id}, POST /api/v1/checkout,
//	    GET /api/v1/customers/{uuid}/cards, GET /healthz
//	payments/checkout-api → payments/ledger-svc                 HTTP :8080
//	payments/checkout-api → payments/fraud-detector             HTTP :9000
//	payments/checkout-api → payments/sanctions-svc              HTTP :8443
//	payments/checkout-api → kube-system/coredns (svc kube-dns)  DNS  :53/udp
//	payments/ledger-svc   → payments/postgres-primary           TCP  :5432
//	payments/rewards-cron → payments/ledger-svc                 DROPPED POLICY_DENIED
//	reserved:world        → payments/checkout-api               DROPPED INVALID_SOURCE_IP
//	payments/fraud-detector → payments/ledger-svc               DROPPED CT_MISSING_TCP_ACK_FLAG
//	payments/ledger-svc   → payments/postgres-primary           DROPPED CT_MAP_INSERTION_FAILED
//
// Each HTTP route has a log-normal latency (its own median and shape; 5xx
// answers are 3× slower) and a status mix including some 5xx; URLs carry real
// numeric order ids and customer UUIDs, drawn with a Zipf-like law from hot
// sets (800k orders, 20k customers) as real traffic is: a few are busy, most
// rare. DNS answers have qtypes A/AAAA, NOERROR with the
// service IP or NXDOMAIN for a search-path miss. Pods have Kubernetes-style
// names (checkout-api-7d9f8b6c4-x2x9k), IPs in 10.0.x.y, Cilium identities
// and Hubble-form labels ("k8s:app=checkout-api"); flows carry TCP flags
// (SYN, ACK, PSH, FIN, 2 % RST), bytes and packets each way, the node name.
//
// Decisions:
//   - Deterministic: flows depend only on Config (Seed, Start, Rate, Node),
//     never on wall time: flow i is stamped Start + i/Rate (i µs apart at
//     Rate 0), so a given seed reproduces the same flows byte for byte.
//   - Exact totals: the generator counts what it generated per Pair
//     (flows, bytes, packets) and per HTTP Route (flows, optionally every
//     latency), so tests downstream (aggregation, Parquet rollups) compare
//     against exact numbers. Source.Totals counts only batches that were
//     delivered on the output channel.
//   - Cheap: a batch's generated strings (UUIDs, URLs) live in one string
//     allocated per batch; everything else is shared from the fleet model.
//     Log-normal draws are lookups in a 4096-quantile table per shape, hot-set
//     ids one inverse-CDF Pow: no Gaussian draw, exp or rejection loop per flow.
//     Run reuses batches handed back through Recycle (agent.Recycler).
//   - Pacing: Run sleeps until each batch is due at Rate, in batches of at
//     most Rate/100 flows so a slow rate still flows smoothly.
package synthetic
