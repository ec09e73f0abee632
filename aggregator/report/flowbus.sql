-- flowbus.sql: DuckDB macros for flowbus's Parquet (`flowbus sql > flowbus.sql`,
-- then `duckdb -init flowbus.sql`). Temporary macros: they are not written
-- into a database file, and every session that wants them loads this file.
--
-- latency_hist is STRUCT(bucket SMALLINT, count BIGINT)[]: sparse counts of
-- fixed log-linear buckets (schemas/README.md, "Latency histogram"), so any
-- set of histograms merges exactly by adding the counts of equal buckets.
-- Lambdas are written `lambda x: …`, which needs DuckDB 1.3 or later.
-- aggregator/report embeds this file; its tests hold every macro to the Go
-- code (schemas.HistValue, Histogram.Quantile and Merge).

-- flowbus_bucket_ns(bucket): the latency a bucket reads as, in ns
-- (schemas.HistValue): its midpoint; bucket 0 → 512, the overflow bucket
-- 833 → its lower bound 2^36. Bucket i in between has k = (i-1) // 32,
-- s = (i-1) % 32 and covers [(32+s)·2^(k+5), (33+s)·2^(k+5)).
CREATE OR REPLACE TEMP MACRO flowbus_bucket_ns(bucket) AS
  CASE WHEN bucket <= 0 THEN CAST(512 AS BIGINT)
       WHEN bucket >= 833 THEN CAST(1 AS BIGINT) << 36
       ELSE ((32 + (bucket - 1) % 32) * (CAST(1 AS BIGINT) << (5 + (bucket - 1) // 32)))
            + (CAST(1 AS BIGINT) << (4 + (bucket - 1) // 32)) END;

-- flowbus_hist_total(hist): the number of observations in hist.
CREATE OR REPLACE TEMP MACRO flowbus_hist_total(hist) AS
  coalesce(CAST(list_sum(list_transform(hist, lambda h: h.count)) AS BIGINT), 0);

-- flowbus_quantile(hist, q): the q-quantile (0 ≤ q ≤ 1) of hist in ns, as
-- schemas.Histogram.Quantile computes it: flowbus_bucket_ns of the first
-- bucket whose running count reaches rank ceil(q·total), at least 1 and at
-- most total; 0 for an empty or NULL hist. hist may hold a bucket more than
-- once and in any order, so flowbus_quantile(flatten(list(latency_hist)), q)
-- is the quantile of a group's histograms merged. The bucket is found by
-- bisection over 0…833 (10 steps of list_reduce, each counting the observations at or
-- below a bucket), so hist needs no sorting or merging first.
CREATE OR REPLACE TEMP MACRO flowbus_quantile(hist, q) AS
  CASE WHEN flowbus_hist_total(hist) <= 0 THEN CAST(0 AS BIGINT)
  ELSE flowbus_bucket_ns(list_reduce(list_transform(range(10), lambda i: {'lo': 0, 'hi': 833}),
    lambda acc, i: CASE
      WHEN acc.lo >= acc.hi THEN acc
      WHEN coalesce(list_sum(list_transform(list_filter(hist, lambda h: h.bucket <= (acc.lo + acc.hi) // 2), lambda h: h.count)), 0)
           >= least(flowbus_hist_total(hist), greatest(1, ceil(q * CAST(flowbus_hist_total(hist) AS DOUBLE))))
        THEN {'lo': acc.lo, 'hi': (acc.lo + acc.hi) // 2}
      ELSE {'lo': (acc.lo + acc.hi) // 2 + 1, 'hi': acc.hi} END,
    {'lo': 0, 'hi': 833}).hi) END;

-- flowbus_hist_merge(latency_hist): an aggregate, the histograms of a
-- group's rows as one list (flatten(list(latency_hist))): what
-- flowbus_quantile and flowbus_hist_total take for the group's histograms
-- merged, e.g. flowbus_quantile(flowbus_hist_merge(latency_hist), 0.99) in a
-- GROUP BY is the p99 over every window, file and late row of a group. A
-- bucket may appear more than once in it; flowbus_hist_compact adds them up.
CREATE OR REPLACE TEMP MACRO flowbus_hist_merge(latency_hist) AS
  flatten(list(latency_hist));

-- flowbus_hist_compact(hist): hist (buckets in any order, repeated) as a
-- histogram with one element per bucket, in bucket order, as
-- schemas.Histogram.Merge builds it ([] for an empty or NULL hist). Its cost
-- is the length of hist times its distinct buckets.
CREATE OR REPLACE TEMP MACRO flowbus_hist_compact(hist) AS
  coalesce(list_transform(list_sort(list_distinct(list_transform(hist, lambda h: h.bucket)), 'ASC'),
    lambda b: {'bucket': b, 'count': CAST(list_sum(list_transform(list_filter(hist, lambda h: h.bucket = b), lambda h: h.count)) AS BIGINT)}),
    []);

-- flowbus_pairs(dir), flowbus_routes(dir), flowbus_flows(dir): the tables
-- pair_rollup, route_rollup and flows (--raw-flows) of the aggregator's
-- --data-dir dir, with the Hive partition columns date and hour.
CREATE OR REPLACE TEMP MACRO flowbus_pairs(dir) AS TABLE
  SELECT * FROM read_parquet(dir || '/pair_rollup/*/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE TEMP MACRO flowbus_routes(dir) AS TABLE
  SELECT * FROM read_parquet(dir || '/route_rollup/*/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE TEMP MACRO flowbus_flows(dir) AS TABLE
  SELECT * FROM read_parquet(dir || '/flows/*/*/*.parquet', hive_partitioning = true);
