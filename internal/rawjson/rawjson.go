// Package rawjson holds the module's byte-level JSON primitives: one
// scanner and one string escaper, for the few hot paths where
// encoding/json's reflection and allocations were measured to cost too
// much (checking every appended payload, validating a payload against its
// schema without decoding it).
//
// The contract: Valid reports exactly what json.Valid reports (the same
// grammar and nesting limit; bytes of 0x80 and above are accepted inside
// strings, as json.Valid does); AppendString appends exactly the bytes
// json.Marshal prints for a string (HTML characters, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD); the Scanner's methods accept
// exactly the tokens of that grammar and never allocate. Anything else,
// decoding into Go values in particular, is encoding/json's job.
package rawjson

// MaxDepth is encoding/json's nesting limit, which Valid applies too.
const MaxDepth = 10000

// Scanner walks the JSON text in Data from offset I. Each method that
// reads a token checks its syntax, moves I past it when it is well formed,
// and reports whether it was; after a false result I is unspecified.
type Scanner struct {
	Data []byte
	I    int
}

// Space moves past white space.
func (s *Scanner) Space() {
	for s.I < len(s.Data) {
		switch s.Data[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Peek returns the byte at I, or 0 at the end of the data.
func (s *Scanner) Peek() byte {
	if s.I < len(s.Data) {
		return s.Data[s.I]
	}
	return 0
}

// Byte moves past c when it is the byte at I.
func (s *Scanner) Byte(c byte) bool {
	if s.I < len(s.Data) && s.Data[s.I] == c {
		s.I++
		return true
	}
	return false
}

// Literal moves past lit ("true", "false" or "null") at I.
func (s *Scanner) Literal(lit string) bool {
	if len(s.Data)-s.I < len(lit) || string(s.Data[s.I:s.I+len(lit)]) != lit {
		return false
	}
	s.I += len(lit)
	return true
}

// String moves past the string whose opening quote is at I. escaped
// reports a backslash escape in it, ascii that all its bytes are below
// 0x80; when neither holds, Data[start+1:I-1] is its text.
func (s *Scanner) String() (escaped, ascii, ok bool) {
	d := s.Data
	if s.I >= len(d) || d[s.I] != '"' {
		return false, false, false
	}
	var high byte
	for i := s.I + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			s.I = i + 1
			return escaped, high < 0x80, true
		case c < 0x20:
			return false, false, false
		case c >= 0x80:
			high = c
		case c == '\\':
			escaped = true
			i++
			if i >= len(d) {
				return false, false, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) {
					return false, false, false
				}
				for _, h := range d[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false, false, false
					}
				}
				i += 4
			default:
				return false, false, false
			}
		}
	}
	return false, false, false
}

// Number moves past the number at I, by the JSON grammar.
func (s *Scanner) Number() bool {
	d, i := s.Data, s.I
	digits := func() bool {
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return false
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		return true
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.I = i
	return true
}

// IsNumber reports whether b is one number by the JSON grammar.
func IsNumber(b []byte) bool {
	s := Scanner{Data: b}
	return s.Number() && s.I == len(b)
}

// Value moves past one value at I (after white space, if any), objects
// and arrays included, nested at most MaxDepth-depth deep.
func (s *Scanner) Value(depth int) bool {
	s.Space()
	switch c := s.Peek(); {
	case c == '{' || c == '[':
		if depth >= MaxDepth {
			return false
		}
		s.I++
		closer := c + 2 // '}' or ']'
		s.Space()
		if s.Byte(closer) {
			return true
		}
		for {
			if c == '{' {
				s.Space()
				if _, _, ok := s.String(); !ok {
					return false
				}
				s.Space()
				if !s.Byte(':') {
					return false
				}
			}
			if !s.Value(depth + 1) {
				return false
			}
			s.Space()
			if s.Byte(closer) {
				return true
			}
			if !s.Byte(',') {
				return false
			}
		}
	case c == '"':
		_, _, ok := s.String()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.Number()
	case c == 't':
		return s.Literal("true")
	case c == 'f':
		return s.Literal("false")
	case c == 'n':
		return s.Literal("null")
	}
	return false
}

// Valid reports whether b is one JSON value with optional surrounding
// white space: what json.Valid reports.
func Valid(b []byte) bool {
	s := Scanner{Data: b}
	if !s.Value(0) {
		return false
	}
	s.Space()
	return s.I == len(b)
}
