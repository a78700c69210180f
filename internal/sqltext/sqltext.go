// Package sqltext is the one way the module writes SQL.
//
// Contract: every statement is one whole string constant, as it runs,
// next to the code that sends it, in the package that owns its tables.
// What differs between installations is a placeholder in braces, filled
// in once, when the component is built, by the replacer Expander returns:
// {schema} is the configured Postgres schema, quoted as an identifier
// ({schema}.events), and a package may add its own placeholders (the
// event store's are listed in eventstore/sql.go). Values always travel as
// parameters ($1, …), never in the text, and a statement is never
// assembled from pieces at run time: an optional condition is a parameter
// that may be NULL.
package sqltext

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// Expander returns the replacer that fills {schema} with schema, quoted,
// and each further placeholder with its value: more is a list of
// placeholder, value pairs, as strings.NewReplacer takes them.
func Expander(schema string, more ...string) *strings.Replacer {
	return strings.NewReplacer(append([]string{"{schema}", pgx.Identifier{schema}.Sanitize()}, more...)...)
}
