package cli_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/internal/pgtest"
)

// The standalone binary has no projections: rebuild says where to run it,
// with the usage exit code.
func Example() {
	c := cli.New(&cli.Config{Stdout: os.Stdout, Stderr: os.Stdout})
	code := c.Run(context.Background(), []string{"projection", "rebuild", "order_summary"})
	fmt.Println("exit code:", code)
	// Output:
	// strata: projection rebuild needs the projections' code: run it from a CLI embedded in your program (cli.New(&cli.Config{Projections: runner})); the standalone binary can only move checkpoints (projection reset)
	// exit code: 2
}

// Embed the CLI in a service's binary, on the service's own pool: here
// `migrate` then `status` of an empty store.
func ExampleCLI_Run() {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test"
	}
	// The output names the schema, so its name is fixed: runs of this
	// example elsewhere on the same server take turns.
	defer pgtest.ExampleLock("example_cli")()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	drop := func() { _, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS example_cli CASCADE`) }
	drop()
	defer drop()

	quiet := cli.New(&cli.Config{Pool: pool, Schema: "example_cli", Stdout: io.Discard})
	fmt.Println("migrate:", quiet.Run(ctx, []string{"migrate"}))

	c := cli.New(&cli.Config{Name: "shop admin", Pool: pool, Schema: "example_cli", Stdout: os.Stdout})
	fmt.Println("status:", c.Run(ctx, []string{"status"}))
	// Output:
	// migrate: 0
	// Schema example_cli: 0 streams, 0 events, head 0/0 (no events yet)
	//
	// No subscriptions.
	// status: 0
}

// ExitCode maps the errors of the cobra command (cli.Command) to exit
// codes.
func ExampleExitCode() {
	cmd := cli.New(&cli.Config{Stdout: io.Discard, Stderr: io.Discard}).Command()
	cmd.SetArgs([]string{"stream", "show"}) // the stream ID is missing
	err := cmd.Execute()
	fmt.Println(err, "→ exit", cli.ExitCode(err))
	// Output:
	// accepts 1 arg(s), received 0 → exit 2
}
