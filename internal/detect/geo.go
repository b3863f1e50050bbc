package detect

import "math"

const earthRadiusM = 6371000.0

// distanceM is the great-circle distance between two points in metres.
func distanceM(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusM * math.Asin(math.Min(1, math.Sqrt(a)))
}

// polygon is a geofence: [lat, lon] vertices, projected to metres around its
// first vertex (an equirectangular projection, exact enough for a site).
type polygon struct {
	lat0, lon0, kx float64
	xs, ys         []float64
}

func newPolygon(vs [][]float64) *polygon {
	if len(vs) < 3 {
		return nil
	}
	p := &polygon{lat0: vs[0][0], lon0: vs[0][1]}
	p.kx = math.Cos(p.lat0*math.Pi/180) * earthRadiusM * math.Pi / 180
	for _, v := range vs {
		x, y := p.project(v[0], v[1])
		p.xs = append(p.xs, x)
		p.ys = append(p.ys, y)
	}
	return p
}

func (p *polygon) project(lat, lon float64) (x, y float64) {
	return (lon - p.lon0) * p.kx, (lat - p.lat0) * earthRadiusM * math.Pi / 180
}

// signedDistanceM is how far the point is outside the polygon in metres:
// positive outside, negative inside.
func (p *polygon) signedDistanceM(lat, lon float64) float64 {
	x, y := p.project(lat, lon)
	inside := false
	best := math.Inf(1)
	n := len(p.xs)
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		xi, yi, xj, yj := p.xs[i], p.ys[i], p.xs[j], p.ys[j]
		if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
			inside = !inside
		}
		best = math.Min(best, segmentDistance(x, y, xi, yi, xj, yj))
	}
	if inside {
		return -best
	}
	return best
}

func segmentDistance(px, py, ax, ay, bx, by float64) float64 {
	dx, dy := bx-ax, by-ay
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = math.Max(0, math.Min(1, ((px-ax)*dx+(py-ay)*dy)/l))
	}
	return math.Hypot(px-(ax+t*dx), py-(ay+t*dy))
}

// DistanceM is the great-circle distance between two points in metres.
func DistanceM(lat1, lon1, lat2, lon2 float64) float64 { return distanceM(lat1, lon1, lat2, lon2) }
