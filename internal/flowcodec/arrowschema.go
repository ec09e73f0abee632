package flowcodec

import (
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowbus/flowbus/schemas"
)

// SchemaMetadataKey is the Arrow schema metadata key whose value names the
// schema version (SchemaVersion) of a flowbus Arrow stream.
const SchemaMetadataKey = "flowbus.schema"

var (
	tsType = &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}
	// Dictionary index widths: int8 for enums with a handful of values,
	// int16 for drop reasons and for strings with few distinct values per
	// batch (namespaces, workloads, kinds, nodes, services, methods), int32
	// for strings that can be as many as the rows (pods, labels, URLs, DNS
	// names). Narrow indices are fewer bytes to compress and decompress.
	enumType   = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
	enumType16 = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	dictStr    = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	dictStr16  = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	strList    = arrow.ListOf(dictStr)
	strList16  = arrow.ListOf(dictStr16)
	histEntry  = arrow.StructOf(
		arrow.Field{Name: "bucket", Type: arrow.PrimitiveTypes.Int16},
		arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64},
	)
	histType = arrow.ListOf(histEntry)
	// IP addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d):
	// fixed width needs no offsets (which zstd cannot compress) and an
	// address decodes without parsing.
	ipType = &arrow.FixedSizeBinaryType{ByteWidth: 16}
)

// NewArrowSchema returns the Arrow schema flow.v1: one column per
// schemas.Flow field, in field order, nested Endpoint, Service and L7 fields
// flattened into prefixed columns (columns_gen.go, generated from
// schemas/flow.go). The schema metadata carries SchemaMetadataKey =
// schemas.SchemaVersion. Every column is documented in schemas/README.md.
// Each call returns a new *arrow.Schema.
func NewArrowSchema() *arrow.Schema {
	md := arrow.NewMetadata([]string{SchemaMetadataKey}, []string{schemas.SchemaVersion})
	return arrow.NewSchema(arrowFields(), &md)
}
