// Command strata is the operator's CLI for a Strata event store: migrate,
// status, events tail, stream show, trace, dead letters, projection reset.
// See package github.com/strata-go/strata/cli for every command, its flags
// and exit codes, and for embedding the CLI in your own program — where
// projection rebuild and schema check, which need your code, work too.
//
//	go install github.com/strata-go/strata/cmd/strata@latest
//	strata --database-url postgres://app@db/app status
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-go/strata/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.New(nil).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
