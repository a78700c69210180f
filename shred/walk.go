package shred

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/strata-go/strata/internal/rawjson"
)

var errBadJSON = errors.New("not valid JSON")

// pointerEscaper escapes a property name as a JSON pointer token.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// walk visits the values of the JSON document data with their JSON
// pointers. take says whether the value at ptr, whose first byte is
// first, is taken whole: then found gets its byte range and walk does not
// look inside it. Other objects and arrays are walked into.
func walk(data []byte, take func(ptr string, first byte) bool, found func(ptr string, start, end int) error) error {
	s := &rawjson.Scanner{Data: data}
	if err := walkValue(s, "", 0, take, found); err != nil {
		return err
	}
	s.Space()
	if s.I != len(data) {
		return errBadJSON
	}
	return nil
}

func walkValue(s *rawjson.Scanner, ptr string, depth int, take func(string, byte) bool, found func(string, int, int) error) error {
	s.Space()
	start, c := s.I, s.Peek()
	if take(ptr, c) {
		if !s.Value(depth) {
			return errBadJSON
		}
		return found(ptr, start, s.I)
	}
	if c != '{' && c != '[' {
		if !s.Value(depth) {
			return errBadJSON
		}
		return nil
	}
	if depth >= rawjson.MaxDepth {
		return errBadJSON
	}
	s.I++
	closer := c + 2
	s.Space()
	if s.Byte(closer) {
		return nil
	}
	for i := 0; ; i++ {
		var tok string
		if c == '{' {
			s.Space()
			ks := s.I
			escaped, _, ok := s.String()
			if !ok {
				return errBadJSON
			}
			key := string(s.Data[ks+1 : s.I-1])
			if escaped {
				if err := json.Unmarshal(s.Data[ks:s.I], &key); err != nil {
					return errBadJSON
				}
			}
			tok = key
			if strings.ContainsAny(key, "~/") {
				tok = pointerEscaper.Replace(key)
			}
			s.Space()
			if !s.Byte(':') {
				return errBadJSON
			}
		} else {
			tok = strconv.Itoa(i)
		}
		if err := walkValue(s, ptr+"/"+tok, depth+1, take, found); err != nil {
			return err
		}
		s.Space()
		if s.Byte(closer) {
			return nil
		}
		if !s.Byte(',') {
			return errBadJSON
		}
	}
}

// splice is one replacement of data[start:end].
type splice struct {
	start, end int
	with       []byte
}

// apply returns data with the (ordered, disjoint) splices made.
func apply(data []byte, sp []splice) []byte {
	if len(sp) == 0 {
		return data
	}
	n := len(data)
	for _, x := range sp {
		n += len(x.with) - (x.end - x.start)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, x := range sp {
		out = append(append(out, data[at:x.start]...), x.with...)
		at = x.end
	}
	return append(out, data[at:]...)
}
