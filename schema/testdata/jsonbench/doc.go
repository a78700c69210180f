// Package jsonbench measures, end to end on PostgreSQL, what each way of
// doing the schema package's JSON work costs: the registry as it is, and
// encoding/json or a maintained JSON library with jsonschema's own
// validator, with and without the registry's byte-level validation. It is
// a module of its own so that the libraries it compares stay out of
// Strata's go.mod.
//
//	cd schema/testdata/jsonbench
//	DATABASE_URL=postgres://postgres@127.0.0.1:5433/test go test -run '^$' -bench . -benchmem
package jsonbench
