package docsnippets

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// prelude declares what the snippets use without declaring it.
const prelude = `package snippet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/google/uuid"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/aggregate/aggregatetest"
	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/natsjs"
	"github.com/strata-go/strata/outbox/rabbitmq"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/pubsub"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
	"github.com/strata-go/strata/telemetry"
	"github.com/strata-go/strata/workflow"
)

var (
	ctx    context.Context
	pool   *pgxpool.Pool
	tx     pgx.Tx
	store  *eventstore.Store
	reg    *schema.Registry
	runner *projection.Runner
	relay  *outbox.Relay
	router *message.Router
	sub    message.Subscriber
	t      testing.TB
	after  eventstore.Position
	e      eventstore.Event

	placed, paid, shipped        eventstore.NewEvent
	orderPlacedV1, orderPlacedV2 []byte
	progress                     func(projection.Progress)
	ErrNotPayable                = errors.New("not payable")
	accounts                     *aggregate.Repository[*Account]
	token                        string
	adminMux                     *http.ServeMux
	ev                           eventstore.NewEvent
	claims                       struct{ Subject string } // the application's authentication

	// The security section's settings.
	caPool     *x509.CertPool
	clientCert tls.Certificate
	tlsCfg     *tls.Config
	pw         string
	brokers    []string
)

// The workflow section's order-fulfilment instance.
type Fulfilment struct{ Paid bool }
type FulfilmentStarted struct{}
type PaymentRequested struct{}

func route(e eventstore.Event, ev any) (string, bool)              { return "", false }
func decide(s Fulfilment, in workflow.Input) (workflow.Decision, error) { return workflow.Decision{}, nil }
func evolve(s Fulfilment, ev any) Fulfilment                           { return s }

type Account struct{ aggregate.Root }

func (a *Account) Apply(ev any) {}

func Transfer(from, to *Account, cents int64) error { return nil }

type OrderPlaced struct{ Total int }
type OrderPaid struct{ Amount int }

type Order struct {
	aggregate.Root
	Status string
}

func (o *Order) Apply(ev any)          {}
func (o *Order) Pay(amount int) error { return nil }

func newOrder(id string) *Order { return &Order{} }

var (
	_ = fmt.Sprint
	_ = http.Handle
	_ = os.Exit
	_ = time.Second
	_ = cli.New
	_ = migrations.Apply
	_ = natsjs.NewPublisher
	_ = rabbitmq.NewPublisher
	_ = pubsub.NewPublisher
	_ = telemetry.NewHealthHandler
	_ = aggregatetest.New[*Order]
	_ = dashboard.New
	_ = url.QueryEscape
	_ = uuid.New
	_ = kafka.NewPublisher
	_ = workflow.New[Fulfilment]
	_ = shred.New
)
`

// imports is the prelude's import block, given to each file of a
// snippet (imports are per file).
var imports = prelude[strings.Index(prelude, "import (") : strings.Index(prelude, ")\n")+2]

// snippet is one ```go block.
type snippet struct {
	file string
	line int
	code string
}

var fence = regexp.MustCompile("(?m)^```go\\s*$")

func extract(t *testing.T, file string) []snippet {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var out []snippet
	for _, loc := range fence.FindAllStringIndex(text, -1) {
		start := loc[1] + 1
		end := strings.Index(text[start:], "\n```")
		if end < 0 {
			t.Fatalf("%s: unterminated ```go block", file)
		}
		before := strings.TrimRight(text[:loc[0]], "\n")
		if strings.HasSuffix(before, "<!-- snippet: not compiled -->") {
			continue
		}
		out = append(out, snippet{file: file, line: strings.Count(text[:start], "\n") + 1, code: text[start : start+end+1]})
	}
	return out
}

var (
	elidedBlock   = regexp.MustCompile(`\{ … \}`)
	elidedLiteral = regexp.MustCompile(`\{…\}`)
	topLevel      = regexp.MustCompile(`^(type|func|var|const) `)
)

