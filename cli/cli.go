package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// Exit codes returned by Run (and by ExitCode for the errors of Command).
const (
	// ExitOK: the command did what was asked, and found nothing wrong.
	ExitOK = 0
	// ExitError: the command failed (no database, a query failed, a
	// rebuild failed, …). The reason is on stderr.
	ExitError = 1
	// ExitUsage: the command line is wrong (unknown command or flag,
	// missing or bad argument) or the command needs what this binary does
	// not have (a registry or projections: see Config).
	ExitUsage = 2
	// ExitProblems: the command worked and found problems: `status` saw a
	// failing subscription, dead letters, a lag beyond --max-lag or
	// --max-lag-time, or transaction IDs behind the log's (after a
	// logical restore); `schema check` saw an inconsistent registry or stored
	// events that do not decode.
	ExitProblems = 3
	// ExitNotFound: what was asked for does not exist: `stream show` of a
	// stream without events, `trace` of a correlation ID no event carries,
	// `projection reset` or `projection rebuild` of an unknown name,
	// `dead-letters retry` of an unknown subscription.
	ExitNotFound = 4
)

// Error is an error carrying the exit code Run returns for it.
type Error struct {
	// Code is the exit code, one of the Exit constants.
	Code int
	// Err says what happened.
	Err error

	help bool // the command line itself is wrong: point at --help
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit code for an error returned by executing
// Command: ExitOK for nil, the Code of an *Error in its chain, else
// ExitError.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ExitError
}

func usageErr(format string, args ...any) error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// badCommandLine is a usage error about the command line's shape.
func badCommandLine(err error) error {
	return &Error{Code: ExitUsage, Err: err, help: true}
}

func notFound(format string, args ...any) error {
	return &Error{Code: ExitNotFound, Err: fmt.Errorf(format, args...)}
}

// Projections is what the CLI needs of the application's projections for
// `projection rebuild` and `projection reset`. *projection.Runner is one.
type Projections interface {
	// Rebuild wipes the named projection's read model and replays the log
	// into it, reporting progress now and then.
	Rebuild(ctx context.Context, name string, progress func(projection.Progress)) error
	// Reset moves the named projection's checkpoint to position to,
	// clearing its read model when to is the start of the log.
	Reset(ctx context.Context, name string, to eventstore.Position) error
}

// Config configures a CLI. The zero value (or nil) is the standalone
// `strata` binary: every command that needs only the event store.
type Config struct {
	// Registry is the application's schema registry. It enables
	// `schema check`. Default nil: `schema check` explains that it needs
	// an embedded CLI and exits with ExitUsage.
	Registry *schema.Registry
	// Projections are the application's projections, usually its
	// *projection.Runner. They enable
	// `projection rebuild` and make `projection reset` clear read models.
	// A name they do not know (projection.ErrUnknownProjection) is reset
	// as a plain subscription. Default nil: rebuild explains that it needs
	// an embedded CLI, and reset moves the subscription's checkpoint alone.
	Projections Projections
	// Name is the program's name in usage and messages. Default "strata".
	Name string
	// Schema is the default of --schema. Default: the schema of the
	// store behind Projections when they have one (a *projection.Runner
	// does: its Store method), else "strata".
	Schema string
	// DatabaseURL is the connection string used when neither
	// --database-url nor DATABASE_URL gives one. Default "": one of them
	// is required.
	DatabaseURL string
	// Pool, if set, is used instead of connecting: --database-url and
	// DATABASE_URL are then ignored. Default nil.
	Pool *pgxpool.Pool
	// Stdout receives command output. Default os.Stdout.
	Stdout io.Writer
	// Stderr receives errors and progress bars. Default os.Stderr.
	Stderr io.Writer
	// Getenv reads the environment (DATABASE_URL). Default os.Getenv.
	Getenv func(string) string
	// Now is the clock, for the ages printed. Default time.Now.
	Now func() time.Time
}

// CLI is the strata command line: the operator's commands, ready to run
// in the standalone binary or embedded in a service's own.
type CLI struct {
	cfg Config
}

