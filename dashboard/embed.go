package dashboard

import (
	"embed"
	"io/fs"
)

// The pages' templates and the files the browser loads (the stylesheet and
// the one script), built into the binary: nothing to install or build
// beside it.
var (
	//go:embed templates/*.html
	templates embed.FS

	//go:embed static
	staticFiles embed.FS

	static, _ = fs.Sub(staticFiles, "static")
)
