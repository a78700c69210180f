package schema_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-go/strata/schema"
)

type Deposited struct {
	AccountID   string `json:"account_id"`
	AmountCents int64  `json:"amount_cents"`
	Note        string `json:"note,omitempty"`
}

const depositedV1 = `{"type":"object","required":["account_id","amount"],"additionalProperties":false,
	"properties":{"account_id":{"type":"string","minLength":1},"amount":{"type":"number","minimum":0},"note":{"type":"string"}}}`

const depositedV2 = `{"type":"object","required":["account_id","amount_cents"],"additionalProperties":false,
	"properties":{"account_id":{"type":"string","minLength":1},"amount_cents":{"type":"integer","minimum":0},"note":{"type":"string"}}}`

func depositRegistry(t *testing.T, up schema.UpcastFunc) *schema.Registry {
	t.Helper()
	reg := schema.NewRegistry()
	must(t, reg.RegisterVersion("Deposited", 1, []byte(depositedV1)))
	must(t, schema.Register[Deposited](reg, "Deposited", 2, []byte(depositedV2)))
	must(t, reg.Upcast("Deposited", 1, up))
	must(t, reg.Sample(Deposited{AccountID: "acct-1", AmountCents: 5}))
	return reg
}

// TestCheckRunsUpcasters: an upcaster whose output the current schema
// refuses (1.5 in an integer field; a required field dropped) fails
// Check on a sample generated from the old version's schema; a correct
// one passes.
func TestCheckRunsUpcasters(t *testing.T) {
	t.Parallel()
	copyAmount := func(doc map[string]any) (map[string]any, error) {
		doc["amount_cents"] = doc["amount"] // euros as cents, unconverted: 1.5 stays 1.5
		delete(doc, "amount")
		return doc, nil
	}
	dropAccount := func(doc map[string]any) (map[string]any, error) {
		delete(doc, "account_id")
		doc["amount_cents"] = json.Number("150")
		delete(doc, "amount")
		return doc, nil
	}
	convert := func(doc map[string]any) (map[string]any, error) {
		f, err := doc["amount"].(json.Number).Float64()
		if err != nil {
			return nil, err
		}
		doc["amount_cents"] = int64(f*100 + 0.5)
		delete(doc, "amount")
		return doc, nil
	}
	for _, tc := range []struct {
		name string
		up   schema.UpcastFunc
		want string // "" = Check passes
	}{
		{"fraction into integer", copyAmount, `/amount_cents`},
		{"required field dropped", dropAccount, `account_id`},
		{"panics", func(map[string]any) (map[string]any, error) { panic("boom") }, "panicked"},
		{"correct", convert, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := depositRegistry(t, tc.up).Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("Check passed a broken upcaster")
			case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"Deposited" v1 does not upcast`)):
				t.Fatalf("Check: %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestSampleJSON: registered samples replace generated ones; an invalid
// sample is refused; a schema the generator cannot satisfy asks for one.
func TestSampleJSON(t *testing.T) {
	t.Parallel()
	// Correct only for amounts that are whole euros: generated samples
	// (1.5) fail, a sample of 2 euros passes.
	wholeEuros := func(doc map[string]any) (map[string]any, error) {
		doc["amount_cents"] = json.Number(doc["amount"].(json.Number).String() + "00")
		delete(doc, "amount")
		return doc, nil
	}
	reg := depositRegistry(t, wholeEuros)
	if err := reg.Check(); err == nil || !strings.Contains(err.Error(), "generated sample") {
		t.Fatalf("Check with generated samples: %v", err)
	}
	if err := reg.SampleJSON("Deposited", 1, []byte(`{"account_id":"a","amount":-1}`)); err == nil {
		t.Fatal("an invalid sample was accepted")
	}
	if err := reg.SampleJSON("Deposited", 7, []byte(`{}`)); err == nil {
		t.Fatal("a sample of an unknown version was accepted")
	}
	must(t, reg.SampleJSON("Deposited", 1, []byte(`{"account_id":"a","amount":2}`)))
	if err := reg.Check(); err != nil {
		t.Fatalf("Check with a registered sample: %v", err)
	}

	pat := schema.NewRegistry()
	must(t, pat.RegisterVersion("Deposited", 1, []byte(`{"type":"object","required":["iban"],"properties":{"iban":{"type":"string","pattern":"^[A-Z]{2}[0-9]{2}"}}}`)))
	must(t, schema.Register[Deposited](pat, "Deposited", 2, []byte(depositedV2)))
	must(t, pat.Upcast("Deposited", 1, func(doc map[string]any) (map[string]any, error) {
		return map[string]any{"account_id": doc["iban"], "amount_cents": 0}, nil
	}))
	must(t, pat.Sample(Deposited{AccountID: "acct-1"}))
	if err := pat.Check(); err == nil || !strings.Contains(err.Error(), "SampleJSON") {
		t.Fatalf("Check of an unsatisfiable schema: %v", err)
	}
	must(t, pat.SampleJSON("Deposited", 1, []byte(`{"iban":"DE89"}`)))
	if err := pat.Check(); err != nil {
		t.Fatalf("Check with a sample: %v", err)
	}
}

// TestEncodeKeepsHTMLCharacters: '<', '>' and '&' are stored as written.
func TestEncodeKeepsHTMLCharacters(t *testing.T) {
	t.Parallel()
	reg := depositRegistry(t, func(doc map[string]any) (map[string]any, error) { return doc, nil })
	ev, err := reg.Encode(Deposited{AccountID: "a&b", AmountCents: 1, Note: "<b>x</b> -> y"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"account_id":"a&b","amount_cents":1,"note":"<b>x</b> -> y"}`; string(ev.Data) != want {
		t.Fatalf("Encode: %s, want %s", ev.Data, want)
	}
}
