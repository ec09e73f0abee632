package report

import (
	"context"
	"database/sql"
)

// PairSQL returns the DuckDB query of the pair table over every pair_rollup
// file under out, merged over all windows: per (source workload,
// destination workload, port, protocol, verdict, drop reason), flows and
// bytes and packets both ways, most flows first. Workloads are written
// "namespace/workload"; an endpoint outside the cluster is "world". where,
// if not empty, filters as in RouteSQL. It uses the macros of MacrosSQL.
func PairSQL(out, where string) string {
	cond := ""
	if where != "" {
		cond = "\nWHERE " + where
	}
	return `SELECT CASE WHEN src_workload = '' THEN 'world' ELSE src_namespace || '/' || src_workload END AS src,
       CASE WHEN dst_workload = '' THEN 'world' ELSE dst_namespace || '/' || dst_workload END AS dst,
       dst_port, protocol, verdict, drop_reason,
       sum(flows)::BIGINT AS flows, sum(bytes_fwd + bytes_rev)::BIGINT AS bytes,
       sum(packets_fwd + packets_rev)::BIGINT AS packets
FROM flowbus_pairs(` + dirSQL(out) + `)` + cond + `
GROUP BY ALL
ORDER BY flows DESC, src, dst, dst_port, verdict;`
}

// PairRow is one row of the pair table.
type PairRow struct {
	Src, Dst                string
	Port                    int32
	Protocol, Verdict, Drop string
	Flows, Bytes, Packets   int64
}

// Pairs runs PairSQL(out, where) in an in-memory DuckDB and returns the rows
// and the SQL text. With no pair_rollup file under out it returns no rows.
func Pairs(ctx context.Context, out, where string) ([]PairRow, string, error) {
	q := PairSQL(out, where)
	rows, err := query(ctx, out, "pair_rollup", q, func(rs *sql.Rows) (PairRow, error) {
		var r PairRow
		err := rs.Scan(&r.Src, &r.Dst, &r.Port, &r.Protocol, &r.Verdict, &r.Drop, &r.Flows, &r.Bytes, &r.Packets)
		return r, err
	})
	return rows, q, err
}
