//go:build !linux

package twinstore

// dropMapped does nothing where the store does not ask the kernel.
func dropMapped(uintptr, int64) (int64, error) { return 0, nil }
