package eventstore

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/sqltext"
)

// SQL is written one way in this package (the module's, internal/sqltext): every statement is one string
// constant, whole, as it runs, next to the code that sends it, with a
// comment saying why it has its shape and the index it relies on. What
// differs between stores is written as a placeholder, filled in once per
// Store, in New, by the replacer sqlExpander returns:
//
//	{schema}         the configured schema, quoted as an identifier: {schema}.events
//	{event_columns}  the columns of an event row, in the order rows.go declares them
//	{status_columns} the columns of a subscription partition's status (status.go)
//	{channel}        the wake-up channel (Store.channel), as a string literal
//	{channel_name}   the same channel as an identifier, for LISTEN
//	{lock_seed}      the seed of the streams' advisory lock keys (appendLockSeed)
//
// The expanded statements live in Store.sql (queries); a statement with
// no placeholder is sent as its constant. Values always travel as
// parameters ($1, …), never in the text; a statement is never assembled
// from pieces at run time (an optional condition is a parameter that may
// be NULL, as in readLogFilteredSQL). The one generated family, the 32
// append statements, is built in New from whole pieces (appendsql.go) and
// printed whole in testdata/append_sql.golden.

// queries holds the store's statements with their placeholders filled in.
type queries struct {
	expand *strings.Replacer // the placeholders, for the statements of other files

	append          map[appendShape]string
	appendBatch     [2]string // the combined append, by notify (appendsql.go)
	streamVersion   string
	readStream      string
	readStreamPage  string
	readLog         string
	readLogFiltered string
	logWindow       string
	keys            keyQueries // readkeys.go
	saveSnapshot    string
	saveSnapshotPII string // saveSnapshotPIISQL, for a store with an Opener
	loadSnapshot    string
	lookupAppend    string
	admin           adminQueries // admin.go
}

// sqlExpander returns the replacer of the placeholders of the statements
// of a store in schema whose wake-up channel is channel.
func sqlExpander(schema, channel string) *strings.Replacer {
	return sqltext.Expander(schema,
		"{status_columns}", statusColumns,
		"{event_columns}", eventColumns,
		"{channel}", "'"+strings.ReplaceAll(channel, "'", "''")+"'",
		"{channel_name}", pgx.Identifier{channel}.Sanitize(),
		// Of the quoted name, as ever: processes of every release take
		// the same lock for a stream.
		"{lock_seed}", strconv.FormatInt(appendLockSeed(pgx.Identifier{schema}.Sanitize()), 10),
	)
}

func buildQueries(schema, channel string) queries {
	r := sqlExpander(schema, channel)
	return queries{
		expand:          r,
		append:          buildAppendQueries(r),
		appendBatch:     buildAppendBatchQueries(r),
		streamVersion:   r.Replace(streamVersionSQL),
		readStream:      r.Replace(readStreamSQL),
		readStreamPage:  r.Replace(readStreamPageSQL),
		readLog:         r.Replace(readLogSQL),
		readLogFiltered: r.Replace(readLogFilteredSQL),
		logWindow:       r.Replace(logWindowSQL),
		keys:            buildKeyQueries(r),
		saveSnapshot:    r.Replace(saveSnapshotSQL),
		saveSnapshotPII: r.Replace(saveSnapshotPIISQL),
		loadSnapshot:    r.Replace(loadSnapshotSQL),
		lookupAppend:    r.Replace(lookupAppendSQL),
		admin:           buildAdminQueries(r),
	}
}
