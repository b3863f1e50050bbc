package httpapi

import (
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Site is one configured site as the map draws it: its geofence polygon
// from the detection configuration (detect.sites.<id>.geofence).
type Site struct {
	ID string `json:"id"`
	// Polygon is the geofence, [lat, lon] vertices in order; empty when the
	// site has none.
	Polygon [][]float64 `json:"polygon"`
}

// registerSites adds GET /sites?limit=&cursor=: the configured sites, by
// id, for any signed-in role. {"items": [...]}; an empty list when none are
// configured.
func (s *Server) registerSites(api router) {
	sites := slices.Clone(s.opts.Sites)
	slices.SortFunc(sites, func(a, b Site) int { return strings.Compare(a.ID, b.ID) })
	for i := range sites {
		if sites[i].Polygon == nil {
			sites[i].Polygon = [][]float64{}
		}
	}
	api.get("/sites", func(c *fiber.Ctx) error {
		return pageInMemory(c, sites, func(s *Site) string { return s.ID })
	})
}
