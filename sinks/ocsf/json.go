package ocsf

import (
	"strconv"
	"unicode/utf8"
)

// A tiny append-only JSON writer: key adds the separator a value needs
// (nothing after '{' or '['), so objects are written without bookkeeping.

func sep(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] != '{' && b[n-1] != '[' {
		b = append(b, ',')
	}
	return b
}

// key appends `"k":`; k must need no escaping (it is always a literal).
func key(b []byte, k string) []byte {
	b = sep(b)
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func kStr(b []byte, k, v string) []byte { return appendString(key(b, k), v) }

func kInt(b []byte, k string, v int64) []byte { return strconv.AppendInt(key(b, k), v, 10) }

func kUint(b []byte, k string, v uint64) []byte { return strconv.AppendUint(key(b, k), v, 10) }

func kBool(b []byte, k string, v bool) []byte { return strconv.AppendBool(key(b, k), v) }

func kStrs(b []byte, k string, vs []string) []byte {
	b = append(key(b, k), '[')
	for _, v := range vs {
		b = appendString(sep(b), v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