// split separates a snippet's top-level declarations from its statements.
func split(code string) (decls, stmts string) {
	code = elidedBlock.ReplaceAllString(code, `{ panic("elided") }`)
	code = elidedLiteral.ReplaceAllString(code, `{}`)
	var d, s strings.Builder
	in := false
	for _, line := range strings.SplitAfter(code, "\n") {
		switch {
		case !in && topLevel.MatchString(line):
			d.WriteString(line)
			trimmed := line
			if i := strings.Index(trimmed, " //"); i >= 0 {
				trimmed = trimmed[:i]
			}
			trimmed = strings.TrimRight(trimmed, " \n")
			in = strings.HasSuffix(trimmed, "{") || strings.HasSuffix(trimmed, "(")
			if !in {
				continue
			}
		case in:
			d.WriteString(line)
			if strings.HasPrefix(line, "}") || strings.HasPrefix(line, ")") {
				in = false
			}
		default:
			s.WriteString(line)
			d.WriteString("\n") // keep line numbers aligned in decls
		}
	}
	return d.String(), s.String()
}

// exports maps import paths to their export data, built by go list.
func exports(t *testing.T) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{if .Export}}{{.ImportPath}}={{.Export}}{{end}}",
		"github.com/strata-go/strata/...", "net/http", "github.com/ThreeDotsLabs/watermill/message")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestSnippetsCompile type-checks every Go snippet of README.md and
// docs/*.md (see the package documentation for the conventions).
func TestSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the module's export data")
	}
	files := []string{"../../README.md"}
	docs, _ := filepath.Glob("../../docs/*.md")
	files = append(files, docs...)
	var all []snippet
	for _, f := range files {
		all = append(all, extract(t, f)...)
	}
	if len(all) < 10 {
		t.Fatalf("found %d Go snippets, expected the README's", len(all))
	}
	exp := exports(t)
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exp[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(f)
	})
	for _, sn := range all {
		name := fmt.Sprintf("%s:%d", filepath.Base(sn.file), sn.line)
		t.Run(name, func(t *testing.T) {
			decls, stmts := split(sn.code)
			own, err := parser.ParseFile(fset, name+"(declarations)", "package snippet\n"+imports+decls, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, sn.code)
			}
			declared := map[string]bool{}
			for _, d := range own.Decls {
				for _, n := range declNames(d) {
					declared[n] = true
				}
			}
			pre, err := parser.ParseFile(fset, "prelude.go", prelude, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			pre.Decls = dropDeclared(pre.Decls, declared)
			body, err := parser.ParseFile(fset, name, "package snippet\n"+imports+"func _() {\n"+stmts+"\n}\n", parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("%v\n%s", err, sn.code)
			}
			var errs []string
			conf := types.Config{Importer: imp, Error: func(err error) {
				msg := err.Error()
				if strings.Contains(msg, "declared and not used") || strings.HasSuffix(msg, "and not used") {
					return
				}
				errs = append(errs, msg)
			}}
			_, _ = conf.Check("snippet", fset, []*ast.File{pre, own, body}, nil)
			if len(errs) > 0 {
				t.Errorf("the snippet at %s does not compile:\n%s\n---\n%s", name, strings.Join(errs, "\n"), sn.code)
			}
		})
	}
}

// declNames lists the package-level names d declares (methods are not
// names of the package).
func declNames(d ast.Decl) []string {
	var out []string
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			out = append(out, d.Name.Name)
		}
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				out = append(out, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					out = append(out, n.Name)
				}
			}
		}
	}
	return out
}

// dropDeclared removes from the prelude what the snippet declares itself:
// the declaration, and the methods of a type it declares.
func dropDeclared(decls []ast.Decl, declared map[string]bool) []ast.Decl {
	var out []ast.Decl
	for _, d := range decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv != nil {
				recv := d.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				if id, ok := recv.(*ast.Ident); ok && declared[id.Name] {
					continue
				}
			} else if declared[d.Name.Name] {
				continue
			}
		case *ast.GenDecl:
			var specs []ast.Spec
			for _, s := range d.Specs {
				keep := true
				switch s := s.(type) {
				case *ast.TypeSpec:
					keep = !declared[s.Name.Name]
				case *ast.ValueSpec:
					var names []*ast.Ident
					var values []ast.Expr
					for i, n := range s.Names {
						if !declared[n.Name] {
							names = append(names, n)
							if i < len(s.Values) {
								values = append(values, s.Values[i])
							}
						}
					}
					if len(s.Values) > 0 && len(values) != len(names) {
						values = nil
					}
					s.Names, s.Values = names, values
					keep = len(names) > 0
				}
				if keep {
					specs = append(specs, s)
				}
			}
			if len(specs) == 0 && d.Tok != token.IMPORT {
				continue
			}
			d.Specs = specs
		}
		out = append(out, d)
	}
	return out
}
