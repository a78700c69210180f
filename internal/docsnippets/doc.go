// Package docsnippets holds the test that type-checks every Go snippet of
// README.md and docs/*.md against the module's packages, so that what a
// reader copies compiles. It has no code of its own.
//
// The convention for snippets, which are fragments:
//
//   - A snippet's top-level declarations (lines from a "type", "func",
//     "var" or "const" at the start of a line to the next line that closes
//     a block at the start of a line, or the one-line form) stay at package
//     level; the rest of it becomes the body of a function.
//   - Names a snippet uses without declaring (ctx, pool, store, reg, tx,
//     the example's event types, …) come from the prelude in
//     snippets_test.go; a snippet's own declaration of one replaces the
//     prelude's.
//   - "…" stands for elided code: "{ … }" becomes a block that panics and
//     "T{…}" an empty composite literal; "…" in a comment or string stays.
//   - Unused variables and imports are allowed (a fragment declares what
//     the reader goes on to use).
//   - A snippet that is not meant to compile (pseudo-code, another
//     language's syntax) is preceded by the line
//     <!-- snippet: not compiled -->.
package docsnippets
