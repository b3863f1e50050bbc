package httpapi

import (
	"encoding/base64"
	"slices"

	"github.com/gofiber/fiber/v2"
)

// pageInMemory answers one page of all, a list in a stable order that the caller
// holds whole in memory: ?limit= (default 100, at most 1000) items after
// ?cursor=, the base64url of the id of the previous page's last item.
func pageInMemory[T any](c *fiber.Ctx, all []T, id func(*T) string) error {
	limit, err := queryLimit(c, 100, 1000)
	if err != nil {
		return apiError(c, fiber.StatusBadRequest, CodeBadRequest, err.Error())
	}
	start := 0
	if cur := c.Query("cursor"); cur != "" {
		after, err := base64.RawURLEncoding.DecodeString(cur)
		i := slices.IndexFunc(all, func(x T) bool { return id(&x) == string(after) })
		if err != nil || i < 0 {
			return apiError(c, fiber.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned (or its item is gone)")
		}
		start = i + 1
	}
	items := all[start:min(len(all), start+limit)]
	next := ""
	if start+limit < len(all) {
		next = base64.RawURLEncoding.EncodeToString([]byte(id(&items[len(items)-1])))
	}
	if items == nil {
		items = []T{}
	}
	return c.JSON(Page[T]{Items: items, NextCursor: next})
}
