// Package web holds the dashboard's built assets (web/dist, made by
// web/build.sh from web/src) for twin-service to serve.
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Dist is the built dashboard: index.html, app.js, style.css.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a literal embedded directory
	}
	return sub
}
