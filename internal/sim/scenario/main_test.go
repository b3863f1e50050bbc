package scenario

import (
	"os"
	"testing"

	"twinchain/internal/testsvc"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	testsvc.RemovePrograms()
	os.Exit(code)
}
