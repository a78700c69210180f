package schema

import "testing"

// TestGenerateCoversKeywords: the generator makes a valid document for
// schemas built from the keywords it claims (each document is validated
// against the schema by generate itself), and none for a pattern.
func TestGenerateCoversKeywords(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
		want         int // documents generated
	}{
		{"formats and bounds", `{"type":"object","required":["at","id","mail","day","n","x"],"properties":{
			"at":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},
			"mail":{"type":"string","format":"email"},"day":{"type":"string","format":"date"},
			"n":{"type":"integer","minimum":10,"maximum":20,"multipleOf":3},
			"x":{"type":"number","exclusiveMinimum":2},"opt":{"type":"boolean"}}}`, 2},
		{"lengths", `{"type":"object","required":["s"],"properties":{"s":{"type":"string","minLength":12,"maxLength":12}}}`, 1},
		{"nested, arrays, enum, const", `{"type":"object","required":["items","kind","v"],"properties":{
			"items":{"type":"array","minItems":2,"items":{"type":"object","required":["sku"],"properties":{"sku":{"type":"string"}}}},
			"kind":{"enum":["a","b"]},"v":{"const":3}}}`, 1},
		{"$ref and $defs", `{"$defs":{"money":{"type":"object","required":["cents"],"properties":{"cents":{"type":"integer","minimum":1}}}},
			"type":"object","required":["total"],"properties":{"total":{"$ref":"#/$defs/money"}}}`, 1},
		{"allOf and anyOf", `{"allOf":[{"type":"object","required":["a"],"properties":{"a":{"type":"string"}}},
			{"type":"object","required":["b"],"properties":{"b":{"anyOf":[{"type":"integer"},{"type":"string"}]}}}]}`, 1},
		{"nullable", `{"type":"object","required":["n"],"properties":{"n":{"type":["null","integer"]}}}`, 1},
		{"pattern", `{"type":"object","required":["iban"],"properties":{"iban":{"type":"string","pattern":"^[A-Z]{2}[0-9]{2}"}}}`, 0},
	} {
		v, err := compile("T", 1, []byte(tc.schema), "")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := v.generate()
		if len(got) != tc.want {
			t.Errorf("%s: %d documents %q, want %d", tc.name, len(got), got, tc.want)
		}
	}
}
