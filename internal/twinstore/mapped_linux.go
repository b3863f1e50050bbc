package twinstore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dropMapped is madvise(MADV_DONTNEED) over size bytes of the map at addr.
// The address comes as bbolt gives it (a uintptr): the syscall takes it as
// one, so no Go pointer is made of it.
func dropMapped(addr uintptr, size int64) (int64, error) {
	if size <= 0 {
		return 0, nil
	}
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED); e != 0 {
		return 0, fmt.Errorf("madvise the store's map (%d bytes): %w", size, e)
	}
	return size, nil
}