// New returns a CLI. cfg nil means every default.
func New(cfg *Config) *CLI {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Name == "" {
		c.Name = "strata"
	}
	if c.Schema == "" {
		if p, ok := c.Projections.(interface{ Store() *eventstore.Store }); ok && p.Store() != nil {
			c.Schema = storeview.Of(p.Store()).Schema
		}
	}
	if c.Schema == "" {
		c.Schema = migrations.DefaultSchema
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &CLI{cfg: c}
}

// Run runs the command line args (without the program name) and returns
// the exit code. Errors go to Stderr as "NAME: message". Passwords in
// connection strings are replaced by "xxxxx" in everything written, and
// text from the database or from errors is escaped where a terminal would
// obey it (control characters, escape sequences, bidi overrides).
func (c *CLI) Run(ctx context.Context, args []string) int {
	red := newRedactor()
	red.addConn(c.cfg.DatabaseURL)
	red.addConn(c.cfg.Getenv("DATABASE_URL"))
	for _, a := range args {
		// Known before flags are parsed, so that even a parse error
		// cannot echo it: the value of --database-url (as "--database-url=…"
		// or the argument after it), and a connection string given without
		// its flag, which cobra would echo as an unknown command.
		if v, ok := cutFlag(a, "--database-url"); ok {
			a = v
		}
		red.addConn(a)
	}
	stderr := red.writer(c.cfg.Stderr)
	root := c.command(red)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", c.cfg.Name, red.message(err))
		if e, ok := errors.AsType[*Error](err); ok && e.help {
			if cmd == nil {
				cmd = root
			}
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return ExitCode(err)
}

// Command returns the CLI as a cobra command, to add to a service's own
// command tree (its Use is Config.Name). Map the error its execution
// returns to an exit code with ExitCode; unlike Run, it leaves printing
// that error to the caller — with passwords already masked in its text,
// and that text safe for a terminal.
func (c *CLI) Command() *cobra.Command {
	red := newRedactor()
	red.addConn(c.cfg.DatabaseURL)
	red.addConn(c.cfg.Getenv("DATABASE_URL"))
	root := c.command(red)
	red.cleanTree(root)
	return root
}

func cutFlag(arg, name string) (string, bool) {
	if len(arg) > len(name) && arg[:len(name)] == name && arg[len(name)] == '=' {
		return arg[len(name)+1:], true
	}
	return "", false
}

// session is one execution's state: flags, connection, output.
type session struct {
	cfg    *Config
	red    *redactor
	out    io.Writer
	errw   io.Writer
	dbURL  string
	schema string
	json   bool

	pool  *pgxpool.Pool
	owned bool // pool was opened here and is closed at the end
	store *eventstore.Store
}

func (c *CLI) command(red *redactor) *cobra.Command {
	s := &session{cfg: &c.cfg, red: red}
	root := &cobra.Command{
		Use:   c.cfg.Name,
		Short: "Operate a Strata event store: migrations, status, projections, events, dead letters, traces",
		Long: c.cfg.Name + ` operates a Strata event store in PostgreSQL.

The connection string comes from --database-url or DATABASE_URL (libpq URL
or key=value form; sslmode=verify-full and the PG* variables work as in
psql). Passwords are never printed.

Exit codes: 0 ok, 1 error, 2 usage, 3 problems found (status, schema check),
4 not found (stream show, trace, projection reset|rebuild, dead-letters retry).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Usage()
			return badCommandLine(errors.New("missing command"))
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			s.out = red.writer(cmd.OutOrStdout())
			s.errw = red.writer(cmd.ErrOrStderr())
			if s.dbURL == "" {
				s.dbURL = c.cfg.Getenv("DATABASE_URL")
			}
			if s.dbURL == "" {
				s.dbURL = c.cfg.DatabaseURL
			}
			red.addConn(s.dbURL)
			if err := migrations.CheckSchemaName(s.schema); err != nil {
				return &Error{Code: ExitUsage, Err: err}
			}
			return nil
		},
	}
	root.SetOut(c.cfg.Stdout)
	root.SetErr(c.cfg.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badCommandLine(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&s.dbURL, "database-url", "", "PostgreSQL connection string (default $DATABASE_URL)")
	pf.StringVar(&s.schema, "schema", c.cfg.Schema, "Postgres schema holding Strata's tables")
	pf.BoolVar(&s.json, "json", false, "print JSON for scripts instead of tables")
	root.AddCommand(
		s.migrateCmd(),
		s.statusCmd(),
		s.projectionCmd(),
		s.eventsCmd(),
		s.streamCmd(),
		s.deadLettersCmd(),
		s.traceCmd(),
		s.schemaCmd(),
		s.subjectCmd(),
		s.uiCmd(),
	)
	return root
}

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return badCommandLine(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			_ = cmd.Usage()
			return badCommandLine(fmt.Errorf("%s needs a subcommand", cmd.CommandPath()))
		},
	}
	g.AddCommand(subs...)
	return g
}

// usageArgs makes an argument check's failure a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return badCommandLine(err)
		}
		return nil
	}
}

// connect opens the pool (once) and returns the store. Unless migrating,
// it checks that the schema has Strata's tables, to say so plainly.
func (s *session) connect(ctx context.Context, migrating bool) (*eventstore.Store, error) {
	if s.store != nil {
		return s.store, nil
	}
	if s.cfg.Pool != nil {
		s.pool = s.cfg.Pool
	} else {
		if s.dbURL == "" {
			return nil, usageErr("no database: set --database-url or DATABASE_URL")
		}
		pc, err := pgxpool.ParseConfig(s.dbURL)
		if err != nil {
			return nil, &Error{Code: ExitUsage, Err: fmt.Errorf("bad connection string: %w", err)}
		}
		if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
			pc.ConnConfig.RuntimeParams["application_name"] = s.cfg.Name
		}
		pc.MaxConns = 4
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("connect: %w", failure.Auth(err, nil))
		}
		s.pool, s.owned = pool, true
	}
	if !migrating {
		var ok bool
		err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{s.schema, "events"}.Sanitize()).Scan(&ok)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("schema %q has no Strata tables: run '%s migrate' (or check --schema)", s.schema, s.cfg.Name)
		}
	}
	// Sealed personal fields are shown opened: plaintext while the
	// subject's key exists, the erased value once it is forgotten.
	opener := shred.New(s.pool, &shred.Config{Schema: s.schema})
	s.store = eventstore.New(s.pool, &eventstore.Config{Schema: s.schema, NotifyInterval: -1, Opener: opener})
	return s.store, nil
}

// run adapts a command's body to cobra: it gets the command's context and
// the connection is closed when it returns.
func (s *session) run(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		defer s.close()
		return fn(cmd.Context(), args)
	}
}

func (s *session) close() {
	if s.owned && s.pool != nil {
		s.pool.Close()
	}
	s.pool, s.store, s.owned = nil, nil, false
}
