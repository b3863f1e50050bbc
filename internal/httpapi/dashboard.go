package httpapi

import (
	"io/fs"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
)

// contentSecurity keeps the dashboard to its own scripts and styles. Map
// tiles may come from any https host (the tile URL is the user's choice);
// uPlot and Leaflet set inline styles.
const contentSecurity = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// MountDashboard serves the built dashboard (web.Dist()) at the root of app.
// Mount it after the API so that /api/v1 keeps its own 404s.
func MountDashboard(app fiber.Router, dist fs.FS) {
	app.Use("/", func(c *fiber.Ctx) error {
		c.Set("Content-Security-Policy", contentSecurity)
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set("Referrer-Policy", "same-origin")
		c.Set("X-Frame-Options", "DENY")
		return c.Next()
	}, filesystem.New(filesystem.Config{
		Root:   http.FS(dist),
		Index:  "index.html",
		MaxAge: 0,
	}))
}
